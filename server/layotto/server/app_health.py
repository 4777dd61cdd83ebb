"""App health checks (Dapr's ``--enable-app-health-check``): delivery waits while the app is unhealthy.

With ``app_health: {enabled: true}`` the runtime probes the app every ``probe_interval_seconds`` (an
HTTP app: ``GET <path>``, healthy on a 2xx answered within ``probe_timeout_seconds``; a gRPC app: Dapr's
``AppCallbackHealthCheck/HealthCheck``). The app is unhealthy after ``threshold`` failed probes in a
row and healthy again at the first probe that passes; it is unknown (delivery waits) until the first
probe. While it is not healthy, events are held in flight, not offered (the broker keeps the rest),
and none counts as a delivery attempt; they go out when it is healthy again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from layotto.server.aio import stop_task
from layotto.server.components.base import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppHealthSettings:
    """The ``app_health`` config section (Dapr's flags: --enable-app-health-check, --app-health-*)."""

    enabled: bool = False
    path: str = "/healthz"  # probed on an HTTP app
    probe_interval_seconds: float = 5.0
    probe_timeout_seconds: float = 0.5
    threshold: int = 3  # failed probes in a row before the app is unhealthy

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "path": self.path,
            "probe_interval_seconds": self.probe_interval_seconds,
            "probe_timeout_seconds": self.probe_timeout_seconds,
            "threshold": self.threshold,
        }


_RANGES = {"probe_interval_seconds": (0.01, 3600.0), "probe_timeout_seconds": (0.01, 600.0), "threshold": (1, 1000)}


def parse_app_health(raw: Any, where: str) -> AppHealthSettings:
    """The settings of an ``app_health`` mapping; ConfigError naming the key when one is wrong."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping (enabled, path, probe_interval_seconds, ...)")
    known = set(AppHealthSettings.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: expected true or false, got {enabled!r}")
    path = raw.get("path", "/healthz")
    if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() or not c.isprintable() for c in path):
        raise ConfigError(
            f"{where}.path: expected a URL path starting with '/' (no spaces or control characters), got {path!r}"
        )
    numbers: dict[str, Any] = {}
    for key, (low, high) in _RANGES.items():
        if key not in raw:
            continue
        value = raw[key]
        whole = key == "threshold"
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float) or not low <= value <= high:
            shape = "an integer" if whole else "a number of seconds"
            raise ConfigError(f"{where}.{key}: expected {shape} from {low:g} to {high:g}, got {value!r}")
        numbers[key] = value if whole else float(value)
    return AppHealthSettings(enabled=enabled, path=path, **numbers)


class AppHealth:
    """The app's health as the probes see it (see the module); ``probe`` answers True when it passes."""

    def __init__(self, probe: Callable[[], Awaitable[bool]], settings: AppHealthSettings, where: str) -> None:
        self._probe = probe
        self._settings = settings
        self._where = where
        self._healthy = asyncio.Event()
        self._failures = 0
        self.status = "unknown"  # unknown until the first probe, then healthy or unhealthy
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_probing())

    async def _keep_probing(self) -> None:
        while True:
            try:
                passed = await asyncio.wait_for(self._probe(), self._settings.probe_timeout_seconds)
            except Exception:  # timeout, refused connection, any failure: a failed probe
                passed = False
            self._record(passed)
            await asyncio.sleep(self._settings.probe_interval_seconds)

    def _record(self, passed: bool) -> None:
        if passed:
            self._failures = 0
            if self.status != "healthy":
                log.info("app at %s is healthy: delivering events", self._where)
            self.status = "healthy"
            self._healthy.set()
            return
        self._failures += 1
        if self._failures >= self._settings.threshold and self.status != "unhealthy":
            log.warning(
                "app at %s is unhealthy (%d failed probes): holding events until it is healthy",
                self._where,
                self._failures,
            )
            self.status = "unhealthy"
            self._healthy.clear()

    async def wait_healthy(self, given_up: Callable[[], bool]) -> None:
        """Return once the app is healthy; RuntimeError when ``given_up()`` turns True meanwhile."""
        while not self._healthy.is_set():
            if given_up():
                raise RuntimeError("the subscriber left while the app was unhealthy")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._healthy.wait(), 0.5)

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

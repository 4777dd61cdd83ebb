"""Config hot reload (opt-in, like Dapr's ``HotReload`` feature flag): watch the config file and
the Dapr manifests directory, and apply component changes live.

Every ``hot_reload_seconds`` the watcher compares the size and modification time of the config
file and of every file in ``components_path``. On a change it reads the whole configuration again
(the same way start-up did, flags included) and hands it to the runtime, which applies the
component changes through :class:`~layotto.server.runtime.reconfigure.Reconfigurer` (the old
instances drain; a bad change is refused with one log line and the old configuration keeps
serving). Keys the runtime cannot change live (listen addresses, app id, transport, TLS, ...) are
logged as needing a restart and otherwise ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from layotto.server.components.base import ConfigError
from layotto.server.config import RuntimeConfig
from layotto.server.masking import mask_text

log = logging.getLogger(__name__)

Snapshot = dict[str, tuple[int, int]]
#: the keys a hot reload applies; every other key needs a restart
LIVE_KEYS = frozenset({"components", "source"})


def watched_paths(config: RuntimeConfig) -> list[Path]:
    """The config file (when the config came from one) and the manifests directory, if any."""
    paths = []
    if config.source != RuntimeConfig().source:
        paths.append(Path(config.source))
    if config.components_path:
        paths.append(Path(config.components_path).expanduser())
    return paths


def snapshot(paths: list[Path]) -> Snapshot:
    """path -> (size, mtime in ns) of each file, and of each file directly inside a directory."""
    seen: Snapshot = {}
    for path in paths:
        files = sorted(path.iterdir()) if path.is_dir() else [path]
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                continue  # removed between the listing and the stat: the next poll sees it gone
            seen[str(file)] = (stat.st_size, stat.st_mtime_ns)
    return seen


def restart_keys(old: RuntimeConfig, new: RuntimeConfig) -> list[str]:
    """The keys that differ between two configs and that only a restart applies."""
    return [
        f.name
        for f in dataclasses.fields(RuntimeConfig)
        if f.name not in LIVE_KEYS and getattr(old, f.name) != getattr(new, f.name)
    ]


class ConfigWatcher:
    """Polls the watched files; on a change, rereads the config and applies it (see the module)."""

    def __init__(
        self,
        config: RuntimeConfig,
        reread: Callable[[], RuntimeConfig],
        apply: Callable[[RuntimeConfig], Awaitable[None]],
    ) -> None:
        """``reread``: the configuration as start-up would build it now (raises ConfigError);
        ``apply``: the runtime's application of a new configuration (raises ConfigError)."""
        self._paths = watched_paths(config)
        self._interval = config.hot_reload_seconds
        self._reread = reread
        self._apply = apply
        self._seen = snapshot(self._paths)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        log.info("hot reload: watching %s every %gs", ", ".join(map(str, self._paths)) or "nothing", self._interval)
        self._task = asyncio.create_task(self._watch(), name="layotto-hot-reload")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            now = await asyncio.to_thread(snapshot, self._paths)
            if now == self._seen:
                continue
            self._seen = now
            await self.reload()

    async def reload(self) -> None:
        """Read the configuration again and apply it; a refusal is one ERROR line."""
        try:
            config = await asyncio.to_thread(self._reread)
            await self._apply(config)
        except ConfigError as error:
            log.error("hot reload refused, the running configuration keeps serving: %s", mask_text(str(error)))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

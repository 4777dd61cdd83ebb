"""The ``traffic_capture`` config section.

::

    traffic_capture:
      enabled: true
      sample_ratio: 0.1          # the share of eligible calls captured, 0 < ratio <= 1 (count-based: exact)
      dir: /var/lib/layotto/capture
      max_file_bytes: 16777216   # a file is closed before it would grow past this
      max_files: 8               # the oldest file is deleted when a new one would make more
      methods:                   # optional: capture only these methods, or services (a prefix ending in /)
        - /spec.proto.runtime.v1.Runtime/SaveState
        - /dapr.proto.runtime.v1.Dapr/
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from layotto.server.components.base import ConfigError

KEYS = ("enabled", "sample_ratio", "dir", "max_file_bytes", "max_files", "methods", "queue_size")
MIN_FILE_BYTES = 1024


@dataclass(frozen=True)
class CaptureSettings:
    """Where and how much traffic is captured (see the module)."""

    dir: str
    enabled: bool = True
    sample_ratio: float = 1.0
    max_file_bytes: int = 16 * 1024 * 1024
    max_files: int = 8
    methods: tuple[str, ...] = ()  # empty: every unary method but health checks and reflection
    queue_size: int = 10000  # records waiting for the writer thread; more are dropped (and counted)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "sample_ratio": self.sample_ratio,
            "dir": self.dir,
            "max_file_bytes": self.max_file_bytes,
            "max_files": self.max_files,
            "queue_size": self.queue_size,
        }
        if self.methods:
            out["methods"] = list(self.methods)
        return out


def _integer(raw: dict[str, Any], key: str, where: str, low: int, default: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}.{key}: expected an integer >= {low}, got {value!r}")
    return value


def parse_capture_settings(raw: Any, where: str) -> CaptureSettings:
    """``{enabled, sample_ratio, dir, max_file_bytes, max_files, methods?, queue_size?}`` -> CaptureSettings.

    Raises ConfigError naming the key for an unknown key or a value out of range.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping ({', '.join(KEYS)})")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key (known: {', '.join(KEYS)})")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: expected true or false, got {enabled!r}")
    directory = raw.get("dir")
    if not isinstance(directory, str) or not directory:
        raise ConfigError(f"{where}.dir: expected the directory capture files are written to")
    ratio = raw.get("sample_ratio", 1.0)
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not (0 < ratio <= 1) or math.isnan(ratio):
        raise ConfigError(f"{where}.sample_ratio: expected a number in (0, 1], got {ratio!r}")
    methods = raw.get("methods", [])
    if not isinstance(methods, list) or not all(isinstance(m, str) and m.startswith("/") for m in methods):
        raise ConfigError(f"{where}.methods: expected a list of /package.Service/Method names or /package.Service/")
    return CaptureSettings(
        dir=directory,
        enabled=enabled,
        sample_ratio=float(ratio),
        max_file_bytes=_integer(raw, "max_file_bytes", where, MIN_FILE_BYTES, 16 * 1024 * 1024),
        max_files=_integer(raw, "max_files", where, 1, 8),
        methods=tuple(methods),
        queue_size=_integer(raw, "queue_size", where, 1, 10000),
    )

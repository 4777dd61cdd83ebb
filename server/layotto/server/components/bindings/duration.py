"""Go duration strings (``1s``, ``1m30s``, ``500ms``, ``1h``), as Dapr's bindings take them."""

from __future__ import annotations

import re

_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string; ValueError when it is not one (or not positive)."""
    stripped = text.strip()
    position, total = 0, 0.0
    while position < len(stripped):
        match = _PART.match(stripped, position)
        if match is None:
            raise ValueError(f"{text!r} is not a duration such as 1s, 1m30s or 500ms")
        total += float(match[1]) * _SECONDS[match[2]]
        position = match.end()
    if total <= 0:
        raise ValueError(f"{text!r} is not a positive duration such as 1s, 1m30s or 500ms")
    return total

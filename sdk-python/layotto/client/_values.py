"""How Python values become state bytes, and back."""

from __future__ import annotations

import json
from typing import Any

#: what a state value may be: bytes as is, str as UTF-8, anything else as JSON
Value = bytes | bytearray | memoryview | str | int | float | bool | dict[str, Any] | list[Any] | None


def encode(value: Value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def decode_json(data: bytes) -> Any:
    return json.loads(data)

"""How Python values become state bytes, and back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from layotto.client._errors import InvalidArgument

#: what a state value may be: bytes as is, str as UTF-8, anything else as JSON
Value = bytes | bytearray | memoryview | str | int | float | bool | dict[str, Any] | list[Any] | None


def encode(value: Value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def invalid(field: str, problem: str) -> InvalidArgument:
    """An InvalidArgument the SDK raises itself, before any call: ``field`` names the parameter."""
    return InvalidArgument(f"{field}: {problem}", code="INVALID_ARGUMENT", metadata={"field": field})


def string_map(mapping: Mapping[str, str] | None, field: str) -> dict[str, str]:
    """``mapping`` as the dict of strings a protobuf map<string, string> takes; InvalidArgument
    naming the entry (``metadata['ttlInSeconds']``) for a key or value that is not a str, where
    protobuf would raise a TypeError naming nothing ("bad argument type for built-in operation")."""
    out = dict(mapping or {})
    for key, value in out.items():
        if not isinstance(key, str):
            raise invalid(field, f"a key is a {type(key).__name__} ({key!r}), not a str")
        if not isinstance(value, str):
            raise invalid(f"{field}[{key!r}]", f"expected a str, got {type(value).__name__} {value!r}")
    return out


def decode_json(data: bytes) -> Any:
    return json.loads(data)

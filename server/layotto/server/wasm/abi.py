"""The proxy-wasm ABI's numbers and encodings (the subset a function serving HTTP uses).

Status codes, buffer and header-map types follow the proxy-wasm spec (0.1.0 and 0.2.x agree on
them); ``CALL_DATA`` (8) is Layotto's buffer through which ``proxy_get_id`` names the function.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

#: the exports one of which marks a proxy-wasm module, and which ABI it speaks
ABI_VERSION_EXPORTS = ("proxy_abi_version_0_1_0", "proxy_abi_version_0_2_0", "proxy_abi_version_0_2_1")
#: the allocators through which the host hands the module memory, first found wins
ALLOCATOR_EXPORTS = ("proxy_on_memory_allocate", "malloc")
ID_EXPORT = "proxy_get_id"

# Status (WasmResult)
OK = 0
NOT_FOUND = 1
BAD_ARGUMENT = 2
SERIALIZATION_FAILURE = 3
EMPTY = 7
CAS_MISMATCH = 8
INTERNAL_FAILURE = 10
UNIMPLEMENTED = 12

# Action
CONTINUE = 0
PAUSE = 1

# BufferType
HTTP_REQUEST_BODY = 0
HTTP_RESPONSE_BODY = 1
HTTP_CALL_RESPONSE_BODY = 4
VM_CONFIGURATION = 6
PLUGIN_CONFIGURATION = 7
CALL_DATA = 8

# MapType
HTTP_REQUEST_HEADERS = 0
HTTP_REQUEST_TRAILERS = 1
HTTP_RESPONSE_HEADERS = 2
HTTP_RESPONSE_TRAILERS = 3
HTTP_CALL_RESPONSE_HEADERS = 6

#: proxy-wasm log levels (trace .. critical) -> Python logging levels
LOG_LEVELS = {0: 5, 1: 10, 2: 20, 3: 30, 4: 40, 5: 50}

Pairs = list[tuple[str, str]]


def encode_pairs(pairs: Sequence[tuple[str, str]]) -> bytes:
    """proxy-wasm's map encoding: count, then (key size, value size) per pair, then each key and
    value followed by a NUL; integers are little-endian u32."""
    encoded = [(k.encode(), v.encode()) for k, v in pairs]
    head = struct.pack(f"<{1 + 2 * len(encoded)}I", len(encoded), *[n for k, v in encoded for n in (len(k), len(v))])
    return head + b"".join(k + b"\0" + v + b"\0" for k, v in encoded)


def decode_pairs(data: bytes) -> Pairs:
    """The inverse of :func:`encode_pairs`; ValueError when ``data`` is not such an encoding."""
    if len(data) < 4:
        raise ValueError("a header map needs at least its 4-byte count")
    (count,) = struct.unpack_from("<I", data)
    if 4 + 8 * count > len(data):
        raise ValueError(f"a header map of {count} pairs does not fit in {len(data)} bytes")
    sizes = struct.unpack_from(f"<{2 * count}I", data, 4)
    at = 4 + 8 * count
    pairs: Pairs = []
    for index in range(count):
        key_size, value_size = sizes[2 * index], sizes[2 * index + 1]
        if at + key_size + value_size + 2 > len(data):
            raise ValueError("a header map's sizes exceed its bytes")
        key = data[at : at + key_size].decode("utf-8", "replace")
        at += key_size + 1
        value = data[at : at + value_size].decode("utf-8", "replace")
        at += value_size + 1
        pairs.append((key, value))
    return pairs

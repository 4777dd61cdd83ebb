"""What a function's host calls work with: the runtime (:class:`RuntimeBridge`), the request being
served (:class:`Exchange`), and the instance's linear memory (:class:`GuestMemory`).

Memory goes in and out as proxy-wasm specifies: the module passes (pointer, size) pairs into its
memory; data the host returns is written into memory it allocates through the module's own
allocator (``proxy_on_memory_allocate`` or ``malloc``), and the (pointer, size) is stored at the
two addresses the module gave. A pointer outside the memory raises :class:`BadMemory`, which the
host calls answer INVALID_MEMORY_ACCESS (6).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from typing import Protocol

import wasmtime

from layotto.server.wasm import abi
from layotto.server.wasm.shared import FunctionMetrics, SharedQueues


class RuntimeBridge(Protocol):
    """What the host functions ask of the runtime; called on the instance's worker thread,
    each call bounded by ``deadline`` (time.monotonic seconds). Raise LayottoError on failure."""

    def get_state(self, store_name: str, key: str, deadline: float) -> bytes: ...

    def invoke_service(self, app_id: str, method: str, data: bytes, deadline: float) -> bytes: ...

    def get_shared(self, key: str) -> tuple[bytes, int] | None: ...

    def set_shared(self, key: str, value: bytes, cas: int) -> bool: ...

    @property
    def queues(self) -> SharedQueues: ...

    @property
    def metrics(self) -> FunctionMetrics: ...

    def queue_ready(self, owner: str, token: int) -> None:
        """An item was enqueued into ``owner``'s queue ``token``: tell its root context."""

    def set_tick_period(self, function: str, milliseconds: int) -> None:
        """Call ``function``'s ``proxy_on_tick`` every ``milliseconds`` (0: stop)."""


#: callouts one call of a function may make
MAX_CALLOUTS = 16


@dataclass
class Callout:
    """An HTTP callout a module asked for: made through service invocation of ``app_id``."""

    token: int
    app_id: str
    method: str
    body: bytes
    timeout_seconds: float


@dataclass
class Exchange:
    """One HTTP request through a function and the response it builds."""

    request_headers: abi.Pairs = field(default_factory=list)
    request_body: bytes = b""
    response_headers: abi.Pairs = field(default_factory=list)
    response_body: bytes = b""
    status: int = 200
    local_response: bool = False  # the module answered with proxy_send_local_response
    call_data: bytes = b""
    plugin_config: bytes = b""
    properties: dict[str, bytes] = field(default_factory=dict)
    deadline: float = float("inf")
    callouts: list[Callout] = field(default_factory=list)
    callouts_made: int = 0
    call_response_headers: abi.Pairs = field(default_factory=list)
    call_response_body: bytes = b""

    def buffers(self) -> dict[int, bytes]:
        return {
            abi.HTTP_REQUEST_BODY: self.request_body,
            abi.HTTP_RESPONSE_BODY: self.response_body,
            abi.PLUGIN_CONFIGURATION: self.plugin_config,
            abi.CALL_DATA: self.call_data,
            abi.HTTP_CALL_RESPONSE_BODY: self.call_response_body,
        }

    def set_buffer(self, kind: int, value: bytes) -> None:
        name = {
            abi.HTTP_REQUEST_BODY: "request_body",
            abi.HTTP_RESPONSE_BODY: "response_body",
            abi.CALL_DATA: "call_data",
        }[kind]
        setattr(self, name, value)

    def header_map(self, kind: int) -> abi.Pairs | None:
        if kind == abi.HTTP_REQUEST_HEADERS:
            return self.request_headers
        if kind == abi.HTTP_RESPONSE_HEADERS:
            return self.response_headers
        if kind == abi.HTTP_CALL_RESPONSE_HEADERS:
            return self.call_response_headers
        return None


class BadMemory(Exception):
    """A pointer or size outside the module's memory (or a module without memory)."""


class GuestMemory:
    """The instance's memory, seen from its host calls; ``exchange`` is the request being served."""

    clock = staticmethod(time.monotonic)

    def __init__(self, bridge: RuntimeBridge, function_name: str) -> None:
        self.bridge = bridge
        self.function_name = function_name
        self.exchange = Exchange()

    def _memory(self, caller: wasmtime.Caller) -> wasmtime.Memory:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            raise BadMemory
        return memory

    def _read(self, caller: wasmtime.Caller, ptr: int, size: int) -> bytes:
        memory = self._memory(caller)
        if ptr < 0 or size < 0 or ptr + size > memory.data_len(caller):
            raise BadMemory
        return bytes(memory.read(caller, ptr, ptr + size))

    def _text(self, caller: wasmtime.Caller, ptr: int, size: int) -> str:
        return self._read(caller, ptr, size).decode("utf-8", "replace")

    def _write(self, caller: wasmtime.Caller, ptr: int, data: bytes) -> None:
        memory = self._memory(caller)
        if ptr < 0 or ptr + len(data) > memory.data_len(caller):
            raise BadMemory
        memory.write(caller, data, ptr)

    def _give(self, caller: wasmtime.Caller, data: bytes, ptr_ptr: int, size_ptr: int) -> int:
        """Copy ``data`` into memory the module allocates; store its pointer and size."""
        ptr = 0
        if data:
            allocate = next(
                (f for f in map(caller.get, abi.ALLOCATOR_EXPORTS) if isinstance(f, wasmtime.Func)),
                None,
            )
            if allocate is None:
                return abi.INTERNAL_FAILURE
            ptr = int(allocate(caller, len(data)))
            self._write(caller, ptr, data)
        self._write(caller, ptr_ptr, struct.pack("<I", ptr))
        self._write(caller, size_ptr, struct.pack("<I", len(data)))
        return abi.OK

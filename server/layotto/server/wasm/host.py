"""The host functions a proxy-wasm function imports (module ``env``), bound to one instance.

Memory goes in and out as proxy-wasm specifies: the module passes (pointer, size) pairs into its
memory; data the host returns is written into memory it allocates through the module's own
allocator (``proxy_on_memory_allocate`` or ``malloc``), and the (pointer, size) is stored at the
two addresses the module gave. A pointer outside the memory answers INVALID_MEMORY_ACCESS (6).

``proxy_get_state`` and ``proxy_invoke_service`` (Layotto's) reach the runtime through a
:class:`RuntimeBridge`, as do shared data, shared queues, metrics and the tick period. HTTP callouts
(``proxy_http_call``, or ``proxy_dispatch_http_call``) are queued on the exchange and made through
service invocation (upstream = app id, ``:path`` = method) once the module's callback returns; the
engine then calls ``proxy_on_http_call_response``. gRPC callouts and foreign functions are provided
and answer UNIMPLEMENTED (12).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import wasmtime

from layotto.server.errors import LayottoError
from layotto.server.wasm import abi
from layotto.server.wasm.shared import MAX_NAME_BYTES, FunctionMetrics, SharedLimit, SharedQueues

log = logging.getLogger(__name__)
INVALID_MEMORY_ACCESS = 6
_I32, _I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()


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


class _BadMemory(Exception):
    pass


def _status(call: Callable[..., int]) -> Callable[..., int]:
    """``call`` with its i32 arguments read as unsigned (pointers, sizes, types) and a bad pointer
    answered INVALID_MEMORY_ACCESS."""

    def guarded(caller: wasmtime.Caller, *args: int) -> int:
        try:
            return call(caller, *(arg & 0xFFFFFFFF for arg in args))
        except _BadMemory:
            return INVALID_MEMORY_ACCESS

    return guarded


#: name -> number of i32 parameters (result i32) of the calls answered UNIMPLEMENTED
_UNIMPLEMENTED = {
    "proxy_grpc_call": 12,
    "proxy_grpc_stream": 9,
    "proxy_grpc_send": 4,
    "proxy_grpc_cancel": 1,
    "proxy_grpc_close": 1,
    "proxy_call_foreign_function": 6,
}
#: name -> number of i32 parameters of the calls that only acknowledge (answer OK)
_ACKNOWLEDGED = {
    "proxy_continue_request": 0,
    "proxy_continue_response": 0,
    "proxy_continue_stream": 1,
    "proxy_close_stream": 1,
    "proxy_done": 0,
    "proxy_set_effective_context": 1,
    "proxy_clear_route_cache": 0,
}
_ARITY = {
    "proxy_log": 3,
    "proxy_get_log_level": 1,
    "proxy_get_buffer_bytes": 5,
    "proxy_get_buffer_status": 3,
    "proxy_set_buffer_bytes": 5,
    "proxy_get_header_map_pairs": 3,
    "proxy_set_header_map_pairs": 3,
    "proxy_get_header_map_value": 5,
    "proxy_add_header_map_value": 5,
    "proxy_replace_header_map_value": 5,
    "proxy_remove_header_map_value": 3,
    "proxy_get_header_map_size": 2,
    "proxy_send_local_response": 8,
    "proxy_send_http_response": 8,
    "proxy_get_property": 4,
    "proxy_set_property": 4,
    "proxy_get_current_time_nanoseconds": 1,
    "proxy_get_shared_data": 5,
    "proxy_set_shared_data": 5,
    "proxy_get_state": 6,
    "proxy_invoke_service": 8,
    "proxy_http_call": 10,
    "proxy_dispatch_http_call": 10,
    "proxy_register_shared_queue": 3,
    "proxy_resolve_shared_queue": 5,
    "proxy_enqueue_shared_queue": 3,
    "proxy_dequeue_shared_queue": 3,
    "proxy_define_metric": 4,
    "proxy_get_metric": 2,
    "proxy_set_tick_period_milliseconds": 1,
}


_ALIASES = {"proxy_send_http_response": "send_local_response", "proxy_dispatch_http_call": "http_call"}


def _metric_status(call: Callable[..., int]) -> Callable[..., int]:
    """``call`` (metric id, i64 value) with the id read as unsigned."""

    def guarded(caller: wasmtime.Caller, metric_id: int, value: int) -> int:
        return call(caller, metric_id & 0xFFFFFFFF, value)

    return guarded


def signatures() -> dict[str, wasmtime.FuncType]:
    """Every import name the host provides, with its wasm type."""
    table = {
        name: wasmtime.FuncType([_I32] * n, [_I32]) for name, n in (_ARITY | _UNIMPLEMENTED | _ACKNOWLEDGED).items()
    }
    table["proxy_increment_metric"] = wasmtime.FuncType([_I32, _I64], [_I32])
    table["proxy_record_metric"] = wasmtime.FuncType([_I32, _I64], [_I32])
    return table


class HostCalls:
    """The host functions of one instance; ``exchange`` is the request it is serving."""

    clock = staticmethod(time.monotonic)

    def __init__(self, bridge: RuntimeBridge, function_name: str) -> None:
        self.bridge = bridge
        self.function_name = function_name
        self.exchange = Exchange()

    def table(self) -> dict[str, tuple[wasmtime.FuncType, Callable[..., int]]]:
        """import name -> (type, callable(caller, *args)) for wasmtime's linker."""
        types = signatures()
        table: dict[str, tuple[wasmtime.FuncType, Callable[..., int]]] = {}
        for name in _ARITY:
            short = _ALIASES.get(name, name.removeprefix("proxy_"))
            table[name] = (types[name], _status(getattr(self, short)))
        for name in ("proxy_increment_metric", "proxy_record_metric"):
            table[name] = (types[name], _metric_status(getattr(self, name.removeprefix("proxy_"))))
        for name in _UNIMPLEMENTED:
            table[name] = (types[name], lambda caller, *args: abi.UNIMPLEMENTED)
        for name in _ACKNOWLEDGED:
            table[name] = (types[name], lambda caller, *args: abi.OK)
        return table

    # memory in and out

    def _memory(self, caller: wasmtime.Caller) -> wasmtime.Memory:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            raise _BadMemory
        return memory

    def _read(self, caller: wasmtime.Caller, ptr: int, size: int) -> bytes:
        memory = self._memory(caller)
        if ptr < 0 or size < 0 or ptr + size > memory.data_len(caller):
            raise _BadMemory
        return bytes(memory.read(caller, ptr, ptr + size))

    def _text(self, caller: wasmtime.Caller, ptr: int, size: int) -> str:
        return self._read(caller, ptr, size).decode("utf-8", "replace")

    def _write(self, caller: wasmtime.Caller, ptr: int, data: bytes) -> None:
        memory = self._memory(caller)
        if ptr < 0 or ptr + len(data) > memory.data_len(caller):
            raise _BadMemory
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

    # logging, time, properties

    def log(self, caller: wasmtime.Caller, level: int, ptr: int, size: int) -> int:
        log.log(
            abi.LOG_LEVELS.get(level, logging.INFO), "[wasm %s] %s", self.function_name, self._text(caller, ptr, size)
        )
        return abi.OK

    def get_log_level(self, caller: wasmtime.Caller, ret_ptr: int) -> int:
        level = next((n for n, py in sorted(abi.LOG_LEVELS.items()) if log.isEnabledFor(py)), 5)
        self._write(caller, ret_ptr, struct.pack("<I", level))
        return abi.OK

    def get_current_time_nanoseconds(self, caller: wasmtime.Caller, ret_ptr: int) -> int:
        self._write(caller, ret_ptr, struct.pack("<Q", time.time_ns()))
        return abi.OK

    def get_property(self, caller: wasmtime.Caller, path_ptr: int, path_size: int, ptr_ptr: int, size_ptr: int) -> int:
        path = self._text(caller, path_ptr, path_size).strip("\0").replace("\0", ".")
        value = self.exchange.properties.get(path)
        if value is None:
            return abi.NOT_FOUND
        return self._give(caller, value, ptr_ptr, size_ptr)

    def set_property(self, caller: wasmtime.Caller, path_ptr: int, path_size: int, ptr: int, size: int) -> int:
        path = self._text(caller, path_ptr, path_size).strip("\0").replace("\0", ".")
        self.exchange.properties[path] = self._read(caller, ptr, size)
        return abi.OK

    # buffers

    def get_buffer_bytes(self, caller: wasmtime.Caller, *args: int) -> int:
        """(buffer type, start, max size, result ptr ptr, result size ptr)"""
        kind, start, max_size, ptr_ptr, size_ptr = args
        buffer = self.exchange.buffers().get(kind)
        if buffer is None:
            return abi.BAD_ARGUMENT
        return self._give(caller, buffer[start : start + max_size], ptr_ptr, size_ptr)

    def get_buffer_status(self, caller: wasmtime.Caller, kind: int, length_ptr: int, flags_ptr: int) -> int:
        buffer = self.exchange.buffers().get(kind)
        if buffer is None:
            return abi.BAD_ARGUMENT
        self._write(caller, length_ptr, struct.pack("<I", len(buffer)))
        self._write(caller, flags_ptr, struct.pack("<I", 0))
        return abi.OK

    def set_buffer_bytes(self, caller: wasmtime.Caller, *args: int) -> int:
        """(buffer type, start, size replaced, data ptr, data size)"""
        kind, start, size, ptr, length = args
        buffer = self.exchange.buffers().get(kind)
        if buffer is None or kind == abi.PLUGIN_CONFIGURATION:
            return abi.BAD_ARGUMENT
        data = self._read(caller, ptr, length)
        self.exchange.set_buffer(kind, buffer[:start] + data + buffer[start + size :])
        return abi.OK

    # header maps

    def get_header_map_pairs(self, caller: wasmtime.Caller, kind: int, ptr_ptr: int, size_ptr: int) -> int:
        pairs = self.exchange.header_map(kind)
        if pairs is None:
            return abi.BAD_ARGUMENT
        return self._give(caller, abi.encode_pairs(pairs), ptr_ptr, size_ptr)

    def set_header_map_pairs(self, caller: wasmtime.Caller, kind: int, ptr: int, size: int) -> int:
        pairs = self.exchange.header_map(kind)
        if pairs is None:
            return abi.BAD_ARGUMENT
        try:
            pairs[:] = abi.decode_pairs(self._read(caller, ptr, size))
        except ValueError:
            return abi.SERIALIZATION_FAILURE
        return abi.OK

    def get_header_map_size(self, caller: wasmtime.Caller, kind: int, ret_ptr: int) -> int:
        pairs = self.exchange.header_map(kind)
        if pairs is None:
            return abi.BAD_ARGUMENT
        self._write(caller, ret_ptr, struct.pack("<I", len(abi.encode_pairs(pairs))))
        return abi.OK

    def get_header_map_value(self, caller: wasmtime.Caller, *args: int) -> int:
        """(map type, key ptr, key size, result ptr ptr, result size ptr)"""
        kind, key_ptr, key_size, ptr_ptr, size_ptr = args
        pairs = self.exchange.header_map(kind)
        if pairs is None:
            return abi.BAD_ARGUMENT
        key = self._text(caller, key_ptr, key_size).lower()
        value = next((v for k, v in pairs if k.lower() == key), None)
        if value is None:
            return abi.NOT_FOUND
        return self._give(caller, value.encode(), ptr_ptr, size_ptr)

    def add_header_map_value(self, caller: wasmtime.Caller, *args: int) -> int:
        """(map type, key ptr, key size, value ptr, value size)"""
        kind, kp, ks, vp, vs = args
        pairs = self.exchange.header_map(kind)
        if pairs is None:
            return abi.BAD_ARGUMENT
        pairs.append((self._text(caller, kp, ks).lower(), self._text(caller, vp, vs)))
        return abi.OK

    def replace_header_map_value(self, caller: wasmtime.Caller, *args: int) -> int:
        """(map type, key ptr, key size, value ptr, value size)"""
        kind, kp, ks, vp, vs = args
        pairs = self.exchange.header_map(kind)
        if pairs is None:
            return abi.BAD_ARGUMENT
        key = self._text(caller, kp, ks).lower()
        pairs[:] = [(k, v) for k, v in pairs if k.lower() != key] + [(key, self._text(caller, vp, vs))]
        return abi.OK

    def remove_header_map_value(self, caller: wasmtime.Caller, kind: int, key_ptr: int, key_size: int) -> int:
        pairs = self.exchange.header_map(kind)
        if pairs is None:
            return abi.BAD_ARGUMENT
        key = self._text(caller, key_ptr, key_size).lower()
        pairs[:] = [(k, v) for k, v in pairs if k.lower() != key]
        return abi.OK

    def send_local_response(self, caller: wasmtime.Caller, status: int, *args: int) -> int:
        """(status, details ptr/size, body ptr/size, headers ptr/size, grpc status): the response, now."""
        _details_ptr, _details_size, body_ptr, body_size, headers_ptr, headers_size, _grpc = args
        body = self._read(caller, body_ptr, body_size)
        try:
            headers = abi.decode_pairs(self._read(caller, headers_ptr, headers_size)) if headers_size else []
        except ValueError:
            return abi.SERIALIZATION_FAILURE
        if not 100 <= status <= 599:
            return abi.BAD_ARGUMENT
        exchange = self.exchange
        exchange.status, exchange.response_body, exchange.local_response = status, body, True
        exchange.response_headers[:] = headers
        return abi.OK

    # shared data and the runtime (Layotto's calls)

    def get_shared_data(self, caller: wasmtime.Caller, *args: int) -> int:
        """(key ptr, key size, value ptr ptr, value size ptr, cas ptr)"""
        key_ptr, key_size, ptr_ptr, size_ptr, cas_ptr = args
        found = self.bridge.get_shared(self._text(caller, key_ptr, key_size))
        if found is None:
            return abi.NOT_FOUND
        self._write(caller, cas_ptr, struct.pack("<I", found[1]))
        return self._give(caller, found[0], ptr_ptr, size_ptr)

    def set_shared_data(self, caller: wasmtime.Caller, *args: int) -> int:
        """(key ptr, key size, value ptr, value size, cas: 0 or the version last read)"""
        key_ptr, key_size, ptr, size, cas = args
        stored = self.bridge.set_shared(self._text(caller, key_ptr, key_size), self._read(caller, ptr, size), cas)
        return abi.OK if stored else abi.CAS_MISMATCH

    def get_state(self, caller: wasmtime.Caller, *args: int) -> int:
        """(store ptr/size, key ptr/size, result ptr ptr, result size ptr): the value ("" when none)."""
        store_ptr, store_size, key_ptr, key_size, ptr_ptr, size_ptr = args
        store, key = self._text(caller, store_ptr, store_size), self._text(caller, key_ptr, key_size)
        return self._runtime_call(caller, lambda d: self.bridge.get_state(store, key, d), ptr_ptr, size_ptr)

    def invoke_service(self, caller: wasmtime.Caller, *args: int) -> int:
        """(id, method, param as ptr/size each, result ptr ptr, result size ptr): the callee's answer."""
        id_ptr, id_size, method_ptr, method_size, param_ptr, param_size, ptr_ptr, size_ptr = args
        app_id, method = self._text(caller, id_ptr, id_size), self._text(caller, method_ptr, method_size)
        data = self._read(caller, param_ptr, param_size)
        return self._runtime_call(
            caller, lambda d: self.bridge.invoke_service(app_id, method, data, d), ptr_ptr, size_ptr
        )

    def _runtime_call(
        self, caller: wasmtime.Caller, call: Callable[[float], bytes], ptr_ptr: int, size_ptr: int
    ) -> int:
        try:
            value = call(self.exchange.deadline)
        except LayottoError as error:
            log.warning("[wasm %s] runtime call failed: %s: %s", self.function_name, error.reason, error.message)
            return abi.INTERNAL_FAILURE
        return self._give(caller, value, ptr_ptr, size_ptr)

    # HTTP callouts (through service invocation), made by the engine after the callback returns

    def http_call(self, caller: wasmtime.Caller, *args: int) -> int:
        """(upstream, headers, body, trailers as ptr/size each, timeout ms, token ptr): queue a callout
        to app ``upstream``, method ``:path``; its token at the token pointer."""
        up_ptr, up_size, headers_ptr, headers_size, body_ptr, body_size, _tp, _ts, timeout_ms, token_ptr = args
        exchange = self.exchange
        if exchange.callouts_made >= MAX_CALLOUTS:
            log.warning("[wasm %s] callout refused: %d callouts per call at most", self.function_name, MAX_CALLOUTS)
            return abi.INTERNAL_FAILURE
        app_id = self._text(caller, up_ptr, up_size)
        try:
            headers = abi.decode_pairs(self._read(caller, headers_ptr, headers_size)) if headers_size else []
        except ValueError:
            return abi.SERIALIZATION_FAILURE
        path = next((v for k, v in headers if k == ":path"), "/")
        if not app_id:
            return abi.BAD_ARGUMENT
        exchange.callouts_made += 1
        token = exchange.callouts_made
        timeout = timeout_ms / 1000 if timeout_ms else float("inf")
        exchange.callouts.append(
            Callout(token, app_id, path.lstrip("/"), self._read(caller, body_ptr, body_size), timeout)
        )
        self._write(caller, token_ptr, struct.pack("<I", token))
        return abi.OK

    def make_callout(self, callout: Callout) -> None:
        """Make ``callout`` within the call's deadline and its own timeout; the answer (status 200
        and the body) or, when it failed, no headers and no body, in the call-response buffers."""
        deadline = min(self.exchange.deadline, self.clock() + callout.timeout_seconds)
        try:
            body = self.bridge.invoke_service(callout.app_id, callout.method, callout.body, deadline)
        except LayottoError as error:
            log.warning("[wasm %s] callout to %r failed: %s", self.function_name, callout.app_id, error.message)
            self.exchange.call_response_headers, self.exchange.call_response_body = [], b""
            return
        self.exchange.call_response_headers, self.exchange.call_response_body = [(":status", "200")], body

    # shared queues

    def register_shared_queue(self, caller: wasmtime.Caller, name_ptr: int, name_size: int, token_ptr: int) -> int:
        try:
            token = self.bridge.queues.register(self.function_name, self._text(caller, name_ptr, name_size))
        except SharedLimit as error:
            log.warning("[wasm %s] %s", self.function_name, error)
            return abi.INTERNAL_FAILURE
        self._write(caller, token_ptr, struct.pack("<I", token))
        return abi.OK

    def resolve_shared_queue(self, caller: wasmtime.Caller, *args: int) -> int:
        """(vm id ptr/size: the registering function, "" for this one; name ptr/size; token ptr)"""
        vm_ptr, vm_size, name_ptr, name_size, token_ptr = args
        owner = self._text(caller, vm_ptr, vm_size) or self.function_name
        token = self.bridge.queues.resolve(owner, self._text(caller, name_ptr, name_size))
        if token is None:
            return abi.NOT_FOUND
        self._write(caller, token_ptr, struct.pack("<I", token))
        return abi.OK

    def enqueue_shared_queue(self, caller: wasmtime.Caller, token: int, ptr: int, size: int) -> int:
        try:
            owner = self.bridge.queues.enqueue(token, self._read(caller, ptr, size))
        except SharedLimit as error:
            log.warning("[wasm %s] %s", self.function_name, error)
            return abi.INTERNAL_FAILURE
        if owner is None:
            return abi.NOT_FOUND
        self.bridge.queue_ready(owner, token)
        return abi.OK

    def dequeue_shared_queue(self, caller: wasmtime.Caller, token: int, ptr_ptr: int, size_ptr: int) -> int:
        try:
            item = self.bridge.queues.dequeue(token)
        except KeyError:
            return abi.NOT_FOUND
        if item is None:
            return abi.EMPTY
        return self._give(caller, item, ptr_ptr, size_ptr)

    # metrics

    def define_metric(self, caller: wasmtime.Caller, kind: int, name_ptr: int, name_size: int, id_ptr: int) -> int:
        if name_size == 0 or name_size > MAX_NAME_BYTES:
            return abi.BAD_ARGUMENT
        try:
            metric_id = self.bridge.metrics.define(self.function_name, kind, self._text(caller, name_ptr, name_size))
        except ValueError:
            return abi.BAD_ARGUMENT
        except SharedLimit as error:
            log.warning("[wasm %s] %s", self.function_name, error)
            return abi.INTERNAL_FAILURE
        self._write(caller, id_ptr, struct.pack("<I", metric_id))
        return abi.OK

    def increment_metric(self, caller: wasmtime.Caller, metric_id: int, offset: int) -> int:
        return self._metric_call(lambda: self.bridge.metrics.increment(metric_id, offset))

    def record_metric(self, caller: wasmtime.Caller, metric_id: int, value: int) -> int:
        return self._metric_call(lambda: self.bridge.metrics.record(metric_id, value & 0xFFFFFFFFFFFFFFFF))

    def get_metric(self, caller: wasmtime.Caller, metric_id: int, result_ptr: int) -> int:
        try:
            value = self.bridge.metrics.get(metric_id)
        except KeyError:
            return abi.NOT_FOUND
        self._write(caller, result_ptr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))
        return abi.OK

    def _metric_call(self, call: Callable[[], None]) -> int:
        try:
            call()
        except KeyError:
            return abi.NOT_FOUND
        except ValueError:
            return abi.BAD_ARGUMENT
        return abi.OK

    # timers

    def set_tick_period_milliseconds(self, caller: wasmtime.Caller, period: int) -> int:
        self.bridge.set_tick_period(self.function_name, period)
        return abi.OK

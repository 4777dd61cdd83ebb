"""The host functions a proxy-wasm function imports (module ``env``), bound to one instance.

Memory goes in and out as proxy-wasm specifies (:mod:`~layotto.server.wasm.context`); a pointer
outside the memory answers INVALID_MEMORY_ACCESS (6).

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

import wasmtime

from layotto.server.errors import LayottoError
from layotto.server.wasm import abi
from layotto.server.wasm.context import BadMemory, Callout, Exchange, RuntimeBridge
from layotto.server.wasm.host_shared import SharedCalls

__all__ = ["Callout", "Exchange", "HostCalls", "RuntimeBridge", "signatures"]
log = logging.getLogger(__name__)
INVALID_MEMORY_ACCESS = 6
_I32, _I64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()


def _status(call: Callable[..., int]) -> Callable[..., int]:
    """``call`` with its i32 arguments read as unsigned (pointers, sizes, types) and a bad pointer
    answered INVALID_MEMORY_ACCESS."""

    def guarded(caller: wasmtime.Caller, *args: int) -> int:
        try:
            return call(caller, *(arg & 0xFFFFFFFF for arg in args))
        except BadMemory:
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


class HostCalls(SharedCalls):
    """The host functions of one instance; ``exchange`` is the request it is serving."""

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

"""The host calls that reach past one request: HTTP callouts, shared queues, metrics and ticks.

HTTP callouts (``proxy_http_call``, or ``proxy_dispatch_http_call``) are queued on the exchange and
made through service invocation (upstream = app id, ``:path`` = method) once the module's callback
returns; the engine then calls ``proxy_on_http_call_response``. Queues and metrics live in the
runtime (:mod:`~layotto.server.wasm.shared`), reached through the bridge.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import wasmtime

from layotto.server.errors import LayottoError
from layotto.server.wasm import abi
from layotto.server.wasm.context import MAX_CALLOUTS, Callout, GuestMemory
from layotto.server.wasm.shared import MAX_NAME_BYTES, SharedLimit

log = logging.getLogger("layotto.server.wasm.host")


class SharedCalls(GuestMemory):
    """Callouts, queues, metrics and the tick period of one instance."""

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

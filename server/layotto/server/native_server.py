"""pygrpc-native's asyncio server, with three fixes: answers given during a graceful stop reach the client,
a stream whose client reads slowly (or not at all) waits on the event loop, not in a thread, and a call
cancelled before its handler started is forgotten; and one shortcut: a chain of interceptors that only
pick a method's handler runs as one call.

pygrpc-native 0.5 runs a call's interceptors as grpc.aio does: a ``HandlerCallDetails`` with the
call's metadata copied, then one coroutine per interceptor and per continuation. The runtime's
default chain (:class:`~layotto.server.metrics.RpcMetrics` with the shutdown gate, or the
:class:`~layotto.server.shutdown_gate.ShutdownGate` alone) reads no metadata and awaits nothing:
each such interceptor also offers ``pick(method, handler)``, the same decision made synchronously
(given None, the handler an inner one refused, it answers None). When every interceptor of the
server has it, a call of a natively served method goes through the picks (innermost first, as
the continuations would) instead of the chain. Calls the grpc.aio server behind the front serves
(streams from the client, unknown methods) see the interceptors as before.

Importing this module raises ImportError when pygrpc-native is not installed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import grpc
import pygrpc_native
import pygrpc_native.aio
from pygrpc_native._native import EVENT_CANCEL, STREAM_CLOSED, STREAM_FULL
from pygrpc_native._server import _code, _use_handler

_LOG = logging.getLogger(__name__)

VERSION: str = pygrpc_native.__version__

SETTLE_SECONDS = 0.05
"""How long the front is given to write the answers it holds before it closes."""

FIRST_SEND_PAUSE_SECONDS = 0.001
LONGEST_SEND_PAUSE_SECONDS = 0.05
"""A stream whose client has not read enough tries its next message again after these pauses (doubling)."""


class _SettlingFront:
    """The server's NativeGrpcFront, whose ``close()`` first gives answers in flight a moment.

    pygrpc-native 0.5.0's ``Server.stop(grace)`` waits for the running handlers, then closes the
    front at once, and the front drops answers it was handed but has not written yet: a call that
    finished within the grace then reached its client as UNAVAILABLE ("GOAWAY received") about
    one time in three. Everything else is the front's own.
    """

    def __init__(self, front: pygrpc_native.NativeGrpcFront) -> None:
        self._front = front

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._front, name)
        setattr(self, name, value)  # kept: the per-call methods (respond, fail, ...) are looked up once
        return value

    def close(self) -> None:
        time.sleep(SETTLE_SECONDS)  # stop() calls this in an executor thread, never on the loop
        self._front.close()


def _forget(calls: dict[int, Any], call_id: int, task: asyncio.Task[None]) -> None:
    """Drops ``call_id`` from the server's calls once its task is done (a done callback)."""
    calls.pop(call_id, None)


class HandlerPicker(Protocol):
    """An interceptor whose whole work is choosing the handler of a call from its method name (no
    metadata read, nothing awaited): ``pick`` gives what ``intercept_service`` would return when its
    continuation returns ``handler``."""

    def pick(self, method: str, handler: Any) -> Any: ...


class NativeServer(pygrpc_native.aio.Server):
    """``pygrpc_native.aio.Server`` whose graceful stop delivers the answers of the calls it waited
    for, and which runs a chain of :class:`HandlerPicker` s without the per-call chain (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pickers: list[Callable[[str, Any], Any]] = []
        for interceptor in self._interceptors:
            pick = getattr(interceptor, "pick", None)
            if pick is None:
                break
            pickers.append(pick)
        #: the interceptors' picks, innermost first; None: the chain runs as pygrpc-native runs it
        self._picks = tuple(reversed(pickers)) if pickers and len(pickers) == len(self._interceptors) else None

    async def _intercept(self, call: Any) -> bool:
        picks, front = self._picks, self._front
        if picks is None or front is None:
            return await super()._intercept(call)
        handler, method = call.handler, call.method
        try:
            for pick in picks:  # each is called, as each interceptor's intercept_service would be
                handler = pick(method, handler)
        except Exception as error:  # as pygrpc-native answers an interceptor's error
            _LOG.exception("Unexpected error in interceptor: %s", error)
            front.fail(call.call_id, _code(grpc.StatusCode.UNKNOWN), f"Unexpected {type(error)}: {error}")
            return False
        return _use_handler(front, call, handler)

    def _on_events(self, events: list[tuple[Any, ...]]) -> None:
        """pygrpc-native's, and a call cancelled before its task ran is dropped from the table of calls.

        pygrpc-native 0.5.0 drops a call when its task ends (``_run``'s ``finally``); a task cancelled
        before its first step never runs that, so a call whose cancel (the client's, or its deadline)
        reached the loop with it stayed in ``_calls``, request bytes included, for good.
        """
        super()._on_events(events)
        calls = self._calls
        for event in events:
            if event[0] == EVENT_CANCEL and (call := calls.get(event[1])) is not None and call.task is not None:
                call.task.add_done_callback(functools.partial(_forget, calls, event[1]))

    async def _send(self, call: Any, context: Any, response: Any) -> bool:
        """Sends one message of a server stream; False when the stream is gone (or the message failed).

        pygrpc-native 0.5.0 waits for a client that has not read enough in ``stream_send``, on the
        loop's default executor: a few clients that stop reading (6 on 2 cores) held all its threads,
        so every ``asyncio.to_thread`` of the runtime (files, secrets, crypto, ...) waited for them,
        and a stop never ended (closing the front runs on that executor too). Here the stream waits
        on the loop, retrying ``stream_try_send`` (which sends nothing when the stream is full);
        a client that goes away cancels the call's task, and with it the wait.
        """
        front = self._front
        assert front is not None
        data = self._encode(call, context, response)
        if data is None:
            return False
        context._initial_sent = True
        pause = FIRST_SEND_PAUSE_SECONDS
        while (sent := front.stream_try_send(call.call_id, data)) == STREAM_FULL:
            await asyncio.sleep(pause)
            pause = min(2 * pause, LONGEST_SEND_PAUSE_SECONDS)
        return bool(sent != STREAM_CLOSED)

    def add_insecure_port(self, address: str) -> int:
        port = super().add_insecure_port(address)
        assert self._front is not None
        self._front = _SettlingFront(self._front)  # type: ignore[assignment]
        return port


def server(
    options: Iterable[tuple[str, Any]], interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]]
) -> NativeServer:
    """Like ``pygrpc_native.aio.server(options=..., interceptors=...)``.

    Raises ValueError or NotImplementedError for an option or interceptor pygrpc-native refuses.
    """
    return NativeServer(options=options, interceptors=interceptors)

"""pygrpc-native's asyncio server, with one fix: answers given during a graceful stop reach the client.

Importing this module raises ImportError when pygrpc-native is not installed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import grpc
import pygrpc_native
import pygrpc_native.aio

VERSION: str = pygrpc_native.__version__

SETTLE_SECONDS = 0.05
"""How long the front is given to write the answers it holds before it closes."""


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


class NativeServer(pygrpc_native.aio.Server):
    """``pygrpc_native.aio.Server`` whose graceful stop delivers the answers of the calls it waited for."""

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

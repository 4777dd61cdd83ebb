"""A bidirectional stream to the runtime that is opened again when the runtime goes away.

Pub/Sub subscriptions and configuration watches are long-lived streams. When one ends because the
runtime (or, behind it, its backend) is unreachable — UNAVAILABLE, or the stream ending early —
it is opened again, with the client's retry backoff, until it works or it is closed. The first
response of every opening (the runtime's confirmation that it is in place) is read like any other.
"""

from __future__ import annotations

import asyncio
import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import grpc

from layotto.client._errors import RuntimeUnavailable, translate
from layotto.client._transport import Transport

EOF_: Any = grpc.aio.EOF  # type: ignore[attr-defined]
_LOST = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


class ResumableStream(ABC):
    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._call: Any = None
        self._closed = False

    @abstractmethod
    def _start(self) -> Any:
        """Start a new call (a fresh request stream included)."""

    async def _open(self, *, forever: bool = False) -> Any | None:
        """Open a stream, retrying UNAVAILABLE per the client's retry policy; ``forever``
        (after losing a stream): until it works or the stream is closed. Answers the first
        response, or None once closed."""
        policy = self._transport.retry
        delays: Iterator[float | None] = (
            itertools.chain(policy.delays(), itertools.repeat(policy.max_backoff))
            if forever
            else iter([*policy.delays(), None])
        )
        for delay in delays:
            if self._closed:
                return None
            self._call = self._start()
            try:
                first = await self._call.read()
            except grpc.aio.AioRpcError as error:
                if error.code() is not grpc.StatusCode.UNAVAILABLE or delay is None:
                    raise translate(error) from None
                await asyncio.sleep(delay)
                continue
            if first is EOF_:
                raise RuntimeUnavailable("the runtime closed the stream before answering", code="UNAVAILABLE")
            return first
        return None  # pragma: no cover - the delays only run out by raising

    async def _read(self) -> Any | None:
        """The next response — after a lost stream, the first of the new one; None once closed."""
        while not self._closed:
            try:
                response = await self._call.read()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    break  # aclose() cancelled the call under us
                raise
            except grpc.aio.AioRpcError as error:
                if self._closed:
                    break
                if error.code() not in _LOST:
                    raise translate(error) from None
                return await self._open(forever=True)
            if response is EOF_:
                if self._closed:
                    break
                return await self._open(forever=True)
            return response
        return None

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing()
        if self._call is not None:
            self._call.cancel()

    def _closing(self) -> None:
        """Let the request stream end (called once, by aclose)."""

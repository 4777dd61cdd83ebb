"""A bidirectional stream to the runtime that is opened again when the runtime goes away.

Pub/Sub subscriptions and configuration watches are long-lived streams. When one ends because the
runtime (or, behind it, its backend) is unreachable — UNAVAILABLE, or the stream ending early —
it is opened again, with the client's retry backoff, until it works or it is closed. The first
response of every opening (the runtime's confirmation that it is in place) is read like any other,
within the client's timeout (else :class:`DeadlineExceeded`); a stream the runtime ends before
that first response raises :class:`RuntimeUnavailable`.

An opening that fails in gRPC's client core (INTERNAL "Internal error from Core" with no ErrorInfo,
``LayottoError.transport_failure``) is retried like UNAVAILABLE: grpc.aio reports it instead of the
runtime's UNAVAILABLE when the runtime it reaches is stopping (https://github.com/grpc/grpc/issues/36066),
and the runtime has served nothing of the stream yet. Unary calls never retry it (see ``_retry``).
"""

from __future__ import annotations

import asyncio
import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from layotto.client._errors import DeadlineExceeded, LayottoError, RuntimeUnavailable
from layotto.client._transport import EOF, StreamCall, Transport

_LOST = ("UNAVAILABLE", "CANCELLED")


def _unreachable(error: LayottoError) -> bool:
    """Opening the stream failed before the runtime served it: UNAVAILABLE, or gRPC's core failed it."""
    return error.code == "UNAVAILABLE" or error.transport_failure


class ResumableStream(ABC):
    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._call: StreamCall | None = None
        self._closed = False
        self._ended = False  # the current call has answered EOF
        self._reading = asyncio.Lock()  # one read at a time: the app's, or aclose()'s drain

    @abstractmethod
    async def _start(self) -> StreamCall:
        """Open a new call and write its first request(s)."""

    async def _open(self, *, forever: bool = False) -> Any | None:
        """Open a stream, retrying UNAVAILABLE (and a failure of gRPC's core) per the client's
        retry policy; ``forever`` (after losing a stream): until it works or the stream is closed.
        Answers the first response, or None once closed."""
        policy = self._transport.retry
        delays: Iterator[float | None] = (
            itertools.chain(policy.delays(), itertools.repeat(policy.max_backoff))
            if forever
            else iter([*policy.delays(), None])
        )
        for delay in delays:
            if self._closed:
                return None
            try:
                self._call, self._ended = await self._start(), False
                first = await self._first_response()
            except LayottoError as error:
                if not _unreachable(error) or delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            if first is EOF:
                raise RuntimeUnavailable("the runtime closed the stream before answering", code="UNAVAILABLE")
            return first
        return None  # pragma: no cover - the delays only run out by raising

    async def _first_response(self) -> Any:
        """The new call's first response, within the client's timeout (None: no limit), else
        :class:`DeadlineExceeded` (the call cancelled)."""
        assert self._call is not None
        timeout = self._transport.timeout
        try:
            async with asyncio.timeout(timeout):
                return await self._call.read()
        except TimeoutError:
            self._call.cancel()
            self._ended = True
            message = f"the runtime did not answer the stream's first request within {timeout} s"
            raise DeadlineExceeded(message, code="DEADLINE_EXCEEDED") from None

    async def _read(self) -> Any | None:
        """The next response — after a lost stream, the first of the new one; None once closed."""
        while not self._closed:
            assert self._call is not None
            try:
                async with self._reading:
                    response = EOF if self._ended else await self._call.read()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    break  # aclose() cancelled the call under us
                raise
            except LayottoError as error:
                if self._closed:
                    break
                if error.code not in _LOST:
                    raise
                return await self._open(forever=True)
            if response is EOF:
                self._ended = True
                if self._closed:
                    break
                return await self._open(forever=True)
            if self._closed:
                continue  # closing: what the runtime still sends is delivered again to others
            return response
        return None

    async def _drain(self) -> None:
        """Read the current call to its end (what arrives is dropped: the runtime offers it again)."""
        async with self._reading:
            while self._call is not None and not self._ended:
                self._ended = await self._call.read() is EOF

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._call is not None:
            self._call.cancel()

"""``client.lock`` and ``client.sequencer``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import uuid
from types import TracebackType

from layotto.client._errors import LayottoError, LockLost, LockNotAcquired
from layotto.client._transport import Transport
from layotto.client._ttl import ttl_seconds
from layotto.proto.runtime.v1 import runtime_pb2 as pb

__all__ = ["Lease", "LockClient", "LockStatus", "SequencerClient"]


class LockStatus(enum.IntEnum):
    """What Unlock and KeepAlive answer."""

    SUCCESS = 0
    LOCK_UNEXIST = 1
    LOCK_BELONG_TO_OTHERS = 2
    INTERNAL_ERROR = 3


class Lease:
    """A held lock, kept alive in the background until the ``async with`` block ends.

    ``lost`` turns true when a keep-alive finds the lock expired or taken; leaving the
    block then raises :class:`LockLost`.
    """

    def __init__(self, client: LockClient, store: str, resource: str, owner: str, ttl: int) -> None:
        self.store, self.resource, self.owner, self.ttl = store, resource, owner, ttl
        self._client = client
        self._lost: LockStatus | None = None
        self._keeper: asyncio.Task[None] | None = None

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def _start(self) -> None:
        self._keeper = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        interval = max(0.2, self.ttl / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                status = await self._client.keep_alive(self.store, self.resource, self.owner, ttl=self.ttl)
            except LayottoError:
                continue  # a failed call is retried at the next tick, while the lock has time left
            if status is not LockStatus.SUCCESS:
                self._lost = status
                return

    async def aclose(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
            self._keeper = None
        if self._lost is None:
            status = await self._client.unlock(self.store, self.resource, self.owner)
            if status is not LockStatus.SUCCESS:
                self._lost = status

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
        if self._lost is not None and exc is None:
            raise LockLost(
                f"lock {self.resource!r} in {self.store!r} was lost while held ({self._lost.name})",
                code="LOCK_LOST",
                metadata={"resource": self.resource, "status": self._lost.name},
            )


class LockClient:
    """Non-blocking, non-reentrant distributed locks that expire after ``ttl`` seconds."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def try_lock(
        self, store: str, resource: str, owner: str, *, ttl: float | dt.timedelta, timeout: float | None = None
    ) -> bool:
        """Take the lock if it is free; it expires after ``ttl`` (seconds or a timedelta, a
        positive duration sent as whole seconds rounded up; 0, negatives, NaN, infinity and bools
        raise InvalidArgument naming ``ttl`` before any call). True if taken."""
        request = pb.TryLockRequest(store_name=store, resource_id=resource, lock_owner=owner, expire=ttl_seconds(ttl))
        return bool((await self._t.unary("TryLock", request, timeout)).success)

    async def unlock(self, store: str, resource: str, owner: str, *, timeout: float | None = None) -> LockStatus:
        request = pb.UnlockRequest(store_name=store, resource_id=resource, lock_owner=owner)
        return LockStatus((await self._t.unary("Unlock", request, timeout)).status)

    async def keep_alive(
        self, store: str, resource: str, owner: str, *, ttl: float | dt.timedelta, timeout: float | None = None
    ) -> LockStatus:
        request = pb.LockKeepAliveRequest(
            store_name=store, resource_id=resource, lock_owner=owner, expire=ttl_seconds(ttl)
        )
        return LockStatus((await self._t.unary("LockKeepAlive", request, timeout, idempotent=True)).status)

    def acquire(
        self,
        store: str,
        resource: str,
        *,
        ttl: float | dt.timedelta,
        owner: str | None = None,
        wait: float = 0.0,
    ) -> _Acquire:
        """``async with client.lock.acquire(store, resource, ttl=10) as lease:``

        Takes the lock (retrying for up to ``wait`` seconds; LockNotAcquired after that),
        keeps it alive every ttl/3 while the block runs, and releases it on exit.
        """
        return _Acquire(self, store, resource, ttl_seconds(ttl), owner or uuid.uuid4().hex, wait=wait)


class _Acquire:
    def __init__(self, client: LockClient, store: str, resource: str, ttl: int, owner: str, *, wait: float) -> None:
        self._args = (client, store, resource, owner, ttl)
        self._wait = wait
        self._lease: Lease | None = None

    async def __aenter__(self) -> Lease:
        client, store, resource, owner, ttl = self._args
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self._wait, 0.05
        while not await client.try_lock(store, resource, owner, ttl=ttl):
            if loop.time() + delay > deadline:
                raise LockNotAcquired(
                    f"lock {resource!r} in {store!r} is held by someone else",
                    code="LOCK_HELD",
                    metadata={"resource": resource},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        self._lease = Lease(client, store, resource, owner, ttl)
        self._lease._start()
        return self._lease

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._lease is not None
        await self._lease.__aexit__(exc_type, exc, tb)


class SequencerClient:
    """Distributed ids, unique and increasing per key."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def next_id(self, store: str, key: str, *, strong: bool = True, timeout: float | None = None) -> int:
        """STRONG ids increase across every runtime; WEAK ones (``strong=False``) are cheaper and
        unique, increasing within one runtime."""
        increment = pb.SequencerOptions.STRONG if strong else pb.SequencerOptions.WEAK
        request = pb.GetNextIdRequest(store_name=store, key=key, options=pb.SequencerOptions(increment=increment))
        return int((await self._t.unary("GetNextId", request, timeout, idempotent=True)).next_id)

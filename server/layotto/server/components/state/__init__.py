"""The State building block: the interface every state store implements."""

from __future__ import annotations

import asyncio
import enum
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layotto.server.aio import stop_task
from layotto.server.components.base import Component
from layotto.server.errors import BackendError, BackendUnavailable, EtagInvalid, EtagMismatch, LayottoError

if TYPE_CHECKING:
    from layotto.server.components.state.query import Query, QueryResult

log = logging.getLogger(__name__)


class Concurrency(enum.Enum):
    UNSPECIFIED = 0
    FIRST_WRITE = 1
    LAST_WRITE = 2


@dataclass(frozen=True)
class StateEntry:
    key: str
    value: bytes
    etag: str
    expire_at: float | None = None  # unix seconds


@dataclass(frozen=True)
class SetRequest:
    key: str
    value: bytes
    etag: str | None = None
    ttl_seconds: int | None = None  # None: the key never expires
    concurrency: Concurrency = Concurrency.UNSPECIFIED


@dataclass(frozen=True)
class DeleteRequest:
    key: str
    etag: str | None = None
    concurrency: Concurrency = Concurrency.UNSPECIFIED


WriteRequest = SetRequest | DeleteRequest


def parse_etag(request: WriteRequest) -> int | None:
    """The request's etag as the version number stores issue, or EtagInvalid."""
    if not request.etag:
        return None
    if not request.etag.isdigit() or len(request.etag) > 19:
        raise EtagInvalid(request.key, request.etag)
    return int(request.etag)


def check_etag(request: WriteRequest, current_etag: int | None) -> None:
    """Optimistic concurrency shared by the stores whose etags are version numbers.

    A given etag must be one this store issued (digits) and equal the current one;
    first-write without an etag requires the key not to exist yet.
    """
    expected = parse_etag(request)
    if expected is not None:
        if current_etag is None or expected != current_etag:
            raise EtagMismatch(request.key)
    elif (
        request.concurrency is Concurrency.FIRST_WRITE and isinstance(request, SetRequest) and current_etag is not None
    ):
        raise EtagMismatch(request.key)


class ExpiryPurger:
    """Runs a store's purge of expired keys every ``interval`` seconds until stopped.

    Reads never return expired keys; the purge only frees their space. A purge that
    fails because the backend is down is retried at the next tick.
    """

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    def start(self, interval: float, purge: Callable[[], Awaitable[None]]) -> None:
        self._task = asyncio.create_task(self._run(interval, purge))

    @staticmethod
    async def _run(interval: float, purge: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await purge()
            except (BackendUnavailable, BackendError) as error:
                log.debug("purging expired keys failed, retrying in %ss: %s", interval, error.message)

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None


class StateStore(Component):
    """A key/value store with etags; bulk and transactional defaults build on get/set."""

    @abstractmethod
    async def get(self, key: str) -> StateEntry | None: ...

    @abstractmethod
    async def set(self, request: SetRequest) -> None: ...

    @abstractmethod
    async def delete(self, request: DeleteRequest) -> None: ...

    async def bulk_get(self, keys: Sequence[str]) -> list[StateEntry | LayottoError | None]:
        results: list[StateEntry | LayottoError | None] = []
        for key in keys:
            try:
                results.append(await self.get(key))
            except LayottoError as error:
                results.append(error)
        return results

    async def bulk_write(self, requests: Sequence[WriteRequest]) -> dict[str, LayottoError]:
        """Apply each request on its own; return the failures by key."""
        failures: dict[str, LayottoError] = {}
        for request in requests:
            try:
                if isinstance(request, SetRequest):
                    await self.set(request)
                else:
                    await self.delete(request)
            except (EtagMismatch, EtagInvalid) as error:
                failures[request.key] = error
        return failures

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        """Apply every request in order, atomically (stores declaring TRANSACTIONAL)."""
        raise NotImplementedError

    async def query(self, query: Query) -> QueryResult:
        """The page of live entries ``query`` selects, with the semantics of
        :mod:`layotto.server.components.state.query` (stores declaring QUERY_API)."""
        raise NotImplementedError

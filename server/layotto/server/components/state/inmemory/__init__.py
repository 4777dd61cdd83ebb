"""In-memory state store: the reference implementation of the State API."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, Feature, MetadataField
from layotto.server.components.state import (
    DeleteRequest,
    ExpiryPurger,
    SetRequest,
    StateEntry,
    StateStore,
    WriteRequest,
    check_etag,
)
from layotto.server.components.state.query import Query, QueryResult, evaluate

#: the etag of a value written earlier in the same transaction, which no client can know yet
_UNSEEN_ETAG = -1


@dataclass(frozen=True)
class _Record:
    value: bytes
    etag: int
    expire_at: float | None

    def expired(self, now: float) -> bool:
        return self.expire_at is not None and self.expire_at <= now


class InMemoryStateStore(StateStore):
    spec = ComponentSpec(
        type="in-memory",
        building_block="state",
        description="Keeps state in the runtime's memory: fast, lost on restart, not shared between runtimes.",
        features=frozenset({Feature.ETAG, Feature.FIRST_WRITE, Feature.TRANSACTIONAL, Feature.TTL, Feature.QUERY}),
        metadata=(
            MetadataField(
                "cleanupIntervalInSeconds",
                "How often expired keys are purged from memory (reads never return them).",
                type=float,
                default=10.0,
                minimum=0.1,
                maximum=86400,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._data: dict[str, _Record] = {}
        self._last_etag = 0
        self._purger = ExpiryPurger()

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._purger.start(float(metadata["cleanupIntervalInSeconds"]), self._purge)

    async def close(self) -> None:
        await self._purger.stop()

    async def _purge(self) -> None:
        now = time.time()
        for key in [k for k, r in self._data.items() if r.expired(now)]:
            del self._data[key]

    def _live(self, key: str) -> _Record | None:
        record = self._data.get(key)
        if record is not None and record.expired(time.time()):
            del self._data[key]
            return None
        return record

    def _check(self, request: WriteRequest) -> None:
        record = self._live(request.key)
        check_etag(request, None if record is None else record.etag)

    def _apply(self, request: WriteRequest) -> None:
        if isinstance(request, DeleteRequest):
            self._data.pop(request.key, None)
            return
        self._last_etag += 1
        expire_at = None if request.ttl_seconds is None else time.time() + request.ttl_seconds
        self._data[request.key] = _Record(request.value, self._last_etag, expire_at)

    async def get(self, key: str) -> StateEntry | None:
        record = self._live(key)
        if record is None:
            return None
        return StateEntry(key, record.value, str(record.etag), record.expire_at)

    async def set(self, request: SetRequest) -> None:
        self._check(request)
        self._apply(request)

    async def delete(self, request: DeleteRequest) -> None:
        self._check(request)
        self._apply(request)

    async def transact(self, requests: Sequence[WriteRequest]) -> None:
        # Validate every step against the state the earlier steps leave, then apply
        # them all; with no await in between, the event loop makes this atomic.
        after: dict[str, int | None] = {}
        for request in requests:
            if request.key in after:
                current = after[request.key]
            else:
                record = self._live(request.key)
                current = None if record is None else record.etag
            check_etag(request, current)
            after[request.key] = None if isinstance(request, DeleteRequest) else _UNSEEN_ETAG
        for request in requests:
            self._apply(request)

    async def query(self, query: Query) -> QueryResult:
        now = time.time()
        live = (StateEntry(k, r.value, str(r.etag), r.expire_at) for k, r in self._data.items() if not r.expired(now))
        return evaluate(live, query)

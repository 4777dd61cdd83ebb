"""Snowflake sequencer: ids made of time, a worker id and a per-millisecond sequence.

Layout (63 bits): milliseconds since ``startTime`` (41 bits, about 69 years) | worker id
(10 bits) | sequence (12 bits). Ids are made in the runtime without a round trip, so they
are fast; they increase within a runtime and are ordered by time across runtimes.

Uniqueness rests on two guarantees, both backed by Redis:

* **worker ids are leased**: a runtime takes a free worker id with ``SET NX PX`` and keeps
  it alive; two live runtimes never share one. A runtime that loses its lease stops
  issuing ids (UNAVAILABLE) until it has a new one.
* **no time is used twice**: with every renewal the runtime records a high-water mark
  ``now + 2 * renewal interval`` beside the lease, and never issues an id from beyond it.
  A runtime that takes a worker id over (after a crash) starts after the previous holder's
  mark, so even a restart within the same millisecond, or a clock set back, cannot repeat
  an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from layotto.server.aio import stop_task
from layotto.server.components.base import KEY_PREFIX, ComponentContext, ComponentSpec, Health, MetadataField
from layotto.server.components.redis_client import REDIS_METADATA, RedisConnection
from layotto.server.components.sequencer import Sequencer
from layotto.server.errors import BackendUnavailable

WORKER_BITS, SEQUENCE_BITS = 10, 12
MAX_WORKERS, MAX_SEQUENCE = 1 << WORKER_BITS, (1 << SEQUENCE_BITS) - 1

_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return 1
"""

_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3])
return 1
"""


class SnowflakeSequencer(Sequencer):
    spec = ComponentSpec(
        type="snowflake",
        building_block="sequencer",
        description="Time-ordered 63-bit ids made in the runtime, worker ids leased from Redis so no two "
        "runtimes share one. Every key draws from the same id space.",
        metadata=(
            *REDIS_METADATA,
            MetadataField("startTime", "Epoch of the time bits (UTC date).", default="2022-01-01"),
            MetadataField(
                "leaseSeconds",
                "How long a worker id lease lasts without renewal.",
                type=float,
                default=30.0,
                minimum=1,
                maximum=86400,
            ),
            MetadataField("workerKeyPrefix", "Prefix of the worker lease keys in Redis.", default="layotto:snowflake:"),
            KEY_PREFIX,
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._redis = RedisConnection(name)
        self._instance = uuid.uuid4().hex
        self.worker_id: int | None = None
        self._last_ms = -1
        self._sequence = 0
        self._high_water = 0
        self._renewer: asyncio.Task[None] | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        start = dt.datetime.fromisoformat(str(metadata["startTime"])).replace(tzinfo=dt.UTC)
        self._epoch_ms = int(start.timestamp() * 1000)
        self._lease_ms = int(float(metadata["leaseSeconds"]) * 1000)
        self._prefix = str(metadata["workerKeyPrefix"])
        await self._redis.open(metadata)
        self._renew_script = self._redis.client.register_script(_RENEW)
        await self._acquire_worker()
        self._renewer = asyncio.create_task(self._keep_lease())

    async def close(self) -> None:
        if self._renewer is not None:
            await stop_task(self._renewer)
        if self.worker_id is not None:
            with contextlib.suppress(Exception):
                await self._redis.client.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                    1,
                    self._lease_key(self.worker_id),
                    self._instance,
                )
        await self._redis.close()

    async def health(self) -> Health:
        health = await self._redis.health()
        if health.up and self.worker_id is None:
            return Health(up=False, details={"error": "no worker id leased"})
        return health

    def _lease_key(self, worker: int) -> str:
        return f"{self._prefix}worker:{worker}"

    def _mark_key(self, worker: int) -> str:
        return f"{self._prefix}high-water:{worker}"

    def _now_ms(self) -> int:
        return int(time.time() * 1000) - self._epoch_ms

    def _renewal_interval_ms(self) -> int:
        return max(100, self._lease_ms // 3)

    async def _release(self, worker: int, mark: int) -> None:
        async with self._redis.errors("EVAL release"):
            await self._redis.client.eval(
                _RELEASE, 2, self._lease_key(worker), self._mark_key(worker), self._instance, mark
            )

    async def _acquire_worker(self) -> None:
        """Lease a free worker id, preferring one whose previous holder's time is already past."""
        client = self._redis.client
        first = random.randrange(MAX_WORKERS)
        for patient in (False, True):
            for offset in range(MAX_WORKERS):
                worker = (first + offset) % MAX_WORKERS
                async with self._redis.errors("SET NX"):
                    if not await client.set(self._lease_key(worker), self._instance, nx=True, px=self._lease_ms):
                        continue
                    previous = int(await client.get(self._mark_key(worker)) or 0)
                if previous > self._now_ms() and not patient:
                    await self._release(worker, previous)  # its last holder may still own that time: look on
                    continue
                self._last_ms = max(self._last_ms, previous)
                self._sequence = MAX_SEQUENCE  # the next id moves on to a fresh millisecond
                self.worker_id = worker
                await self._renew()
                return
        raise BackendUnavailable(self.name, f"all {MAX_WORKERS} worker ids are leased")

    async def _renew(self) -> bool:
        assert self.worker_id is not None
        mark = max(self._now_ms(), self._last_ms) + 2 * self._renewal_interval_ms()
        async with self._redis.errors("EVALSHA renew"):
            kept = await self._renew_script(
                keys=[self._lease_key(self.worker_id), self._mark_key(self.worker_id)],
                args=[self._instance, self._lease_ms, mark],
            )
        if kept:
            self._high_water = mark
        return bool(kept)

    async def _keep_lease(self) -> None:
        while True:
            await asyncio.sleep(self._renewal_interval_ms() / 1000)
            try:
                if not await self._renew():
                    self.worker_id = None  # lost: someone else may hold it now
                    await self._acquire_worker()
            except BackendUnavailable:
                continue  # retried next tick; ids stop at the high-water mark meanwhile

    async def next_block(self, key: str, size: int) -> int:
        last = 0
        for _ in range(size):
            last = await self._next_id()
        return last

    async def _next_id(self) -> int:
        while True:
            if self.worker_id is None:
                raise BackendUnavailable(self.name, "no worker id leased")
            now = self._now_ms()
            if now > self._high_water:
                raise BackendUnavailable(self.name, "the worker id lease could not be renewed in time")
            if now > self._last_ms:
                self._last_ms, self._sequence = now, 0
            elif self._sequence < MAX_SEQUENCE:
                self._sequence += 1
            else:
                await asyncio.sleep(0.0005)  # this millisecond is used up (or the clock went back)
                continue
            return (self._last_ms << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker_id << SEQUENCE_BITS) | self._sequence

"""The snowflake sequencer: leased worker ids on a real Redis, unique and increasing ids."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import backends
import pytest

from layotto.server.components.base import ComponentContext
from layotto.server.components.sequencer.snowflake import MAX_WORKERS, SEQUENCE_BITS, SnowflakeSequencer


async def make(tmp_path: Path, prefix: str, lease: str = "3") -> SnowflakeSequencer:
    sequencer = SnowflakeSequencer("snow")
    metadata = SnowflakeSequencer.spec.parse_metadata(
        {"redisHost": backends.address("redis"), "workerKeyPrefix": prefix, "leaseSeconds": lease}, "sequencer.snow"
    )
    sequencer.metadata = metadata
    await sequencer.init(metadata, ComponentContext("app", tmp_path))
    return sequencer


@pytest.fixture
def prefix() -> str:
    backends.require("redis")
    return f"layotto-test:{uuid.uuid4().hex[:8]}:"


async def test_two_runtimes_never_share_a_worker_or_an_id(tmp_path: Path, prefix: str) -> None:
    first, second = await make(tmp_path, prefix), await make(tmp_path, prefix)
    try:
        assert first.worker_id is not None and first.worker_id != second.worker_id
        a = [await first.next_block("k", 1) for _ in range(20_000)]
        b = [await second.next_block("other", 1) for _ in range(20_000)]
        assert all(y > x for x, y in itertools.pairwise(a)) and all(y > x for x, y in itertools.pairwise(b))
        assert not set(a) & set(b)
        assert {(i >> SEQUENCE_BITS) & (MAX_WORKERS - 1) for i in a} == {first.worker_id}
    finally:
        await first.close()
        await second.close()


async def test_a_worker_id_taken_over_never_repeats_time(tmp_path: Path, prefix: str) -> None:
    first = await make(tmp_path, prefix)
    worker = first.worker_id
    assert worker is not None
    drawn = [await first.next_block("k", 1) for _ in range(5_000)]
    await first.close()
    # every other worker id is busy: the next runtime must take over the same one
    scratch = await make(tmp_path, f"{prefix}scratch:")  # borrowed for its Redis client
    async with scratch._redis.client.pipeline(transaction=False) as pipe:
        for other in range(MAX_WORKERS):
            if other != worker:
                pipe.set(f"{prefix}worker:{other}", "busy", px=60_000)
        await pipe.execute()
    await scratch.close()
    second = await make(tmp_path, prefix)
    try:
        assert second.worker_id == worker
        assert await second.next_block("k", 1) > max(drawn)
    finally:
        await second.close()


async def test_a_lost_lease_is_replaced_and_ids_stay_unique(tmp_path: Path, prefix: str) -> None:
    sequencer = await make(tmp_path, prefix, lease="1.5")
    try:
        before = [await sequencer.next_block("k", 1) for _ in range(1_000)]
        lost = sequencer.worker_id
        await sequencer._redis.client.set(f"{prefix}worker:{lost}", "someone-else", px=60_000)  # stolen
        for _ in range(40):  # the renewal notices within a renewal interval (0.5 s here)
            if sequencer.worker_id not in (None, lost):
                break
            await asyncio.sleep(0.1)
        assert sequencer.worker_id not in (None, lost)
        after = [await sequencer.next_block("k", 1) for _ in range(1_000)]
        assert not set(before) & set(after) and min(after) > max(before)
    finally:
        await sequencer.close()

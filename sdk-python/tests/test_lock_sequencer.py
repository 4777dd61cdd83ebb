"""client.lock and client.sequencer against the in-process test runtime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from layotto.client import InvalidArgument, LockLost, LockNotAcquired, LockStatus, RuntimeClient
from layotto.client.testing import TestRuntime, test_runtime


@pytest.fixture
async def client() -> AsyncIterator[RuntimeClient]:
    runtime: TestRuntime
    async with test_runtime() as runtime, runtime.client() as c:
        yield c


async def test_plain_lock_calls(client: RuntimeClient) -> None:
    assert await client.lock.try_lock("in-memory", "r", "alice", ttl=10)
    assert not await client.lock.try_lock("in-memory", "r", "bob", ttl=10)
    assert await client.lock.keep_alive("in-memory", "r", "bob", ttl=10) is LockStatus.LOCK_BELONG_TO_OTHERS
    assert await client.lock.keep_alive("in-memory", "r", "alice", ttl=10) is LockStatus.SUCCESS
    assert await client.lock.unlock("in-memory", "r", "alice") is LockStatus.SUCCESS
    assert await client.lock.unlock("in-memory", "r", "alice") is LockStatus.LOCK_UNEXIST
    with pytest.raises(InvalidArgument) as caught:
        await client.lock.try_lock("in-memory", "", "alice", ttl=10)
    assert caught.value.field == "resource_id"


async def test_acquire_keeps_the_lock_alive_and_releases_it(client: RuntimeClient) -> None:
    async with client.lock.acquire("in-memory", "job", ttl=1) as lease:
        await asyncio.sleep(2.5)  # well past the ttl: only keep-alive holds the lock
        assert not await client.lock.try_lock("in-memory", "job", "intruder", ttl=5)
        assert not lease.lost
    assert await client.lock.try_lock("in-memory", "job", "next", ttl=5), "the lock was not released on exit"


async def test_acquire_when_held_raises_lock_not_acquired_after_waiting(client: RuntimeClient) -> None:
    assert await client.lock.try_lock("in-memory", "busy", "other", ttl=2)
    with pytest.raises(LockNotAcquired):
        async with client.lock.acquire("in-memory", "busy", ttl=5, wait=0.3):
            pass
    async with client.lock.acquire("in-memory", "busy", ttl=5, wait=5) as lease:  # waits for the expiry
        assert lease.owner != "other"


async def test_a_lost_lease_raises_lock_lost(client: RuntimeClient) -> None:
    with pytest.raises(LockLost):
        async with client.lock.acquire("in-memory", "fragile", ttl=3) as lease:
            # someone breaks the lock (here: its owner unlocks behind the lease's back)
            assert await client.lock.unlock("in-memory", "fragile", lease.owner) is LockStatus.SUCCESS
            await asyncio.sleep(1.3)
            assert lease.lost


async def test_sequencer(client: RuntimeClient) -> None:
    strong = [await client.sequencer.next_id("in-memory", "orders") for _ in range(5)]
    assert strong == sorted(set(strong))
    weak = await asyncio.gather(*(client.sequencer.next_id("in-memory", "orders", strong=False) for _ in range(100)))
    assert len(set(weak)) == 100 and min(weak) > strong[-1]
    with pytest.raises(InvalidArgument):
        await client.sequencer.next_id("in-memory", "a||b")

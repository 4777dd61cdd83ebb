"""Every lock store through the component interface: exclusion, ownership, expiry, keep-alive."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backends
import pytest
from backends import REAL_LOCK_STORES

from layotto.server.components.base import ComponentContext
from layotto.server.components.lock import LockStatus, LockStore
from layotto.server.components.registry import registry_for


@pytest.fixture(params=["in-memory", *REAL_LOCK_STORES])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LockStore]:
    if request.param in REAL_LOCK_STORES:
        backends.require(request.param)
    cls = registry_for("lock").get(request.param, "lock.test")
    lock_store = cls("test")
    assert isinstance(lock_store, LockStore)
    metadata = backends.lock_metadata(request.param, uuid.uuid4().hex[:10])
    await lock_store.init(cls.spec.parse_metadata(metadata, "lock.test.metadata"), ComponentContext("app", tmp_path))
    yield lock_store
    await lock_store.close()


def key() -> str:
    return f"lock|||test||{uuid.uuid4().hex}"


async def wait_until_free(store: LockStore, resource: str, owner: str, seconds: float = 8) -> float:
    """Poll try_lock until it succeeds; returns how long it took."""
    started = time.monotonic()
    while not await store.try_lock(resource, owner, 5):
        assert time.monotonic() - started < seconds, f"the lock was not released within {seconds}s"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_exclusive_and_not_reentrant(store: LockStore) -> None:
    resource = key()
    assert await store.try_lock(resource, "alice", 10)
    assert not await store.try_lock(resource, "bob", 10)
    assert not await store.try_lock(resource, "alice", 10), "locks are not reentrant"
    assert await store.try_lock(key(), "bob", 10), "another resource is independent"


async def test_unlock_statuses(store: LockStore) -> None:
    resource = key()
    assert await store.unlock(resource, "alice") is LockStatus.LOCK_UNEXIST
    assert await store.try_lock(resource, "alice", 10)
    assert await store.unlock(resource, "bob") is LockStatus.LOCK_BELONG_TO_OTHERS
    assert await store.unlock(resource, "alice") is LockStatus.SUCCESS
    assert await store.unlock(resource, "alice") is LockStatus.LOCK_UNEXIST
    assert await store.try_lock(resource, "bob", 10)


async def test_expired_lock_is_free_for_everyone(store: LockStore) -> None:
    resource = key()
    assert await store.try_lock(resource, "alice", 2)
    await wait_until_free(store, resource, "bob")
    assert await store.unlock(resource, "alice") is LockStatus.LOCK_BELONG_TO_OTHERS
    lone = key()
    assert await store.try_lock(lone, "carol", 2)
    deadline = time.monotonic() + 8
    while await store.unlock(lone, "dave") is LockStatus.LOCK_BELONG_TO_OTHERS:
        assert time.monotonic() < deadline, "an expired lock still belonged to its holder"
        await asyncio.sleep(0.2)
    assert await store.unlock(lone, "carol") is LockStatus.LOCK_UNEXIST
    assert await store.keep_alive(lone, "carol", 5) is LockStatus.LOCK_UNEXIST


async def test_keep_alive_extends_a_held_lock(store: LockStore) -> None:
    resource = key()
    assert await store.keep_alive(resource, "alice", 5) is LockStatus.LOCK_UNEXIST
    assert await store.try_lock(resource, "alice", 2)
    assert await store.keep_alive(resource, "bob", 5) is LockStatus.LOCK_BELONG_TO_OTHERS
    assert await store.keep_alive(resource, "alice", 6) is LockStatus.SUCCESS
    await asyncio.sleep(3)  # past the original two seconds
    assert not await store.try_lock(resource, "bob", 5), "keep-alive did not extend the lock"
    assert await store.unlock(resource, "alice") is LockStatus.SUCCESS

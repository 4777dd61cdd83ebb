"""Every sequencer through the component interface, and the runtime's WEAK block cache."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backends
import pytest
from backends import REAL_SEQUENCERS

from layotto.server.api.sequencer import SegmentCache
from layotto.server.components.base import ComponentContext
from layotto.server.components.registry import registry_for
from layotto.server.components.sequencer import Sequencer


async def make(type_name: str, tmp_path: Path) -> Sequencer:
    cls = registry_for("sequencer").get(type_name, "sequencer.test")
    sequencer = cls("test")
    assert isinstance(sequencer, Sequencer)
    metadata = backends.lock_metadata(type_name, uuid.uuid4().hex[:10])
    metadata = {k: v for k, v in metadata.items() if k != "tableName"} | (
        {"tableName": f"seq_{uuid.uuid4().hex[:10]}"} if type_name in ("postgresql", "mysql") else {}
    )
    sequencer.metadata = cls.spec.parse_metadata(metadata, "sequencer.test.metadata")
    await sequencer.init(sequencer.metadata, ComponentContext("app", tmp_path))
    return sequencer


@pytest.fixture(params=["in-memory", *REAL_SEQUENCERS])
async def sequencer(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sequencer]:
    if request.param in REAL_SEQUENCERS:
        backends.require(request.param)
    s = await make(request.param, tmp_path)
    yield s
    await s.close()


async def test_blocks_are_consecutive_and_start_at_one(sequencer: Sequencer) -> None:
    key = f"sequencer|||t||{uuid.uuid4().hex}"
    assert await sequencer.next_block(key, 1) == 1
    assert await sequencer.next_block(key, 1) == 2
    assert await sequencer.next_block(key, 10) == 12
    assert await sequencer.next_block(f"{key}-other", 1) == 1


async def test_keys_differing_only_by_trailing_spaces_are_separate_counters(sequencer: Sequencer) -> None:
    key = f"sequencer|||t||{uuid.uuid4().hex}"
    assert await sequencer.next_block(key, 5) == 5
    assert await sequencer.next_block(f"{key} ", 1) == 1  # MySQL's PAD SPACE collation answered 6
    assert await sequencer.next_block(f"{key}  ", 1) == 1
    assert await sequencer.next_block(key, 1) == 6


async def test_concurrent_blocks_never_overlap(sequencer: Sequencer) -> None:
    key = f"sequencer|||t||{uuid.uuid4().hex}"
    lasts = await asyncio.gather(*(sequencer.next_block(key, 5) for _ in range(40)))
    ids = [i for last in lasts for i in range(last - 4, last + 1)]
    assert sorted(ids) == list(range(1, 201))


async def test_counter_survives_a_new_connection(tmp_path: Path) -> None:
    for kind in REAL_SEQUENCERS:
        if not backends.reachable(kind):
            continue
        first = await make(kind, tmp_path)
        key = f"sequencer|||t||{uuid.uuid4().hex}"
        await first.next_block(key, 7)
        metadata = first.metadata
        await first.close()
        second = type(first)("test")
        second.metadata = metadata
        await second.init(metadata, ComponentContext("app", tmp_path))
        assert await second.next_block(key, 1) == 8, kind
        await second.close()


async def test_weak_cache_hands_out_unique_increasing_ids(tmp_path: Path) -> None:
    sequencer = await make("in-memory", tmp_path)
    cache = SegmentCache()
    key = "sequencer|||t||weak"
    ids = [await cache.next_id(sequencer, key, 50) for _ in range(175)]
    assert ids == list(range(1, 176))
    concurrent = await asyncio.gather(*(cache.next_id(sequencer, key, 50) for _ in range(300)))
    assert len(set(concurrent)) == 300 and min(concurrent) > 175
    # another cache (another runtime) never repeats an id either
    other = SegmentCache()
    more = [await other.next_id(sequencer, key, 50) for _ in range(60)]
    assert not set(more) & set(ids) | set(concurrent) & set(more)
    await cache.aclose()
    await other.aclose()


@pytest.mark.parametrize("backend", ["in-memory", "redis"])
async def test_bigger_than_floors_each_listed_key_before_its_first_id(tmp_path: Path, backend: str) -> None:
    from layotto.client.testing import test_runtime
    from layotto.server import RuntimeConfig
    from layotto.server.config import ComponentConfig

    if backend != "in-memory":
        backends.require(backend)
    metadata = backends.lock_metadata(backend, uuid.uuid4().hex[:10]) if backend != "in-memory" else {}
    metadata["biggerThan"] = '{"orders": 100000, "invoices": 5}'
    metadata["keyPrefix"] = f"bigger-{uuid.uuid4().hex[:8]}"  # fresh counters on a shared server
    config = RuntimeConfig(components={"sequencer": {"ids": ComponentConfig(backend, metadata)}})
    async with test_runtime(config) as rt, rt.client() as client:
        first = await client.sequencer.next_id("ids", "orders")
        weak = await client.sequencer.next_id("ids", "orders", strong=False)
        assert first == 100001, "the first id is just above the floor"
        assert weak > first
        assert await client.sequencer.next_id("ids", "invoices") == 6
        assert await client.sequencer.next_id("ids", "unlisted") == 1


def test_bigger_than_must_map_keys_to_integers() -> None:
    from layotto.server.components.base import ConfigError

    cls = registry_for("sequencer").get("in-memory", "sequencer.ids")
    with pytest.raises(ConfigError) as caught:
        cls.spec.parse_metadata({"biggerThan": '{"orders": "lots"}'}, "sequencer.ids.metadata")
    assert str(caught.value).startswith("sequencer.ids.metadata.biggerThan.orders: expected int")

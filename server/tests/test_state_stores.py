"""The embedded state stores, driven through the component interface."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backends
import pytest
from backends import REAL_STATE_STORES

from layotto.server.components.base import ComponentContext
from layotto.server.components.registry import registry_for
from layotto.server.components.state import Concurrency, DeleteRequest, SetRequest, StateStore
from layotto.server.errors import EtagInvalid, EtagMismatch


async def make_store(type_name: str, data_dir: Path, **metadata: str) -> StateStore:
    cls = registry_for("state").get(type_name, "state.test")
    store = cls("test")
    assert isinstance(store, StateStore)
    await store.init(cls.spec.parse_metadata(metadata, "state.test.metadata"), ComponentContext("app", data_dir))
    return store


@pytest.fixture(params=["in-memory", "sqlite", *REAL_STATE_STORES])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateStore]:
    if request.param in REAL_STATE_STORES:
        backends.require(request.param)
    namespace = uuid.uuid4().hex[:12]
    s = await make_store(request.param, tmp_path, **backends.state_metadata(request.param, namespace))
    yield s
    await s.close()


async def test_set_get_delete(store: StateStore) -> None:
    assert await store.get("k") is None
    await store.set(SetRequest("k", b"\x00v"))
    entry = await store.get("k")
    assert entry is not None and entry.value == b"\x00v" and entry.etag.isdigit() and entry.expire_at is None
    await store.delete(DeleteRequest("k"))
    assert await store.get("k") is None


async def test_etags_are_never_reused_even_after_delete(store: StateStore) -> None:
    await store.set(SetRequest("k", b"1"))
    first = await store.get("k")
    assert first is not None
    await store.delete(DeleteRequest("k"))
    await store.set(SetRequest("k", b"2"))
    with pytest.raises(EtagMismatch):
        await store.set(SetRequest("k", b"3", etag=first.etag))


async def test_etag_checks(store: StateStore) -> None:
    with pytest.raises(EtagMismatch):
        await store.set(SetRequest("k", b"1", etag="1"))  # key does not exist
    await store.set(SetRequest("k", b"1"))
    entry = await store.get("k")
    assert entry is not None
    with pytest.raises(EtagInvalid):
        await store.set(SetRequest("k", b"2", etag="abc"))
    with pytest.raises(EtagMismatch):
        await store.delete(DeleteRequest("k", etag=str(int(entry.etag) + 100)))
    await store.set(SetRequest("k", b"2", etag=entry.etag))
    with pytest.raises(EtagMismatch):
        await store.set(SetRequest("k", b"3", concurrency=Concurrency.FIRST_WRITE))
    value = await store.get("k")
    assert value is not None and value.value == b"2"


async def test_transaction_is_all_or_nothing(store: StateStore) -> None:
    await store.set(SetRequest("a", b"a1"))
    await store.set(SetRequest("b", b"b1"))
    with pytest.raises(EtagMismatch):
        await store.transact([SetRequest("a", b"a2"), DeleteRequest("b"), SetRequest("c", b"c", etag="999")])
    a, b, c = await store.get("a"), await store.get("b"), await store.get("c")
    assert a is not None and a.value == b"a1" and b is not None and c is None
    await store.transact([DeleteRequest("a"), SetRequest("b", b"b2"), DeleteRequest("b"), SetRequest("c", b"c")])
    assert [await store.get(k) is None for k in "abc"] == [True, True, False]


async def test_transaction_sees_its_own_earlier_steps(store: StateStore) -> None:
    # first-write of a key the same transaction deleted earlier is allowed
    await store.set(SetRequest("k", b"1"))
    await store.transact([DeleteRequest("k"), SetRequest("k", b"2", concurrency=Concurrency.FIRST_WRITE)])
    entry = await store.get("k")
    assert entry is not None and entry.value == b"2"


async def test_ttl_expires(store: StateStore) -> None:
    await store.set(SetRequest("k", b"v", ttl_seconds=2))
    entry = await store.get("k")
    assert entry is not None and entry.expire_at is not None
    assert abs(entry.expire_at - (time.time() + 2)) < 1.5
    deadline = time.monotonic() + 6  # etcd leases expire on the leader's next check
    while await store.get("k") is not None:
        assert time.monotonic() < deadline, "a key with a 2 s TTL outlived 6 s"
        await asyncio.sleep(0.2)
    # an expired key counts as absent for etag checks too
    await store.set(SetRequest("k", b"w", concurrency=Concurrency.FIRST_WRITE))


async def test_bulk_write_reports_only_failed_keys(store: StateStore) -> None:
    await store.set(SetRequest("a", b"1"))
    failures = await store.bulk_write([SetRequest("a", b"2", etag="12345"), SetRequest("b", b"3")])
    assert set(failures) == {"a"}
    a, b = await store.get("a"), await store.get("b")
    assert a is not None and a.value == b"1" and b is not None and b.value == b"3"


async def test_sqlite_state_survives_reopen_and_keeps_etag_sequence(tmp_path: Path) -> None:
    first = await make_store("sqlite", tmp_path)
    await first.set(SetRequest("k", b"v", ttl_seconds=100))
    before = await first.get("k")
    await first.close()
    second = await make_store("sqlite", tmp_path)
    after = await second.get("k")
    assert after is not None and before is not None
    assert (after.value, after.etag) == (b"v", before.etag)
    assert after.expire_at == pytest.approx(before.expire_at)
    await second.set(SetRequest("k2", b"v"))
    k2 = await second.get("k2")
    assert k2 is not None and int(k2.etag) > int(after.etag)
    await second.close()


async def test_sqlite_names_its_file_in_one_log_line_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The default file lives in a per-user data directory that separate checkouts share: say which file it is.
    caplog.set_level("INFO", logger="layotto.server.components.state.sqlite")
    store = await make_store("sqlite", tmp_path)
    await store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "layotto.server.components.state.sqlite"]
    assert len(lines) == 1 and str(tmp_path / "state.db") in lines[0]


async def test_concurrent_writes_serialise(store: StateStore) -> None:
    await store.set(SetRequest("n", b"0"))

    async def bump() -> None:
        while True:
            entry = await store.get("n")
            assert entry is not None
            try:
                await store.set(SetRequest("n", str(int(entry.value) + 1).encode(), etag=entry.etag))
                return
            except EtagMismatch:
                continue

    await asyncio.gather(*(bump() for _ in range(50)))
    final = await store.get("n")
    assert final is not None and final.value == b"50"

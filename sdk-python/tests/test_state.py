"""The SDK against the public in-process test runtime."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from layotto.client import (
    BulkWriteError,
    EtagInvalid,
    EtagMismatch,
    InvalidArgument,
    LayottoError,
    NotImplementedByRuntime,
    RuntimeClient,
    StateDelete,
    StateWrite,
    StoreNotFound,
)
from layotto.client.testing import TestRuntime, test_runtime


@pytest.fixture
async def runtime() -> AsyncIterator[TestRuntime]:
    async with test_runtime() as rt:
        yield rt


@pytest.fixture
async def client(runtime: TestRuntime) -> AsyncIterator[RuntimeClient]:
    async with runtime.client() as c:
        yield c


@pytest.fixture(params=["in-memory", "sqlite"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (b"\x00\xff", b"\x00\xff"),
        ("héllo", "héllo".encode()),
        ("", b""),
        ({"a": [1, 2]}, b'{"a":[1,2]}'),
        (7, b"7"),
        (None, b"null"),
        (True, b"true"),
    ],
)
async def test_values_round_trip(client: RuntimeClient, store: str, value: object, stored: bytes) -> None:
    await client.state.save(store, "k", value)  # type: ignore[arg-type]
    item = await client.state.get(store, "k")
    assert item.value == stored and item.found and item.etag


async def test_missing_key_is_not_found_without_error(client: RuntimeClient, store: str) -> None:
    item = await client.state.get(store, "missing")
    assert (item.found, item.value, item.etag) == (False, b"", None)


async def test_json_and_text_helpers(client: RuntimeClient) -> None:
    await client.state.save("in-memory", "j", {"n": 1})
    assert (await client.state.get("in-memory", "j")).json() == {"n": 1}
    await client.state.save("in-memory", "t", "text")
    assert (await client.state.get("in-memory", "t")).text() == "text"


async def test_etag_conflict_raises_named_error(client: RuntimeClient, store: str) -> None:
    await client.state.save(store, "k", "1")
    first = await client.state.get(store, "k")
    await client.state.save(store, "k", "2", etag=first.etag)
    with pytest.raises(EtagMismatch) as caught:
        await client.state.save(store, "k", "3", etag=first.etag)
    assert caught.value.key == "k" and caught.value.code == "ABORTED"
    with pytest.raises(EtagInvalid) as invalid:
        await client.state.delete(store, "k", etag="not-an-etag")
    assert invalid.value.field == "etag"
    assert isinstance(invalid.value, InvalidArgument)
    with pytest.raises(EtagMismatch):
        await client.state.save(store, "k", "4", first_write=True)


async def test_ttl_is_reported_and_honoured(client: RuntimeClient, store: str) -> None:
    await client.state.save(store, "k", "v", ttl=dt.timedelta(seconds=1))
    item = await client.state.get(store, "k")
    assert item.expires_at is not None
    assert abs((item.expires_at - dt.datetime.now(dt.UTC)).total_seconds()) < 3
    await asyncio.sleep(1.3)
    assert not (await client.state.get(store, "k")).found


async def test_bulk_operations(client: RuntimeClient, store: str) -> None:
    await client.state.save_bulk(store, [StateWrite("a", "1"), StateWrite("b", "2")])
    items = await client.state.get_bulk(store, ["a", "missing", "b"])
    assert [(i.key, i.value, i.found) for i in items] == [("a", b"1", True), ("missing", b"", False), ("b", b"2", True)]
    stale = items[0].etag
    await client.state.save(store, "a", "1b")
    with pytest.raises(BulkWriteError) as caught:
        await client.state.save_bulk(store, [StateWrite("a", "x", etag=stale), StateWrite("c", "3")])
    assert caught.value.failed_keys == ["a"]
    assert (await client.state.get(store, "c")).value == b"3"
    await client.state.delete_bulk(store, ["a", StateDelete("b"), "c"])
    assert not any(i.found for i in await client.state.get_bulk(store, ["a", "b", "c"]))


async def test_transaction_is_atomic(client: RuntimeClient, store: str) -> None:
    await client.state.save(store, "x", "0")
    stale = (await client.state.get(store, "x")).etag
    await client.state.save(store, "x", "1")
    with pytest.raises(EtagMismatch):
        await client.state.transaction(store, [StateWrite("y", "new"), StateWrite("x", "2", etag=stale)])
    assert not (await client.state.get(store, "y")).found
    await client.state.transaction(store, [StateWrite("y", "new"), StateDelete("x")])
    assert (await client.state.get(store, "y")).value == b"new"
    assert not (await client.state.get(store, "x")).found


async def test_unknown_store_and_bad_input(client: RuntimeClient) -> None:
    with pytest.raises(StoreNotFound) as caught:
        await client.state.get("nope", "k")
    assert caught.value.field == "store_name" and "in-memory" in caught.value.message
    with pytest.raises(InvalidArgument) as bad:
        await client.state.save("in-memory", "", "v")
    assert bad.value.field == "states[0].key"
    assert isinstance(bad.value, LayottoError)


async def test_say_hello(client: RuntimeClient) -> None:
    hello = await client.say_hello("sdk", data=b"\x01\x02")
    assert (hello.greeting, hello.data) == ("greetings from Layotto, sdk", b"\x01\x02")


async def test_unserved_api_is_named(runtime: TestRuntime) -> None:
    from layotto.proto.dapr.runtime.v1 import actors_pb2

    async with runtime.client() as c:
        with pytest.raises(NotImplementedByRuntime):
            request = actors_pb2.RegisterActorTimerRequest(actor_type="t", actor_id="a", name="n")
            await c._transport.unary("dapr/RegisterActorTimer", request, None)


async def test_address_from_environment(monkeypatch: pytest.MonkeyPatch, runtime: TestRuntime) -> None:
    monkeypatch.setenv("LAYOTTO_GRPC_ENDPOINT", runtime.address)
    async with RuntimeClient() as c:
        assert c.address == runtime.address
        await c.state.save("in-memory", "env", "ok")


async def test_metadata_that_is_not_strings_is_refused_naming_the_entry() -> None:
    async with test_runtime() as runtime, runtime.client() as client:
        for call in (
            client.state.get("in-memory", "k", metadata={"ttlInSeconds": 5}),  # type: ignore[dict-item]
            client.state.save("in-memory", "k", "v", metadata={"ttlInSeconds": 5}),  # type: ignore[dict-item]
            client.state.delete("in-memory", "k", metadata={"ttlInSeconds": 5}),  # type: ignore[dict-item]
            client.pubsub.publish("in-memory", "t", "x", metadata={"ttlInSeconds": 5}),  # type: ignore[dict-item]
        ):
            with pytest.raises(InvalidArgument) as refused:
                await call
            assert refused.value.field == "metadata['ttlInSeconds']"

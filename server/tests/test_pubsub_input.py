"""Broker input that could break a connection (issue 13): control characters, tabs, newlines,
non-ASCII, wildcards and long values in topics and metadata. Every broker carries each one
exactly or refuses it with INVALID_ARGUMENT naming ``topic`` / ``metadata.<key>``, and a normal
publish and delivery still work afterwards on the same runtime."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backends
import grpc
import pytest
from test_pubsub import Subscriber, publish, wait_for

from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import Feature
from layotto.server.components.pubsub import PubSub
from layotto.server.config import ComponentConfig

pytestmark = pytest.mark.timeout(180)

TOPICS = [
    "tab\there",
    "new\nline",
    "nul\x00byte",
    "héllo-wörld-✓",
    "with space",
    "a+b",
    "a#",
    "a.*.c",
    "a.>",
    "a..b",
    "$SYS/x",
    "amq.topic",
    "t" * 2000,
]

METADATA = [
    {"k": "a\tb"},
    {"nl": "l1\nl2", "cr": "l1\r\nl2"},
    {"uni": "héllo ✓", "ключ": "значение"},
    {"tab\tkey": "v", "": "empty key"},
    {" padded ": "  v  "},
    {"Nats-Msg-Id": "not-a-dedup-id", "CC": "not-a-route", "BCC": "x"},
    {"layotto-metadata": "{not json"},
    {"k" * 300: "long key"},
    {"long": "x" * 20_000},
    {"big": "x" * 70_000},
    {"ctl": "\x01\x7f\u0085"},
]


@pytest.fixture(params=["in-memory", *backends.REAL_BROKERS])
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runtime]:
    if request.param != "in-memory":
        backends.require(request.param)
    extra = {"streamPrefix": f"i{uuid.uuid4().hex[:8]}"} if request.param == "nats" else {}
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        components={
            "pubsub": {"bus": ComponentConfig(request.param, backends.pubsub_metadata(request.param, **extra))}
        },
    )
    async with Runtime(config) as started:
        yield started


@pytest.fixture
async def stub(runtime: Runtime) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


def refused(error: grpc.aio.AioRpcError, field: str) -> bool:
    return error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith(field)


async def still_works(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    topic = f"normal-{uuid.uuid4().hex[:8]}"
    subscriber = await Subscriber(stub, topic).start()
    await publish(stub, topic, b"still fine", "text/plain", k="v")
    await wait_for(lambda: [e.data for e in subscriber.events] == [b"still fine"], 30)
    assert subscriber.events[0].metadata["k"] == "v"
    await subscriber.stop()


async def test_topics_are_carried_exactly_or_refused(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    outcomes = {}
    for base in TOPICS:
        topic = f"{base}-{uuid.uuid4().hex[:6]}"
        try:
            subscriber = await Subscriber(stub, topic).start()
        except grpc.aio.AioRpcError as error:
            assert refused(error, "topic"), (base, error.code(), error.details())
            with pytest.raises(grpc.aio.AioRpcError) as caught:  # publishing there is refused too
                await publish(stub, topic, b"x", "text/plain")
            assert refused(caught.value, "topic"), (base, caught.value.details())
            outcomes[base] = "refused"
            continue
        await publish(stub, topic, b"payload", "text/plain")
        await wait_for(lambda s=subscriber: len(s.events) == 1, 30)  # type: ignore[misc]
        assert subscriber.events[0].topic == topic and subscriber.events[0].data == b"payload"
        await subscriber.stop()
        outcomes[base] = "carried"
    await still_works(stub)


async def test_metadata_is_carried_exactly_or_refused(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    topic = f"meta-{uuid.uuid4().hex[:8]}"
    subscriber = await Subscriber(stub, topic).start()
    sent = []
    for metadata in METADATA:
        data = f"case-{len(sent)}-{uuid.uuid4().hex[:4]}".encode()
        try:
            await publish(stub, topic, data, "text/plain", **metadata)
        except grpc.aio.AioRpcError as error:
            assert any(refused(error, f"metadata.{key}") for key in metadata), (metadata, error.details())
            continue
        sent.append((data, metadata))
    await wait_for(lambda: len(subscriber.events) >= len(sent), 30)
    received = {e.data: dict(e.metadata) for e in subscriber.events}
    for data, metadata in sent:
        assert received[data] == metadata, (metadata, received[data])
    assert len(sent) >= len(METADATA) - 1  # only the 70 KB entry may be refused
    await subscriber.stop()
    await still_works(stub)


WILDCARDS = {"mqtt": ("{base}/+/c", "{base}/b/c"), "nats": ("{base}.*.c", "{base}.b.c")}


async def test_wildcard_subscriptions_deliver_the_real_topic_or_are_refused(
    runtime: Runtime, stub: runtime_pb2_grpc.RuntimeStub
) -> None:
    """A component declaring WILDCARD_TOPICS delivers each match with its real topic; the
    others refuse the pattern. Either way, publishing to a matching topic keeps working."""
    component = runtime.components.find("pubsub", "bus", "pubsub_name")
    assert isinstance(component, PubSub)
    base = f"w{uuid.uuid4().hex[:8]}"
    pattern, real = (p.format(base=base) for p in WILDCARDS.get(component.spec.type, ("{base}/+/c", "{base}/b/c")))
    subscriber = None
    try:
        subscriber = await Subscriber(stub, pattern).start()
    except grpc.aio.AioRpcError as error:
        assert not component.supports(Feature.WILDCARD_TOPICS)
        assert component.spec.type in ("mqtt", "nats") and refused(error, "topic"), error.details()
    literal = await Subscriber(stub, real).start()
    matching = subscriber is not None and component.supports(Feature.WILDCARD_TOPICS)
    await publish(stub, real, b"matched", "text/plain")
    await wait_for(lambda: len(literal.events) == 1 and (not matching or len(subscriber.events) == 1), 30)
    assert literal.events[0].topic == real and literal.events[0].data == b"matched"
    if subscriber is not None:
        if matching:
            assert subscriber.events[0].topic == real and subscriber.events[0].data == b"matched"
        else:  # a literal name that merely looks like a pattern
            assert not subscriber.events
        await subscriber.stop()
    await literal.stop()

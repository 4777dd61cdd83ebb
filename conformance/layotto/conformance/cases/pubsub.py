"""Pub/Sub cases, after Dapr's pubsub conformance test: subscribe before publish, a handler
that fails the first two and every fifth message, order where declared, separate topics,
stopping one subscriber, dead letters, competing streams and bad input; over Layotto's
SubscribeTopicEvents and Dapr's SubscribeTopicEventsAlpha1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from layotto.conformance.model import Case, CaseContext, CaseFailed, check
from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_cb
from layotto.proto.dapr.runtime.v1 import pubsub_pb2 as dapr_pubsub
from layotto.proto.runtime.v1 import appcallback_pb2 as cb
from layotto.proto.runtime.v1 import runtime_pb2 as pb

PUBSUB_CASES: list[Case] = []
SUCCESS, RETRY, DROP = 0, 1, 2
MESSAGE_COUNT = 10
READ_SECONDS = 60.0

Decide = Callable[[Any, int], int]  # (event, how many times this id was seen) -> status


def case(
    id: str,
    description: str,
    rpcs: tuple[str, ...] = ("PublishEvent", "SubscribeTopicEvents"),
    requires: tuple[str, ...] = (),
    apis: tuple[str, ...] = ("layotto", "dapr"),
) -> Callable[[Callable[[CaseContext], Awaitable[None]]], Any]:
    def register(fn: Callable[[CaseContext], Awaitable[None]]) -> Callable[[CaseContext], Awaitable[None]]:
        layotto = tuple(f"spec.proto.runtime.v1.Runtime/{r}" for r in rpcs) if "layotto" in apis else ()
        dapr = tuple(
            f"dapr.proto.runtime.v1.Dapr/{'SubscribeTopicEventsAlpha1' if r == 'SubscribeTopicEvents' else r}"
            for r in rpcs
        )
        PUBSUB_CASES.append(Case(id, "pubsub", description, layotto + dapr, fn, frozenset(requires), apis=apis))
        return fn

    return register


async def publish(ctx: CaseContext, topic: str, data: bytes, content_type: str = "text/plain", **meta: str) -> None:
    messages: Any = dapr_pubsub if ctx.api.name == "dapr" else pb
    request = messages.PublishEventRequest(
        pubsub_name=ctx.component, topic=topic, data=data, data_content_type=content_type, metadata=meta
    )
    await ctx.call("PublishEvent", request)


class Stream:
    """One streaming subscription that answers each event with ``decide``'s status."""

    def __init__(
        self,
        ctx: CaseContext,
        topic: str,
        decide: Decide | None = None,
        *,
        metadata: dict[str, str] | None = None,
        dead_letter: str = "",
    ) -> None:
        self.ctx, self.topic = ctx, topic
        self.events: list[Any] = []
        self.handled: list[bytes] = []  # payloads answered SUCCESS, in order
        self._decide = decide or (lambda event, seen: SUCCESS)
        self._metadata = metadata or {}
        self._dead_letter = dead_letter
        self._answers: asyncio.Queue[Any] = asyncio.Queue()
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None
        self._dapr = ctx.api.name == "dapr"

    def _initial(self) -> Any:
        kind: Any = (
            dapr_pubsub.SubscribeTopicEventsRequestInitialAlpha1
            if self._dapr
            else pb.SubscribeTopicEventsRequestInitial
        )
        initial = kind(pubsub_name=self.ctx.component, topic=self.topic, metadata=self._metadata)
        if self._dead_letter:
            initial.dead_letter_topic = self._dead_letter
        return initial

    def _request(self, **fields: Any) -> Any:
        return (dapr_pubsub.SubscribeTopicEventsRequestAlpha1 if self._dapr else pb.SubscribeTopicEventsRequest)(
            **fields
        )

    def _processed(self, event_id: str, status: int) -> Any:
        if self._dapr:
            answer: Any = dapr_pubsub.SubscribeTopicEventsRequestProcessedAlpha1(
                id=event_id,
                status=dapr_cb.TopicEventResponse(status=status),  # type: ignore[arg-type]
            )
        else:
            answer = pb.SubscribeTopicEventsRequestProcessed(
                id=event_id,
                status=cb.TopicEventResponse(status=status),  # type: ignore[arg-type]
            )
        return self._request(event_processed=answer)

    async def _requests(self) -> AsyncIterator[Any]:
        yield self._request(initial_request=self._initial())
        while (answer := await self._answers.get()) is not None:
            yield answer

    async def __aenter__(self) -> Stream:
        rpc = "SubscribeTopicEventsAlpha1" if self._dapr else "SubscribeTopicEvents"
        self._call = getattr(self.ctx.api.stub, rpc)(self._requests())
        first = await asyncio.wait_for(self._call.read(), self.ctx.timeout)
        check(
            first.WhichOneof("subscribe_topic_events_response_type") == "initial_response",
            "the first message of a subscription stream must be initial_response",
        )
        self._task = asyncio.create_task(self._loop())
        return self

    async def _loop(self) -> None:
        while True:
            response = await self._call.read()
            if response is grpc.aio.EOF:  # type: ignore[attr-defined]
                return
            event = response.event_message
            self.events.append(event)
            status = self._decide(event, sum(1 for e in self.events if e.id == event.id))
            if status == SUCCESS:
                self.handled.append(bytes(event.data))
            self._answers.put_nowait(self._processed(event.id, status))

    async def __aexit__(self, *exc: object) -> None:
        self._answers.put_nowait(None)
        self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task


async def eventually(condition: Callable[[], bool], what: str, seconds: float = READ_SECONDS) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise CaseFailed(f"not within {seconds:.0f}s: {what}")
        await asyncio.sleep(0.05)


def payloads(ctx: CaseContext, prefix: str, count: int = MESSAGE_COUNT) -> list[bytes]:
    return [f"{ctx.run_id}-{prefix}-{i:03d}".encode() for i in range(count)]


@case(
    "pubsub-deliver", "subscribed first, every message arrives though the handler fails the first two and every fifth"
)
async def deliver(ctx: CaseContext) -> None:
    topic = ctx.key("deliver")
    failures: set[bytes] = set()

    def flaky(event: Any, seen: int) -> int:
        data = bytes(event.data)
        index = len({bytes(e.data) for e in stream.events})
        if seen == 1 and (index <= 2 or index % 5 == 0):
            failures.add(data)
            return RETRY
        return SUCCESS

    expected = payloads(ctx, "m")
    async with Stream(ctx, topic, flaky) as stream:
        for data in expected:
            await publish(ctx, topic, data)
        await eventually(lambda: set(expected) <= set(stream.handled), "every published message handled")
    check(bool(failures), "the handler must have failed some messages (and seen them again)")
    check(all(stream.handled.count(d) >= 1 for d in failures), "every failed message must be redelivered")
    if "ORDERED" in ctx.features:
        first_seen = list(dict.fromkeys(bytes(e.data) for e in stream.events))
        check(first_seen == expected, f"the component declares ORDERED, but messages came as {first_seen}")


@case("pubsub-cloudevent", "events carry their CloudEvent attributes; rawPayload passes bytes unwrapped")
async def cloudevent(ctx: CaseContext) -> None:
    topic = ctx.key("ce")
    async with Stream(ctx, topic) as stream:
        await publish(ctx, topic, b'{"n":1}', "application/json")
        await publish(ctx, topic, b"\x00raw\xff", "application/octet-stream", rawPayload="true")
        await eventually(lambda: len(stream.handled) >= 2, "both messages")
    wrapped = next(e for e in stream.events if e.data_content_type == "application/json")
    check(wrapped.id != "" and wrapped.source != "" and wrapped.type != "", "id, source and type must be set")
    check(wrapped.spec_version == "1.0", f"spec_version must be 1.0, got {wrapped.spec_version!r}")
    check(wrapped.topic == topic and wrapped.pubsub_name == ctx.component, "topic and pubsub_name must be set")
    check(bytes(wrapped.data) == b'{"n":1}', f"the payload must come back as published, got {wrapped.data!r}")
    check(any(bytes(e.data) == b"\x00raw\xff" for e in stream.events), "a raw payload must arrive byte for byte")


@case("pubsub-multiple-handlers", "two topics with separate subscribers: each receives exactly its own messages")
async def multiple_handlers(ctx: CaseContext) -> None:
    first, second = ctx.key("multi-1"), ctx.key("multi-2")
    one, two = payloads(ctx, "one", 5), payloads(ctx, "two", 5)
    async with Stream(ctx, first) as a, Stream(ctx, second) as b:
        for x, y in zip(one, two, strict=True):
            await publish(ctx, first, x)
            await publish(ctx, second, y)
        await eventually(lambda: set(one) <= set(a.handled) and set(two) <= set(b.handled), "both topics delivered")
    check(set(a.handled) == set(one), "the first topic's subscriber got another topic's messages")
    check(set(b.handled) == set(two), "the second topic's subscriber got another topic's messages")


@case("pubsub-stop-subscriber", "closing one group's stream stops only its deliveries; the other group goes on")
async def stop_subscriber(ctx: CaseContext) -> None:
    topic = ctx.key("stop")
    before, after = payloads(ctx, "before", 3), payloads(ctx, "after", 3)
    async with Stream(ctx, topic, metadata={"consumerID": f"{ctx.run_id}-b"}) as keeper:
        async with Stream(ctx, topic, metadata={"consumerID": f"{ctx.run_id}-a"}) as stopped:
            for data in before:
                await publish(ctx, topic, data)
            await eventually(
                lambda: set(before) <= set(stopped.handled) and set(before) <= set(keeper.handled),
                "both groups get every message",
            )
        for data in after:
            await publish(ctx, topic, data)
        await eventually(lambda: set(after) <= set(keeper.handled), "the remaining group still receives")
    check(not set(after) & set(stopped.handled), "a closed stream must receive nothing more")


@case("pubsub-dead-letter", "a message answered RETRY maxDeliveryAttempts times goes to the dead-letter topic")
async def dead_letter(ctx: CaseContext) -> None:
    topic, dead = ctx.key("dl"), ctx.key("dl-dead")
    async with (
        Stream(ctx, dead) as graveyard,
        Stream(ctx, topic, lambda e, n: RETRY, metadata={"maxDeliveryAttempts": "2"}, dead_letter=dead) as stream,
    ):
        await publish(ctx, topic, b"doomed")
        await eventually(lambda: b"doomed" in graveyard.handled, "the message on the dead-letter topic")
    attempts = sum(1 for e in stream.events if bytes(e.data) == b"doomed")
    check(attempts >= 2, f"expected 2 attempts before dead-lettering, saw {attempts}")


@case("pubsub-competing", "streams of one app on one topic share its messages: each acked message handled once")
async def competing(ctx: CaseContext) -> None:
    topic = ctx.key("compete")
    expected = payloads(ctx, "c", 20)
    async with Stream(ctx, topic) as a, Stream(ctx, topic) as b:
        for data in expected:
            await publish(ctx, topic, data)
        await eventually(lambda: set(expected) <= set(a.handled) | set(b.handled), "every message handled")
        await asyncio.sleep(0.5)
    handled = a.handled + b.handled
    check(sorted(handled) == sorted(expected), "an acknowledged message was handled twice")
    check(bool(a.handled) and bool(b.handled), "both streams must get a share")


@case("pubsub-bad-input", "unknown pubsub, empty topic and oversized payloads are refused naming the field")
async def bad_input(ctx: CaseContext) -> None:
    messages: Any = dapr_pubsub if ctx.api.name == "dapr" else pb
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await ctx.expect_error(
        "PublishEvent",
        messages.PublishEventRequest(pubsub_name="no-such-pubsub", topic="t"),
        invalid,
        mentions="pubsub_name",
    )
    await ctx.expect_error(
        "PublishEvent", messages.PublishEventRequest(pubsub_name=ctx.component, topic=""), invalid, mentions="topic"
    )
    big = messages.PublishEventRequest(
        pubsub_name=ctx.component, topic=ctx.key("big"), data=b"x" * (4 * 1024 * 1024 + 1)
    )
    await ctx.expect_error("PublishEvent", big, grpc.StatusCode.RESOURCE_EXHAUSTED, invalid, mentions="data")


@case(
    "pubsub-bulk-publish",
    "Dapr's BulkPublishEvent publishes every entry; duplicate or empty entry ids are refused naming the entry",
    rpcs=("BulkPublishEvent", "SubscribeTopicEvents"),
    apis=("dapr",),
)
async def bulk_publish(ctx: CaseContext) -> None:
    topic = ctx.key("bulk")
    expected = payloads(ctx, "b", 5)
    entries = [
        dapr_pubsub.BulkPublishRequestEntry(
            entry_id=str(i), event=data, content_type="text/plain", metadata={"n": str(i)}
        )
        for i, data in enumerate(expected)
    ]
    async with Stream(ctx, topic) as stream:
        request = dapr_pubsub.BulkPublishRequest(pubsub_name=ctx.component, topic=topic, entries=entries)
        response = await ctx.call("BulkPublishEvent", request)
        check(not response.failedEntries, f"entries failed: {list(response.failedEntries)}")
        await eventually(lambda: set(expected) <= set(stream.handled), "every entry delivered")
    twice = dapr_pubsub.BulkPublishRequest(pubsub_name=ctx.component, topic=topic, entries=[entries[0], entries[0]])
    await ctx.expect_error("BulkPublishEvent", twice, grpc.StatusCode.INVALID_ARGUMENT, mentions="entries[1].entry_id")


@case(
    "pubsub-metadata-exact",
    "metadata with a tab, line breaks and non-ASCII arrives exactly as published; the broker stays usable",
    apis=("layotto",),  # Dapr's TopicEventRequest has no metadata
)
async def metadata_exact(ctx: CaseContext) -> None:
    topic = ctx.key("metadata")
    sent = {"tab": "a\tb", "lines": "l1\nl2\r\nl3", "text": "héllo ✓", " padded ": " v "}
    async with Stream(ctx, topic) as stream:
        await publish(ctx, topic, b"odd metadata", **sent)
        await publish(ctx, topic, b"plain", k="v")
        await eventually(lambda: {b"odd metadata", b"plain"} <= set(stream.handled), "both messages delivered")
    by_data = {bytes(e.data): dict(e.metadata) for e in stream.events}
    check(by_data[b"odd metadata"] == sent, f"metadata changed on the way: {by_data[b'odd metadata']!r}")
    check(by_data[b"plain"] == {"k": "v"}, f"metadata changed on the way: {by_data[b'plain']!r}")


@case(
    "pubsub-wildcards",
    "a wildcard subscription gets each matching message with the topic it was published to",
    requires=("WILDCARD_TOPICS",),
)
async def wildcards(ctx: CaseContext) -> None:
    base = ctx.key("wild")
    async with Stream(ctx, f"{base}/+/c") as stream:
        await publish(ctx, f"{base}/b/c", b"matched")
        await publish(ctx, f"{base}/b/d", b"not matched")
        await eventually(lambda: b"matched" in stream.handled, "the matching message delivered")
        await asyncio.sleep(0.5)
    check([e.topic for e in stream.events] == [f"{base}/b/c"], f"delivered: {[e.topic for e in stream.events]}")

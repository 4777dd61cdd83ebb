"""Configuration store cases (Dapr's configuration conformance, which Dapr itself never runs, plus
Layotto's writes and its bidirectional subscription). Items go to a group unique to the run, or
(on Dapr's API, which has no group) to keys unique to the run, so earlier runs never interfere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc

from layotto.conformance.model import Case, CaseContext, check
from layotto.proto.dapr.runtime.v1 import configuration_pb2 as dapr_pb
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

LAYOTTO = "spec.proto.runtime.v1.Runtime"
DAPR = "dapr.proto.runtime.v1.Dapr"
EOF_: Any = grpc.aio.EOF  # type: ignore[attr-defined]


def _layotto(ctx: CaseContext) -> Any:  # an aio stub (the generated types describe the blocking one)
    return runtime_pb2_grpc.RuntimeStub(ctx.channel)


def _dapr(ctx: CaseContext) -> Any:
    return dapr_pb2_grpc.DaprStub(ctx.channel)


async def _save(ctx: CaseContext, group: str, **items: str) -> None:
    wire = [pb.ConfigurationItem(key=k, content=v, group=group) for k, v in items.items()]
    await _layotto(ctx).SaveConfiguration(
        pb.SaveConfigurationRequest(store_name=ctx.component, items=wire), timeout=ctx.timeout
    )


async def _get_save_delete(ctx: CaseContext) -> None:
    group, stub = f"g{ctx.run_id}", _layotto(ctx)
    await _save(ctx, group, a="1", b="2")

    async def get(*keys: str) -> dict[str, str]:
        request = pb.GetConfigurationRequest(store_name=ctx.component, group=group, keys=keys)
        return {i.key: i.content for i in (await stub.GetConfiguration(request, timeout=ctx.timeout)).items}

    check(await get("a", "missing") == {"a": "1"}, "get with keys: only the existing ones")
    check(await get() == {"a": "1", "b": "2"}, "get with no keys: every item of the group")
    check(await get("missing") == {}, "get of a missing key: nothing")
    await stub.DeleteConfiguration(
        pb.DeleteConfigurationRequest(store_name=ctx.component, group=group, keys=["a"]), timeout=ctx.timeout
    )
    check(await get() == {"b": "2"}, "after delete: the other item only")


async def _dapr_get(ctx: CaseContext) -> None:
    key = ctx.key("dapr-get")
    await _save(ctx, "", **{key: "v1"})
    stub = _dapr(ctx)
    got = await stub.GetConfiguration(
        dapr_pb.GetConfigurationRequest(store_name=ctx.component, keys=[key, ctx.key("none")]), timeout=ctx.timeout
    )
    check({k: v.value for k, v in got.items.items()} == {key: "v1"}, f"get {key}: got {dict(got.items)}")
    check(bool(got.items[key].version), "an item carries the store's version")
    everything = await stub.GetConfiguration(
        dapr_pb.GetConfigurationRequest(store_name=ctx.component), timeout=ctx.timeout
    )
    check(everything.items[key].value == "v1", "get with no keys includes every item")


async def _layotto_subscribe(ctx: CaseContext) -> None:
    group = f"s{ctx.run_id}"
    await _save(ctx, group, watched="1", ignored="x")
    stop = asyncio.Event()

    async def requests() -> AsyncIterator[pb.SubscribeConfigurationRequest]:
        yield pb.SubscribeConfigurationRequest(store_name=ctx.component, group=group, keys=["watched"])
        await stop.wait()

    stream = _layotto(ctx).SubscribeConfiguration(requests())
    try:

        async def items() -> list[tuple[str, str, bool]]:
            response = await asyncio.wait_for(stream.read(), ctx.timeout)
            check(response is not EOF_, "the subscription ended early")
            return [(i.key, i.content, i.metadata.get("deleted") == "true") for i in response.items]

        check(await items() == [("watched", "1", False)], "a subscription first reports the current items")
        await _save(ctx, group, ignored="y", watched="2")
        check(await items() == [("watched", "2", False)], "a change to a watched key is reported, others are not")
        await _layotto(ctx).DeleteConfiguration(
            pb.DeleteConfigurationRequest(store_name=ctx.component, group=group, keys=["watched"]), timeout=ctx.timeout
        )
        check(await items() == [("watched", "", True)], "a deletion is reported, empty and marked deleted")
    finally:
        stop.set()
        stream.cancel()


async def _dapr_subscribe(ctx: CaseContext) -> None:
    key = ctx.key("dapr-watch")
    stub = _dapr(ctx)
    stream = stub.SubscribeConfiguration(dapr_pb.SubscribeConfigurationRequest(store_name=ctx.component, keys=[key]))
    try:
        first = await asyncio.wait_for(stream.read(), ctx.timeout)
        check(bool(first.id) and not first.items, "the first message carries only the subscription id")
        await _save(ctx, "", **{key: "on"})
        change = await asyncio.wait_for(stream.read(), ctx.timeout)
        check(change.id == first.id and change.items[key].value == "on", f"the change is reported: {change}")
        done = await stub.UnsubscribeConfiguration(
            dapr_pb.UnsubscribeConfigurationRequest(store_name=ctx.component, id=first.id), timeout=ctx.timeout
        )
        check(done.ok, "unsubscribe answers ok")
        check(await asyncio.wait_for(stream.read(), ctx.timeout) is EOF_, "the stream ends after unsubscribe")
    finally:
        stream.cancel()


async def _bad_input(ctx: CaseContext) -> None:
    delete = pb.DeleteConfigurationRequest(store_name=ctx.component, keys=[])
    await ctx.expect_error("DeleteConfiguration", delete, grpc.StatusCode.INVALID_ARGUMENT, mentions="keys")


CONFIGURATION_CASES = [
    Case(
        "config-get-save-delete",
        "config_store",
        "save, get (keys, none, missing) and delete",
        tuple(f"{LAYOTTO}/{n}" for n in ("SaveConfiguration", "GetConfiguration", "DeleteConfiguration")),
        _get_save_delete,
        apis=("layotto",),
    ),
    Case(
        "config-dapr-get",
        "config_store",
        "Dapr's GetConfiguration: keys, versions, all",
        (f"{DAPR}/GetConfiguration",),
        _dapr_get,
        apis=("dapr",),
    ),
    Case(
        "config-subscribe",
        "config_store",
        "current items, then changes of watched keys, then deletions",
        (f"{LAYOTTO}/SubscribeConfiguration",),
        _layotto_subscribe,
        apis=("layotto",),
    ),
    Case(
        "config-dapr-subscribe",
        "config_store",
        "id first, then changes, until unsubscribed",
        (f"{DAPR}/SubscribeConfiguration", f"{DAPR}/UnsubscribeConfiguration"),
        _dapr_subscribe,
        apis=("dapr",),
    ),
    Case(
        "config-bad-input",
        "config_store",
        "deleting no keys is INVALID_ARGUMENT naming keys",
        (f"{LAYOTTO}/DeleteConfiguration",),
        _bad_input,
        apis=("layotto",),
    ),
]

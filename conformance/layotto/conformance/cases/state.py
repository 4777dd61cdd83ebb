"""State cases: those of conformance-checklist.md that apply to the gRPC API, and more.

Each case runs per configured store and per wire API (Layotto and Dapr), gated by the
features the store declares; cases marked ``requires_absent`` check that a feature the
store does not declare is really absent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from layotto.conformance.model import Case, CaseContext, CaseFailed, check

STATE_CASES: list[Case] = []
_RPC = "spec.proto.runtime.v1.Runtime/"
_DAPR = "dapr.proto.runtime.v1.Dapr/"


def case(
    id: str, description: str, rpcs: tuple[str, ...], requires: tuple[str, ...] = (), absent: tuple[str, ...] = ()
) -> Callable[[Callable[[CaseContext], Awaitable[None]]], Callable[[CaseContext], Awaitable[None]]]:
    def register(fn: Callable[[CaseContext], Awaitable[None]]) -> Callable[[CaseContext], Awaitable[None]]:
        full = tuple(p + r for r in rpcs for p in (_RPC, _DAPR))
        STATE_CASES.append(Case(id, "state", description, full, fn, frozenset(requires), frozenset(absent)))
        return fn

    return register


# -- helpers ---------------------------------------------------------------------------------


async def save(ctx: CaseContext, key: str, value: bytes, etag: str | None = None, **kw: Any) -> None:
    await ctx.call(
        "SaveState", ctx.api.SaveStateRequest(store_name=ctx.component, states=[item(ctx, key, value, etag, **kw)])
    )


def item(  # noqa: PLR0917 - mirrors StateItem's fields
    ctx: CaseContext,
    key: str,
    value: bytes = b"",
    etag: str | None = None,
    metadata: dict[str, str] | None = None,
    first_write: bool = False,
) -> Any:
    msg = ctx.api.StateItem(key=key, value=value, metadata=metadata or {})
    if etag is not None:
        msg.etag.CopyFrom(ctx.api.Etag(value=etag))
    if first_write:
        msg.options.CopyFrom(ctx.api.StateOptions(concurrency=1))
    return msg


async def get(ctx: CaseContext, key: str) -> Any:
    return await ctx.call("GetState", ctx.api.GetStateRequest(store_name=ctx.component, key=key))


async def delete(ctx: CaseContext, key: str, etag: str | None = None) -> None:
    request = ctx.api.DeleteStateRequest(store_name=ctx.component, key=key)
    if etag is not None:
        request.etag.CopyFrom(ctx.api.Etag(value=etag))
    await ctx.call("DeleteState", request)


async def expect_value(ctx: CaseContext, key: str, value: bytes) -> Any:
    got = await get(ctx, key)
    check(got.data == value, f"GetState({key}) returned {got.data[:60]!r}, expected {value[:60]!r}")
    return got


async def expect_absent(ctx: CaseContext, key: str) -> None:
    got = await get(ctx, key)
    check(
        got.data == b"" and got.etag == "",
        f"GetState({key}) should be empty, got data={got.data[:40]!r} etag={got.etag!r}",
    )


def transaction(ctx: CaseContext, *ops: tuple[str, Any]) -> Any:
    operations = [ctx.api.TransactionalStateOperation(operationType=kind, request=req) for kind, req in ops]
    return ctx.api.ExecuteStateTransactionRequest(storeName=ctx.component, operations=operations)


# -- cases -------------------------------------------------------------------------------------

VALUES: dict[str, bytes] = {
    "int": b"123",
    "bool": b"true",
    "bytes": b"\x01",
    "json-string": json.dumps({"message": "hello", "n": [1, 2]}).encode(),
    "string": b"hello world",
    "empty-string": b"",
    "binary-all-bytes": bytes(range(256)),
    "unicode": "ключ-値-🔑".encode(),
}


@case(
    "set-get", "values of every kind round-trip exactly (empty string and binary included)", ("SaveState", "GetState")
)
async def set_get(ctx: CaseContext) -> None:
    for name, value in VALUES.items():
        key = ctx.key(f"value-{name}")
        await save(ctx, key, value)
        got = await expect_value(ctx, key, value)
        if "ETAG" in ctx.features:
            check(got.etag != "", f"GetState({key}) must return an etag")


@case("large-value", "a 1 MiB value round-trips", ("SaveState", "GetState"))
async def large_value(ctx: CaseContext) -> None:
    value = bytes(i % 251 for i in range(1 << 20))
    await save(ctx, ctx.key("large"), value)
    await expect_value(ctx, ctx.key("large"), value)


@case("get-missing", "a key never set reads as empty data and etag, with no error", ("GetState",))
async def get_missing(ctx: CaseContext) -> None:
    await expect_absent(ctx, ctx.key("never-set"))


@case("delete", "delete removes a key; deleting a key never set is not an error", ("DeleteState",))
async def delete_case(ctx: CaseContext) -> None:
    key = ctx.key("to-delete")
    await save(ctx, key, b"v")
    await delete(ctx, key)
    await expect_absent(ctx, key)
    await delete(ctx, ctx.key("never-set-delete"))


@case("bulk-set", "SaveState with several items saves each", ("SaveState",))
async def bulk_set(ctx: CaseContext) -> None:
    keys = [ctx.key(f"bulk-{i}") for i in range(5)]
    items = [item(ctx, k, f"v{i}".encode()) for i, k in enumerate(keys)]
    await ctx.call("SaveState", ctx.api.SaveStateRequest(store_name=ctx.component, states=items))
    for i, k in enumerate(keys):
        await expect_value(ctx, k, f"v{i}".encode())


@case("bulk-get", "GetBulkState returns every key in order; a missing key is empty with no error", ("GetBulkState",))
async def bulk_get(ctx: CaseContext) -> None:
    a, b, missing = ctx.key("bg-a"), ctx.key("bg-b"), ctx.key("bg-missing")
    await save(ctx, a, b"A")
    await save(ctx, b, b"")
    resp = await ctx.call("GetBulkState", ctx.api.GetBulkStateRequest(store_name=ctx.component, keys=[a, missing, b]))
    got = [(i.key, i.data, i.error) for i in resp.items]
    check(got == [(a, b"A", ""), (missing, b"", ""), (b, b"", "")], f"GetBulkState returned {got}")
    check(resp.items[1].etag == "", "a missing key must have no etag")
    if "ETAG" in ctx.features:
        check(resp.items[0].etag != "" and resp.items[2].etag != "", "existing keys must carry etags")


@case("bulk-delete", "DeleteBulkState deletes every key", ("DeleteBulkState",))
async def bulk_delete(ctx: CaseContext) -> None:
    keys = [ctx.key(f"bd-{i}") for i in range(3)]
    for k in keys:
        await save(ctx, k, b"x")
    await ctx.call(
        "DeleteBulkState", ctx.api.DeleteBulkStateRequest(store_name=ctx.component, states=[item(ctx, k) for k in keys])
    )
    for k in keys:
        await expect_absent(ctx, k)


@case(
    "etag",
    "stale etags fail with ABORTED, current ones succeed and change the etag",
    ("SaveState", "DeleteState"),
    ("ETAG",),
)
async def etag_case(ctx: CaseContext) -> None:
    key = ctx.key("etag")
    await save(ctx, key, b"1")
    first = (await get(ctx, key)).etag
    await save(ctx, key, b"2", etag=first)
    second = (await get(ctx, key)).etag
    check(second not in ("", first), f"the etag must change on write ({first!r} -> {second!r})")
    stale = ctx.api.SaveStateRequest(store_name=ctx.component, states=[item(ctx, key, b"3", first)])
    await ctx.expect_error("SaveState", stale, grpc.StatusCode.ABORTED)
    await expect_value(ctx, key, b"2")
    stale_delete = ctx.api.DeleteStateRequest(store_name=ctx.component, key=key, etag=ctx.api.Etag(value=first))
    await ctx.expect_error("DeleteState", stale_delete, grpc.StatusCode.ABORTED)
    await delete(ctx, key, etag=second)
    await expect_absent(ctx, key)


@case("etag-malformed", "an etag the store never issued is refused", ("SaveState",), ("ETAG",))
async def etag_malformed(ctx: CaseContext) -> None:
    key = ctx.key("etag-bad")
    await save(ctx, key, b"1")
    bad = ctx.api.SaveStateRequest(store_name=ctx.component, states=[item(ctx, key, b"2", "bad-etag")])
    await ctx.expect_error("SaveState", bad, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ABORTED, mentions="etag")
    await expect_value(ctx, key, b"1")


@case(
    "bulk-etag-partial",
    "one stale etag in a bulk save fails only its own key",
    ("SaveState", "DeleteBulkState"),
    ("ETAG",),
)
async def bulk_etag_partial(ctx: CaseContext) -> None:
    good, bad = ctx.key("bp-good"), ctx.key("bp-bad")
    await save(ctx, good, b"g1")
    await save(ctx, bad, b"b1")
    stale = (await get(ctx, bad)).etag
    await save(ctx, bad, b"b2")
    request = ctx.api.SaveStateRequest(
        store_name=ctx.component, states=[item(ctx, good, b"g2"), item(ctx, bad, b"b3", stale)]
    )
    await ctx.expect_error("SaveState", request, grpc.StatusCode.ABORTED, mentions=bad)
    await expect_value(ctx, good, b"g2")
    await expect_value(ctx, bad, b"b2")
    current = (await get(ctx, bad)).etag
    deletes = ctx.api.DeleteBulkStateRequest(
        store_name=ctx.component, states=[item(ctx, good), item(ctx, bad, etag=stale)]
    )
    await ctx.expect_error("DeleteBulkState", deletes, grpc.StatusCode.ABORTED, mentions=bad)
    await expect_absent(ctx, good)
    await expect_value(ctx, bad, b"b2")
    ok = ctx.api.DeleteBulkStateRequest(store_name=ctx.component, states=[item(ctx, bad, etag=current)])
    await ctx.call("DeleteBulkState", ok)
    await expect_absent(ctx, bad)


@case("no-lost-update", "concurrent etag-guarded increments lose no update", ("GetState", "SaveState"), ("ETAG",))
async def no_lost_update(ctx: CaseContext) -> None:
    key, workers, rounds = ctx.key("counter"), 8, 5
    await save(ctx, key, b"0")

    async def increment() -> None:
        for _ in range(rounds):
            while True:
                current = await get(ctx, key)
                request = ctx.api.SaveStateRequest(
                    store_name=ctx.component, states=[item(ctx, key, str(int(current.data) + 1).encode(), current.etag)]
                )
                try:
                    await ctx.call("SaveState", request)
                    break
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.ABORTED:
                        raise

    await asyncio.gather(*(increment() for _ in range(workers)))
    await expect_value(ctx, key, str(workers * rounds).encode())


@case(
    "first-write",
    "first-write concurrency: only the first writer of a version wins",
    ("SaveState",),
    ("FIRST_WRITE", "ETAG"),
)
async def first_write(ctx: CaseContext) -> None:
    key = ctx.key("first-write")
    await save(ctx, key, b"1", first_write=True)
    again = ctx.api.SaveStateRequest(store_name=ctx.component, states=[item(ctx, key, b"2", first_write=True)])
    await ctx.expect_error("SaveState", again, grpc.StatusCode.ABORTED)
    etag = (await get(ctx, key)).etag
    await save(ctx, key, b"3", etag=etag, first_write=True)
    reuse = ctx.api.SaveStateRequest(store_name=ctx.component, states=[item(ctx, key, b"4", etag, first_write=True)])
    await ctx.expect_error("SaveState", reuse, grpc.StatusCode.ABORTED)
    await expect_value(ctx, key, b"3")


@case(
    "transaction-order",
    "a transaction applies its operations in order",
    ("ExecuteStateTransaction",),
    ("TRANSACTIONAL",),
)
async def transaction_order(ctx: CaseContext) -> None:
    k1, k2, k3 = ctx.key("tx-1"), ctx.key("tx-2"), ctx.key("tx-3")
    await save(ctx, k1, b"value1")
    await ctx.call(
        "ExecuteStateTransaction",
        transaction(
            ctx,
            ("delete", item(ctx, k1)),
            ("upsert", item(ctx, k2, b"value2")),
            ("delete", item(ctx, k2)),
            ("upsert", item(ctx, k3, b"value3")),
            ("delete", item(ctx, ctx.key("tx-never-set"))),
        ),
    )
    await expect_absent(ctx, k1)
    await expect_absent(ctx, k2)
    await expect_value(ctx, k3, b"value3")


@case(
    "transaction-atomic",
    "a transaction with one stale etag changes nothing",
    ("ExecuteStateTransaction",),
    ("TRANSACTIONAL", "ETAG"),
)
async def transaction_atomic(ctx: CaseContext) -> None:
    a, b = ctx.key("txa-a"), ctx.key("txa-b")
    await save(ctx, a, b"a1")
    await save(ctx, b, b"b1")
    stale = (await get(ctx, b)).etag
    await save(ctx, b, b"b2")
    request = transaction(ctx, ("upsert", item(ctx, a, b"a2")), ("upsert", item(ctx, b, b"b3", stale)))
    await ctx.expect_error("ExecuteStateTransaction", request, grpc.StatusCode.ABORTED)
    await expect_value(ctx, a, b"a1")
    await expect_value(ctx, b, b"b2")


def _expire_time(metadata: Any) -> dt.datetime | None:
    raw = metadata.get("ttlExpireTime")
    return dt.datetime.fromisoformat(raw) if raw else None


@case(
    "ttl",
    "ttlInSeconds expires keys, reports ttlExpireTime, -1 removes it, bad values are refused",
    ("SaveState", "GetState", "GetBulkState"),
    ("TTL",),
)
async def ttl_case(ctx: CaseContext) -> None:
    bad = ctx.api.SaveStateRequest(
        store_name=ctx.component, states=[item(ctx, ctx.key("ttl-bad"), b"x", metadata={"ttlInSeconds": "foo"})]
    )
    await ctx.expect_error("SaveState", bad, grpc.StatusCode.INVALID_ARGUMENT, mentions="ttlInSeconds")
    key, plain = ctx.key("ttl"), ctx.key("ttl-none")
    await save(ctx, plain, b"forever")
    check(_expire_time((await get(ctx, plain)).metadata) is None, "a key without TTL must not report ttlExpireTime")
    started = time.time()
    await save(ctx, key, b"short", metadata={"ttlInSeconds": "2"})
    got = await expect_value(ctx, key, b"short")
    expires = _expire_time(got.metadata)
    check(expires is not None, "GetState must report ttlExpireTime for a key with a TTL")
    assert expires is not None
    check(abs(expires.timestamp() - (started + 2)) < 600, f"ttlExpireTime {expires} is not about now + 2 s")
    bulk = await ctx.call("GetBulkState", ctx.api.GetBulkStateRequest(store_name=ctx.component, keys=[key]))
    check(_expire_time(bulk.items[0].metadata) is not None, "GetBulkState must report ttlExpireTime too")
    while time.time() - started < 5:
        if (await get(ctx, key)).data == b"":
            break
        await asyncio.sleep(0.2)
    else:
        raise CaseFailed("a key with ttlInSeconds=2 was still readable after 5 s")
    kept = ctx.key("ttl-removed")
    await save(ctx, kept, b"v", metadata={"ttlInSeconds": "1"})
    await save(ctx, kept, b"v", metadata={"ttlInSeconds": "-1"})
    check(_expire_time((await get(ctx, kept)).metadata) is None, "ttlInSeconds=-1 must remove the TTL")
    await asyncio.sleep(1.5)
    await expect_value(ctx, kept, b"v")


@case(
    "bad-input",
    "empty keys, unknown stores and unknown operations are INVALID_ARGUMENT naming the field",
    ("GetState", "SaveState", "ExecuteStateTransaction"),
)
async def bad_input(ctx: CaseContext) -> None:
    code = grpc.StatusCode.INVALID_ARGUMENT
    await ctx.expect_error("GetState", ctx.api.GetStateRequest(store_name=ctx.component, key=""), code, mentions="key")
    empty_key = ctx.api.SaveStateRequest(store_name=ctx.component, states=[item(ctx, "", b"x")])
    await ctx.expect_error("SaveState", empty_key, code, mentions="key")
    unknown = ctx.api.GetStateRequest(store_name=f"no-such-store-{ctx.run_id}", key="k")
    await ctx.expect_error("GetState", unknown, code, grpc.StatusCode.FAILED_PRECONDITION, mentions="no-such-store")
    if "TRANSACTIONAL" in ctx.features:
        bad_op = transaction(ctx, ("merge", item(ctx, ctx.key("op"), b"x")))
        await ctx.expect_error("ExecuteStateTransaction", bad_op, code, grpc.StatusCode.UNIMPLEMENTED, mentions="merge")


# -- features a store does not declare must really be absent --------------------------------


@case(
    "no-transactions",
    "a store without TRANSACTIONAL refuses transactions and applies nothing",
    ("ExecuteStateTransaction",),
    absent=("TRANSACTIONAL",),
)
async def no_transactions(ctx: CaseContext) -> None:
    key = ctx.key("no-tx")
    request = transaction(ctx, ("upsert", item(ctx, key, b"x")))
    await ctx.expect_error(
        "ExecuteStateTransaction", request, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION
    )
    await expect_absent(ctx, key)


@case("no-ttl", "a store without TTL refuses ttlInSeconds instead of ignoring it", ("SaveState",), absent=("TTL",))
async def no_ttl(ctx: CaseContext) -> None:
    key = ctx.key("no-ttl")
    request = ctx.api.SaveStateRequest(
        store_name=ctx.component, states=[item(ctx, key, b"x", metadata={"ttlInSeconds": "5"})]
    )
    await ctx.expect_error("SaveState", request, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT)
    await expect_absent(ctx, key)


@case(
    "no-etag",
    "a store without ETAG issues no etags and refuses etag-guarded writes",
    ("SaveState", "GetState"),
    absent=("ETAG",),
)
async def no_etag(ctx: CaseContext) -> None:
    key = ctx.key("no-etag")
    await save(ctx, key, b"x")
    check((await get(ctx, key)).etag == "", "a store without ETAG must not return etags")
    request = ctx.api.SaveStateRequest(store_name=ctx.component, states=[item(ctx, key, b"y", "1")])
    await ctx.expect_error("SaveState", request, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT)

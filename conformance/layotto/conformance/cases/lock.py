"""Lock cases: exclusion, ownership, expiry, keep-alive, bad input; on Layotto's RPCs and Dapr's Alpha1 ones."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from layotto.conformance.model import Case, CaseContext, CaseFailed, check
from layotto.proto.dapr.runtime.v1 import lock_pb2 as dapr_lock
from layotto.proto.runtime.v1 import runtime_pb2 as pb

LOCK_CASES: list[Case] = []
SUCCESS, UNEXIST, OTHERS = 0, 1, 2


def case(
    id: str,
    description: str,
    rpcs: tuple[str, ...],
    requires: tuple[str, ...] = (),
    apis: tuple[str, ...] = ("layotto", "dapr"),
) -> Callable[[Callable[[CaseContext], Awaitable[None]]], Any]:
    def register(fn: Callable[[CaseContext], Awaitable[None]]) -> Callable[[CaseContext], Awaitable[None]]:
        full = tuple(f"spec.proto.runtime.v1.Runtime/{r}" for r in rpcs) + tuple(
            f"dapr.proto.runtime.v1.Dapr/{r}Alpha1" for r in rpcs if r in ("TryLock", "Unlock") and "dapr" in apis
        )
        LOCK_CASES.append(Case(id, "lock", description, full, fn, frozenset(requires), apis=apis))
        return fn

    return register


def resource() -> str:
    return f"conformance-{uuid.uuid4().hex}"


async def try_lock(ctx: CaseContext, res: str, owner: str, expire: int) -> bool:
    if ctx.api.name == "dapr":
        request: Any = dapr_lock.TryLockRequest(
            store_name=ctx.component, resource_id=res, lock_owner=owner, expiry_in_seconds=expire
        )
        return bool((await ctx.call("TryLockAlpha1", request)).success)
    request = pb.TryLockRequest(store_name=ctx.component, resource_id=res, lock_owner=owner, expire=expire)
    return bool((await ctx.call("TryLock", request)).success)


async def unlock(ctx: CaseContext, res: str, owner: str) -> int:
    if ctx.api.name == "dapr":
        request: Any = dapr_lock.UnlockRequest(store_name=ctx.component, resource_id=res, lock_owner=owner)
        return int((await ctx.call("UnlockAlpha1", request)).status)
    request = pb.UnlockRequest(store_name=ctx.component, resource_id=res, lock_owner=owner)
    return int((await ctx.call("Unlock", request)).status)


async def keep_alive(ctx: CaseContext, res: str, owner: str, expire: int) -> int:
    request = pb.LockKeepAliveRequest(store_name=ctx.component, resource_id=res, lock_owner=owner, expire=expire)
    return int((await ctx.call("LockKeepAlive", request)).status)


@case("lock-exclusive", "one holder at a time; locks are not reentrant", ("TryLock",))
async def exclusive(ctx: CaseContext) -> None:
    res = resource()
    check(await try_lock(ctx, res, "alice", 20), "the first TryLock must succeed")
    check(not await try_lock(ctx, res, "bob", 20), "a second owner must not get a held lock")
    check(not await try_lock(ctx, res, "alice", 20), "locks are not reentrant: the holder must not get it again")
    check(await try_lock(ctx, resource(), "bob", 20), "another resource is independent")


@case("lock-unlock-status", "Unlock answers SUCCESS, LOCK_UNEXIST and LOCK_BELONG_TO_OTHERS", ("TryLock", "Unlock"))
async def unlock_status(ctx: CaseContext) -> None:
    res = resource()
    check(await unlock(ctx, res, "alice") == UNEXIST, "unlocking a lock nobody holds must be LOCK_UNEXIST")
    check(await try_lock(ctx, res, "alice", 20), "TryLock must succeed")
    check(await unlock(ctx, res, "bob") == OTHERS, "unlocking someone else's lock must be LOCK_BELONG_TO_OTHERS")
    check(await unlock(ctx, res, "alice") == SUCCESS, "the holder's Unlock must be SUCCESS")
    check(await try_lock(ctx, res, "bob", 20), "an unlocked lock must be free")


@case("lock-expiry", "an expired lock is free for everyone, and Unlock then says LOCK_UNEXIST", ("TryLock", "Unlock"))
async def expiry(ctx: CaseContext) -> None:
    res = resource()
    check(await try_lock(ctx, res, "alice", 2), "TryLock must succeed")
    started = time.monotonic()
    while not await try_lock(ctx, res, "bob", 20):
        if time.monotonic() - started > 8:
            raise CaseFailed("a lock with expire=2 was still held after 8 s")
        await asyncio.sleep(0.2)
    check(await unlock(ctx, res, "alice") == OTHERS, "the expired holder must not unlock the new holder's lock")
    lone = resource()
    check(await try_lock(ctx, lone, "carol", 2), "TryLock must succeed")
    started = time.monotonic()
    while await unlock(ctx, lone, "dave") == OTHERS:
        if time.monotonic() - started > 8:
            raise CaseFailed("a lock with expire=2 still belonged to its holder after 8 s")
        await asyncio.sleep(0.2)
    check(await unlock(ctx, lone, "carol") == UNEXIST, "Unlock of an expired lock must be LOCK_UNEXIST")


@case(
    "lock-keep-alive",
    "LockKeepAlive really extends a held lock",
    ("LockKeepAlive",),
    ("KEEP_ALIVE",),
    apis=("layotto",),
)
async def keep_alive_case(ctx: CaseContext) -> None:
    res = resource()
    check(await keep_alive(ctx, res, "alice", 5) == UNEXIST, "keep-alive of a lock nobody holds: LOCK_UNEXIST")
    check(await try_lock(ctx, res, "alice", 2), "TryLock must succeed")
    check(await keep_alive(ctx, res, "bob", 5) == OTHERS, "keep-alive by another owner: LOCK_BELONG_TO_OTHERS")
    check(await keep_alive(ctx, res, "alice", 6) == SUCCESS, "the holder's keep-alive must be SUCCESS")
    await asyncio.sleep(3)
    check(not await try_lock(ctx, res, "bob", 5), "keep-alive must extend the lock past its first expiry")
    check(await unlock(ctx, res, "alice") == SUCCESS, "the holder must still be able to unlock")


@case(
    "lock-bad-input",
    "empty resource or owner, expire <= 0, the reserved separator: INVALID_ARGUMENT naming the field",
    ("TryLock",),
    apis=("layotto",),
)
async def bad_input(ctx: CaseContext) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    for request, field in (
        (pb.TryLockRequest(store_name=ctx.component, resource_id="", lock_owner="o", expire=5), "resource_id"),
        (pb.TryLockRequest(store_name=ctx.component, resource_id="r", lock_owner="", expire=5), "lock_owner"),
        (pb.TryLockRequest(store_name=ctx.component, resource_id="r", lock_owner="o", expire=0), "expire"),
        (pb.TryLockRequest(store_name=ctx.component, resource_id="r", lock_owner="o", expire=-3), "expire"),
        (pb.TryLockRequest(store_name=ctx.component, resource_id="a||b", lock_owner="o", expire=5), "resource_id"),
        (
            pb.TryLockRequest(store_name=f"no-such-{ctx.run_id}", resource_id="r", lock_owner="o", expire=5),
            "store_name",
        ),
    ):
        await ctx.expect_error("TryLock", request, invalid, mentions=field)

"""Sequencer cases: uniqueness and order for STRONG and WEAK, independent keys, bad input."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import grpc

from layotto.conformance.model import Case, CaseContext, check
from layotto.proto.runtime.v1 import runtime_pb2 as pb

RPC = ("spec.proto.runtime.v1.Runtime/GetNextId",)
STRONG = pb.SequencerOptions(increment=pb.SequencerOptions.STRONG)
WEAK = pb.SequencerOptions(increment=pb.SequencerOptions.WEAK)


async def next_id(ctx: CaseContext, key: str, options: pb.SequencerOptions | None) -> int:
    request = pb.GetNextIdRequest(store_name=ctx.component, key=key)
    if options is not None:
        request.options.CopyFrom(options)
    return int((await ctx.call("GetNextId", request)).next_id)


async def strong_increasing(ctx: CaseContext) -> None:
    key = f"conformance-{uuid.uuid4().hex}"
    ids = [await next_id(ctx, key, STRONG) for _ in range(50)]
    check(all(b > a for a, b in itertools.pairwise(ids)), f"STRONG ids must strictly increase: {ids[:10]}…")
    check(ids[0] >= 1, "ids start at 1 or above")
    default = [await next_id(ctx, key, None) for _ in range(5)]
    check(default[0] > ids[-1] and default == sorted(set(default)), "without options ids are STRONG")


async def concurrent_unique(ctx: CaseContext) -> None:
    for options in (STRONG, WEAK):
        key = f"conformance-{uuid.uuid4().hex}"
        ids = await asyncio.gather(*(next_id(ctx, key, options) for _ in range(200)))
        check(
            len(set(ids)) == 200,
            f"200 concurrent ids ({pb.SequencerOptions.AutoIncrement.Name(options.increment)}) "
            f"held {200 - len(set(ids))} duplicates",
        )


async def weak_unique(ctx: CaseContext) -> None:
    key = f"conformance-{uuid.uuid4().hex}"
    ids = [await next_id(ctx, key, WEAK) for _ in range(300)]
    check(len(set(ids)) == 300, "WEAK ids must be unique")
    check(all(b > a for a, b in itertools.pairwise(ids)), "WEAK ids from one runtime must increase")
    strong = await next_id(ctx, key, STRONG)
    check(strong not in ids, "a STRONG id must never repeat a WEAK one on the same key")


async def bad_input(ctx: CaseContext) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    await ctx.expect_error("GetNextId", pb.GetNextIdRequest(store_name=ctx.component, key=""), invalid, mentions="key")
    await ctx.expect_error(
        "GetNextId", pb.GetNextIdRequest(store_name=ctx.component, key="a||b"), invalid, mentions="key"
    )
    await ctx.expect_error(
        "GetNextId", pb.GetNextIdRequest(store_name=f"no-such-{ctx.run_id}", key="k"), invalid, mentions="store_name"
    )


SEQUENCER_CASES = [
    Case(
        "seq-strong-increasing",
        "sequencer",
        "STRONG ids strictly increase; no options means STRONG",
        RPC,
        strong_increasing,
        apis=("layotto",),
    ),
    Case(
        "seq-concurrent-unique",
        "sequencer",
        "concurrent STRONG and WEAK ids are all distinct",
        RPC,
        concurrent_unique,
        apis=("layotto",),
    ),
    Case(
        "seq-weak-unique",
        "sequencer",
        "WEAK ids are unique and increase within a runtime",
        RPC,
        weak_unique,
        apis=("layotto",),
    ),
    Case(
        "seq-bad-input",
        "sequencer",
        "empty key, reserved separator, unknown store: INVALID_ARGUMENT naming the field",
        RPC,
        bad_input,
        apis=("layotto",),
    ),
]

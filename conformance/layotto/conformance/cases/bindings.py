"""Output binding cases: what every output binding answers, whatever its target.

An operation the binding lacks, or none, is INVALID_ARGUMENT naming ``operation`` and listing
the binding's operations (Layotto answers INTERNAL); an input-only binding is never listed here.
"""

from __future__ import annotations

from typing import Any

import grpc

from layotto.conformance.model import Case, CaseContext
from layotto.proto.dapr.runtime.v1 import binding_pb2
from layotto.proto.runtime.v1 import runtime_pb2

RPCS = ("spec.proto.runtime.v1.Runtime/InvokeBinding", "dapr.proto.runtime.v1.Dapr/InvokeBinding")
OUTPUT = frozenset({"OUTPUT_BINDING"})


def _request(ctx: CaseContext, operation: str) -> Any:
    message = binding_pb2.InvokeBindingRequest if ctx.api.name == "dapr" else runtime_pb2.InvokeBindingRequest
    return message(name=ctx.component, operation=operation, data=b"x", metadata={"key": ctx.key("k")})


async def _unknown_operation(ctx: CaseContext) -> None:
    request = _request(ctx, "no-such-operation")
    await ctx.expect_error("InvokeBinding", request, grpc.StatusCode.INVALID_ARGUMENT, mentions="its operations: ")


async def _empty_operation(ctx: CaseContext) -> None:
    await ctx.expect_error("InvokeBinding", _request(ctx, ""), grpc.StatusCode.INVALID_ARGUMENT, mentions="operation")


BINDING_CASES = [
    Case(
        "binding-unknown-operation",
        "bindings",
        "an operation the binding lacks is INVALID_ARGUMENT listing its operations",
        RPCS,
        _unknown_operation,
        requires=OUTPUT,
    ),
    Case(
        "binding-empty-operation",
        "bindings",
        "an empty operation is INVALID_ARGUMENT naming operation",
        RPCS,
        _empty_operation,
        requires=OUTPUT,
    ),
]

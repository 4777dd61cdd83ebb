"""Service invocation cases that need no app: what any runtime must refuse, and how.

They run once per target (block ``invocation``, no component) on both wire APIs: an empty
target id or method and an unknown verb are INVALID_ARGUMENT naming the field; an app id no
name resolution knows is NOT_FOUND naming it.
"""

from __future__ import annotations

import grpc

from layotto.conformance.model import Case, CaseContext

_RPCS = ("spec.proto.runtime.v1.Runtime/InvokeService", "dapr.proto.runtime.v1.Dapr/InvokeService")


def _request(ctx: CaseContext, app_id: str, method: str, verb: int = 0) -> object:
    message = ctx.api.InvokeRequest(method=method, content_type="text/plain")
    message.data.value = b"conformance"
    message.http_extension.verb = verb
    return ctx.api.InvokeServiceRequest(id=app_id, message=message)


async def _empty_id(ctx: CaseContext) -> None:
    request = _request(ctx, "", "echo")
    await ctx.expect_error("InvokeService", request, grpc.StatusCode.INVALID_ARGUMENT, mentions="id")


async def _empty_method(ctx: CaseContext) -> None:
    request = _request(ctx, ctx.key("app"), "")
    await ctx.expect_error("InvokeService", request, grpc.StatusCode.INVALID_ARGUMENT, mentions="method")


async def _unknown_verb(ctx: CaseContext) -> None:
    request = _request(ctx, ctx.key("app"), "echo", verb=42)
    await ctx.expect_error("InvokeService", request, grpc.StatusCode.INVALID_ARGUMENT, mentions="verb")


async def _unknown_app(ctx: CaseContext) -> None:
    app_id = ctx.key("no-such-app")
    await ctx.expect_error("InvokeService", _request(ctx, app_id, "echo"), grpc.StatusCode.NOT_FOUND, mentions=app_id)


INVOCATION_CASES = [
    Case("invoke-empty-id", "invocation", "an empty target id is INVALID_ARGUMENT naming id", _RPCS, _empty_id),
    Case(
        "invoke-empty-method",
        "invocation",
        "an empty method is INVALID_ARGUMENT naming message.method",
        _RPCS,
        _empty_method,
    ),
    Case("invoke-unknown-verb", "invocation", "an unknown verb is INVALID_ARGUMENT naming it", _RPCS, _unknown_verb),
    Case("invoke-unknown-app", "invocation", "an app id nobody serves is NOT_FOUND naming it", _RPCS, _unknown_app),
]

"""client.invoke and SubscriberApp's @app.method against the in-process runtime (its own app id,
so the runtime calls its app directly; the two-sidecar path is server/tests/test_invocation.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import FrozenInstanceError

import pytest

from layotto.client import (
    AppError,
    AppNotFound,
    AppUnavailable,
    DeadlineExceeded,
    InvalidArgument,
    Invocation,
    InvokeResponse,
    RuntimeClient,
    SubscriberApp,
)
from layotto.client.testing import MockTransport, TestRuntime, test_runtime
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server import embedded_defaults


def make_app() -> tuple[SubscriberApp, list[Invocation]]:
    app, seen = SubscriberApp(), []

    @app.method("greet")
    async def greet(call: Invocation) -> str:
        seen.append(call)
        return f"hello {call.text()}"

    @app.method("order")
    async def order(call: Invocation) -> InvokeResponse:
        seen.append(call)
        return InvokeResponse(b'{"ok":true}', "application/json", {"x-order": call.json()["id"]})

    @app.method("broken")
    async def broken(call: Invocation) -> None:
        raise RuntimeError("boom")

    @app.method("slow")
    async def slow(call: Invocation) -> None:
        await asyncio.sleep(30)

    return app, seen


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestRuntime, list[Invocation]]]:
    app, seen = make_app()
    async with app.serve("127.0.0.1:0") as port:
        config = embedded_defaults().with_overrides(app_id="shop", app_callback_address=f"127.0.0.1:{port}")
        async with test_runtime(config) as runtime:
            yield runtime, seen


async def test_invoke_returns_the_apps_answer(served: tuple[TestRuntime, list[Invocation]]) -> None:
    runtime, seen = served
    async with runtime.client() as client:
        reply = await client.invoke("shop", "greet", "ann", headers={"X-Trace-Me": "1"}, verb="get", querystring="a=1")
        assert (reply.text(), reply.content_type, reply.status) == ("hello ann", "text/plain", 200)
        call = seen[-1]
        assert (call.method, call.verb, call.querystring, call.content_type) == ("greet", "GET", "a=1", "text/plain")
        assert call.headers["x-trace-me"] == "1"
        reply = await client.invoke("shop", "order", {"id": "7"})
        assert reply.json() == {"ok": True} and reply.headers["x-order"] == "7"
        assert seen[-1].content_type == "application/json" and seen[-1].verb == "NONE"
        with pytest.raises(FrozenInstanceError):
            reply.status = 500  # type: ignore[misc]


async def test_invoke_errors(served: tuple[TestRuntime, list[Invocation]]) -> None:
    runtime, _ = served
    async with runtime.client() as client:
        with pytest.raises(AppNotFound) as unknown:
            await client.invoke("nobody", "greet")
        assert unknown.value.reason == "APP_NOT_FOUND" and unknown.value.metadata["app_id"] == "nobody"
        with pytest.raises(AppError) as failed:
            await client.invoke("shop", "broken")
        assert failed.value.code == "INTERNAL" and "'broken' failed" in str(failed.value)
        with pytest.raises(AppError) as unknown_method:
            await client.invoke("shop", "missing")
        assert unknown_method.value.code == "UNIMPLEMENTED"
        with pytest.raises(DeadlineExceeded):
            await client.invoke("shop", "slow", timeout=0.3)
        with pytest.raises(InvalidArgument) as empty:
            await client.invoke("shop", "")
        assert empty.value.field == "message.method"
        with pytest.raises(InvalidArgument) as no_id:
            await client.invoke("", "greet")
        assert no_id.value.field == "id"
        with pytest.raises(InvalidArgument, match=r"^verb: expected one of NONE, GET") as verb:
            await client.invoke("shop", "greet", verb="FETCH")
        assert verb.value.field == "verb"
        for bad in ({"X-Name": "Zo\u00eb"}, {"bad header": "x"}, {"x:y": "1"}, {"grpc-timeout": "1"}, {"x-bin": "1"}):
            with pytest.raises(InvalidArgument, match=r"^headers: ") as header:  # a space was a RuntimeInternalError
                await client.invoke("shop", "greet", headers=bad)
            assert header.value.field == "headers" and repr(next(iter(bad)).lower()) in str(header.value)
        with pytest.raises(InvalidArgument) as number:  # was an AttributeError ('int' has no isascii)
            await client.invoke("shop", "greet", headers={"x-n": 5})  # type: ignore[dict-item]
        assert number.value.field == "headers['x-n']"


async def test_an_app_that_is_not_up_is_unavailable() -> None:
    config = embedded_defaults().with_overrides(app_id="shop", app_callback_address="127.0.0.1:1")
    async with test_runtime(config) as runtime, runtime.client() as client:
        with pytest.raises(AppUnavailable, match="'shop'"):
            await client.invoke("shop", "greet")


async def test_invoke_with_a_mock_transport() -> None:
    def handler(method: str, request: pb.InvokeServiceRequest) -> pb.InvokeResponse:
        assert method == "spec.proto.runtime.v1.Runtime.InvokeService"
        answer = pb.InvokeResponse(content_type="text/plain")
        answer.data.value = request.message.data.value.upper()
        return answer

    async with RuntimeClient(transport=MockTransport(handler)) as client:
        reply = await client.invoke("x", "m", "abc")
    assert (reply.data, reply.status, dict(reply.headers)) == (b"ABC", 200, {})

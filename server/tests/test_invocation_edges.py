"""Service invocation's edges found by trying to break it, on one runtime calling its own app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from server_helpers import free_port

from layotto.client import Invocation, InvokeResponse, SubscriberApp
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime
from layotto.server.config import from_mapping


@pytest.fixture
async def stub(tmp_path: Path) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    app, port = SubscriberApp(), free_port()
    config = {"app_id": "self", "data_dir": str(tmp_path), "grpc_address": "127.0.0.1:0", "http_address": "127.0.0.1:0"}
    config["app_callback_address"] = f"127.0.0.1:{port}"
    async with (
        app.serve(f"127.0.0.1:{port}"),
        Runtime(from_mapping(config)) as runtime,
        grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel,
    ):
        yield runtime_pb2_grpc.RuntimeStub(channel)


async def test_an_unserved_huge_method_is_unimplemented_not_lost_in_headers(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    method = "m" * 100_000  # the SDK app's error named it whole: over gRPC's 16 KiB of headers, RESOURCE_EXHAUSTED
    request = pb.InvokeServiceRequest(id="self", message=pb.CommonInvokeRequest(method=method))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.InvokeService(request, timeout=10)
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED, refused.value.details()
    assert f"method '{'m' * 200}...' is not served by this app" in (refused.value.details() or "")


async def test_a_content_type_with_control_characters_is_refused_naming_it(
    stub: runtime_pb2_grpc.RuntimeStub,
) -> None:
    message = pb.CommonInvokeRequest(method="m", content_type="text/plain\r\nX-Injected: 1")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.InvokeService(pb.InvokeServiceRequest(id="self", message=message), timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith("message.content_type: "), refused.value.details()


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (pb.CommonInvokeRequest(method="m\r\nX-Injected: 1"), "message.method"),
        (
            pb.CommonInvokeRequest(
                method="m", http_extension=pb.HTTPExtension(verb=pb.HTTPExtension.GET, querystring="a=1\r\nX: 1")
            ),
            "message.http_extension.querystring",
        ),
    ],
)
async def test_a_method_or_query_string_with_control_characters_is_refused_naming_it(
    stub: runtime_pb2_grpc.RuntimeStub, message: pb.CommonInvokeRequest, field: str
) -> None:
    """An HTTP app would get them in its request line: refused, not silently dropped."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.InvokeService(pb.InvokeServiceRequest(id="self", message=message), timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(f"{field}: "), refused.value.details()


async def test_a_resiliency_timeout_beyond_grpcs_deadline_range_is_no_deadline(tmp_path: Path) -> None:
    """grpc's deadline overflows near 9.2e9 s: a call with a timeout policy of 2562047h (within
    Go's range, so a valid Dapr spec) failed at once with DEADLINE_EXCEEDED."""
    app, port = SubscriberApp(), free_port()

    @app.method("echo")
    async def echo(call: Invocation) -> bytes:
        return call.data

    spec = {"policies": {"timeouts": {"long": "2562047h"}}, "targets": {"apps": {"self": {"timeout": "long"}}}}
    config = {"app_id": "self", "data_dir": str(tmp_path), "grpc_address": "127.0.0.1:0", "http_address": "127.0.0.1:0"}
    config |= {"app_callback_address": f"127.0.0.1:{port}", "resiliency": spec}
    async with (
        app.serve(f"127.0.0.1:{port}"),
        Runtime(from_mapping(config)) as runtime,
        grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel,
    ):
        message = pb.CommonInvokeRequest(method="echo")
        message.data.value = b"hi"
        answer = await runtime_pb2_grpc.RuntimeStub(channel).InvokeService(
            pb.InvokeServiceRequest(id="self", message=message)
        )
        assert answer.data.value == b"hi"


async def test_a_grpc_apps_own_status_header_is_not_the_callers_http_status(tmp_path: Path) -> None:
    """A gRPC app's metadata ``dapr-http-status`` (the header an HTTP app's channel sets) became the
    status of the caller's HTTP answer through the hop: abc answered 500 and logged a traceback,
    99999 or 0 no answer at all, 600 an HTTP 600, 204 lost the body."""
    app, app_port, b_port = SubscriberApp(), free_port(), free_port()

    @app.method("status")
    async def status(call: Invocation) -> InvokeResponse:
        return InvokeResponse(b"body", "text/plain", {"dapr-http-status": call.text(), "x-app": "1"})

    common = {"grpc_address": "127.0.0.1:0", "http_address": "127.0.0.1:0"}
    b = {**common, "app_id": "b", "data_dir": str(tmp_path / "b"), "app_callback_address": f"127.0.0.1:{app_port}"}
    a = {**common, "app_id": "a", "data_dir": str(tmp_path / "a")}
    a["name_resolution"] = {"type": "static", "apps": {"b": [f"127.0.0.1:{b_port}"]}}
    async with (
        app.serve(f"127.0.0.1:{app_port}"),
        Runtime(from_mapping({**b, "grpc_address": f"127.0.0.1:{b_port}"})),
        Runtime(from_mapping(a)) as caller,
        aiohttp.ClientSession() as http,
    ):
        for value in ("abc", "99999", "0", "600", "204"):
            async with http.post(
                f"http://127.0.0.1:{caller.http_port}/v1.0/invoke/b/method/status", data=value
            ) as reply:
                assert (reply.status, await reply.read(), reply.headers["x-app"]) == (200, b"body", "1"), value

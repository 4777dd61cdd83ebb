"""Metadata a gRPC app cannot be sent as it is: two runtimes in process, ``a`` (no app) relaying to
``b``, whose gRPC app (raw bytes, generic handlers: an Echo service for Dapr's gRPC proxying and
AppCallback's OnInvoke) is served from the test's event loop. Runs on the transport
LAYOTTO_GRPC_TRANSPORT picks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from server_helpers import free_port

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.server import Runtime
from layotto.server.config import from_mapping

METHOD = "/test.v1.Echo/Unary"


@dataclass
class Mesh:
    a: Runtime
    b: Runtime
    seen: list[dict[str, Any]]


@pytest.fixture
async def mesh(tmp_path: Path) -> AsyncIterator[Mesh]:
    seen: list[dict[str, Any]] = []

    async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(dict(context.invocation_metadata() or ()))
        return b"echo:" + request

    async def on_invoke(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(dict(context.invocation_metadata() or ()))
        return common_pb2.InvokeResponse(content_type="text/plain").SerializeToString()

    app = grpc.aio.server()
    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(unary)}
    callback = {"OnInvoke": grpc.unary_unary_rpc_method_handler(on_invoke)}
    app.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler("test.v1.Echo", handlers),
            grpc.method_handlers_generic_handler("dapr.proto.runtime.v1.AppCallback", callback),
        )
    )
    app_port = app.add_insecure_port("127.0.0.1:0")
    await app.start()
    b_port = free_port()
    # the sidecars take a caller's metadata up to 16 KiB (grpcio's own soft limit, 8 KiB, refuses
    # at random above it, which would decide the oversized call below before the hop's check)
    common = {
        "grpc_address": "127.0.0.1:0",
        "http_address": "127.0.0.1:0",
        "grpc_server_options": {"grpc.max_metadata_size": 16384},
    }
    b_config = {"app_id": "b", "app_protocol": "grpc", "app_port": app_port, "data_dir": str(tmp_path / "b")}
    apps = {"b": [f"127.0.0.1:{b_port}"]}
    a_config = {"app_id": "a", "data_dir": str(tmp_path / "a"), "name_resolution": {"type": "static", "apps": apps}}
    try:
        async with (
            Runtime(from_mapping({**common, **b_config, "grpc_address": f"127.0.0.1:{b_port}"})) as b,
            Runtime(from_mapping({**common, **a_config})) as a,
        ):
            yield Mesh(a, b, seen)
    finally:
        await app.stop(None)


def _reason(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info.reason
    return ""


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_metadata_a_hop_or_the_app_cannot_take_is_too_large_before_it_is_sent(mesh: Mesh, where: str) -> None:
    """Metadata the caller's sidecar took went on, with the hop's own, over the 7,680 bytes
    InvokeService holds a hop to: whether the call passed was up to the next gRPC server's limits
    (its 8 KiB soft limit refuses at random, its hard one with 431), never PAYLOAD_TOO_LARGE."""
    sidecar = mesh.b if where == "local" else mesh.a
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.grpc_port}") as channel:
        call = channel.unary_unary(METHOD)
        # 7,641 bytes as HTTP/2 counts them: within the 8 KiB the caller's sidecar takes with gRPC's
        # own headers, over 7,680 with the hop's (or the own app's caller and callee ids)
        big = (("dapr-app-id", "b"), ("x-big", "v" * 7560))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call(b"hi", metadata=big, timeout=10)
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, refused.value
        assert _reason(refused.value) == "PAYLOAD_TOO_LARGE"
        assert (refused.value.details() or "").startswith("metadata: "), refused.value.details()
        assert not mesh.seen
        fits = (("dapr-app-id", "b"), ("x-big", "v" * 7000))
        assert await call(b"hi", metadata=fits, timeout=10) == b"echo:hi"
        assert mesh.seen[-1]["x-big"] == "v" * 7000


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_a_header_a_grpc_apps_metadata_cannot_carry_is_refused_naming_it(mesh: Mesh, where: str) -> None:
    """An HTTP caller's non-ASCII header was dropped silently on the way to a gRPC app (daprd's
    grpc-go refuses such metadata): now a 400 naming it, as the header is not the app's to lose."""
    sidecar = mesh.b if where == "local" else mesh.a
    url = f"http://127.0.0.1:{sidecar.http_port}/v1.0/invoke/b/method/echo"
    async with aiohttp.ClientSession() as http:
        for header in ({"X-Name": "café"}, {"X-Tab": "a\tb"}, {"X-Thing-Bin": "text"}):
            async with http.get(url, headers=header) as reply:
                body = await reply.json()
                assert reply.status == 400 and body["details"][0]["reason"] == "INVALID_ARGUMENT", body
                name = next(iter(header)).lower()
                assert body["message"].startswith(f"metadata: header {name!r}"), body
        assert not mesh.seen
        async with http.get(url, headers={"X-Name": "cafe"}) as reply:
            assert reply.status == 200
        assert mesh.seen[-1]["x-name"] == "cafe"

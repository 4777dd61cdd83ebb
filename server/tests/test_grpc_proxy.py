"""Dapr's gRPC proxying through two sidecars, with real processes: an app calls a gRPC service of app
``b`` on its own sidecar ``a`` with ``dapr-app-id: b``; ``a`` relays the raw call to ``b``'s sidecar,
which relays it to ``b``'s gRPC server (served from this test's event loop, on raw bytes through
grpc's generic handlers: no generated code). Runs on the transport LAYOTTO_GRPC_TRANSPORT picks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2
from server_helpers import ServerProcess, free_port, start_server

SERVICE = "test.v1.Echo"
RICH_STATUS = status_pb2.Status(code=9, message="no luck").SerializeToString()


@dataclass
class Mesh:
    a: ServerProcess  # no app; resolves b (and ghost, where nothing listens) statically
    b: ServerProcess  # its app: the Echo service at b_app_port
    b_app_port: int


@dataclass
class EchoApp:
    """What b's app saw: the metadata of each call, and whether the slow call was cancelled."""

    metadata: list[dict[str, str | bytes]] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("proxy")
    b_app_port = free_port()
    (root / "b.yaml").write_text(f"app_id: b\napp_protocol: grpc\napp_port: {b_app_port}\n")
    b = start_server("-c", str(root / "b.yaml"), data_dir=root / "b")
    (root / "a.yaml").write_text(
        "app_id: a\nname_resolution:\n  type: static\n  apps:\n"
        f"    b: [{b.grpc_address}]\n    ghost: [127.0.0.1:{free_port()}]\n"
    )
    a = start_server("-c", str(root / "a.yaml"), data_dir=root / "a")
    yield Mesh(a, b, b_app_port)
    for server in (a, b):
        server.process.kill()
        server.process.wait()


def _echo_handlers(seen: EchoApp) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        metadata = dict(context.invocation_metadata() or ())
        seen.metadata.append(metadata)
        await context.send_initial_metadata((("x-header", "h1"),))
        context.set_trailing_metadata((("x-trailer", "t1"), ("x-blob-bin", b"\x00\xff")))
        return b"unary:" + request

    async def server_stream(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        for n in range(3):
            yield request + str(n).encode()

    async def client_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return b"+".join([message async for message in requests])

    async def bidi(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[bytes]:
        async for message in requests:
            yield b"re:" + message

    async def fail(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            "no luck",
            trailing_metadata=(("x-why", "because"), ("grpc-status-details-bin", RICH_STATUS)),
        )
        raise AssertionError("abort returns no more")

    async def slow(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.cancelled.set()
            raise
        return b"late"

    return {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }


@asynccontextmanager
async def echo_app(port: int) -> AsyncIterator[EchoApp]:
    seen = EchoApp()
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, _echo_handlers(seen)),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield seen
    finally:
        await server.stop(None)


@asynccontextmanager
async def caller(mesh: Mesh) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(mesh.a.grpc_address) as channel:
        yield channel


TO_B = (("dapr-app-id", "b"),)


async def test_a_unary_call_with_its_metadata_headers_and_trailers(mesh: Mesh) -> None:
    async with echo_app(mesh.b_app_port) as app, caller(mesh) as channel:
        call = channel.unary_unary(f"/{SERVICE}/Unary")(
            b"hi",
            metadata=(
                *TO_B,
                ("x-token", "t1"),
                ("x-key-bin", b"\x01\x02"),
                ("dapr-caller-app-id", "evil"),  # the sidecars set it
                ("layotto-caller-app-id", "evil"),
            ),
            timeout=10,
        )
        assert await call == b"unary:hi"
        assert ("x-header", "h1") in tuple(await call.initial_metadata())
        trailers = tuple(await call.trailing_metadata())
        assert ("x-trailer", "t1") in trailers and ("x-blob-bin", b"\x00\xff") in trailers
        seen = app.metadata[-1]
        assert seen["x-token"] == "t1" and seen["x-key-bin"] == b"\x01\x02"
        assert seen["dapr-caller-app-id"] == "a" and seen["dapr-callee-app-id"] == "b"
        assert not {"dapr-app-id", "layotto-invoke-hop", "layotto-caller-app-id"} & set(seen)


async def test_b_calls_its_own_app_through_its_own_sidecar(mesh: Mesh) -> None:
    async with echo_app(mesh.b_app_port) as app, grpc.aio.insecure_channel(mesh.b.grpc_address) as channel:
        assert await channel.unary_unary(f"/{SERVICE}/Unary")(b"me", metadata=TO_B, timeout=10) == b"unary:me"
        assert app.metadata[-1]["dapr-caller-app-id"] == "b"


async def test_server_client_and_bidi_streams(mesh: Mesh) -> None:
    async with echo_app(mesh.b_app_port), caller(mesh) as channel:
        answers = channel.unary_stream(f"/{SERVICE}/ServerStream")(b"s", metadata=TO_B, timeout=10)
        assert [message async for message in answers] == [b"s0", b"s1", b"s2"]

        sent = iter([b"x", b"y", b"z"])
        total = await channel.stream_unary(f"/{SERVICE}/ClientStream")(sent, metadata=TO_B, timeout=10)
        assert total == b"x+y+z"

        bidi = channel.stream_stream(f"/{SERVICE}/Bidi")(metadata=(*TO_B, ("dapr-stream", "true")), timeout=10)
        for n in range(5):  # each answer comes back before the next message is sent: nothing is buffered
            await bidi.write(f"m{n}".encode())
            assert await bidi.read() == f"re:m{n}".encode()
        await bidi.done_writing()
        assert await bidi.read() is grpc.aio.EOF
        assert await bidi.code() is grpc.StatusCode.OK


async def test_the_apps_error_status_comes_back_exactly(mesh: Mesh) -> None:
    async with echo_app(mesh.b_app_port), caller(mesh) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await channel.unary_unary(f"/{SERVICE}/Fail")(b"", metadata=TO_B, timeout=10)
        error = failed.value
        assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "no luck")
        trailers = tuple(error.trailing_metadata() or ())
        assert ("x-why", "because") in trailers and ("grpc-status-details-bin", RICH_STATUS) in trailers


async def test_the_deadline_cancels_the_apps_handler(mesh: Mesh) -> None:
    async with echo_app(mesh.b_app_port) as app, caller(mesh) as channel:
        await channel.unary_unary(f"/{SERVICE}/Unary")(b"", metadata=TO_B, timeout=10)  # connected
        with pytest.raises(grpc.aio.AioRpcError) as late:
            await channel.unary_unary(f"/{SERVICE}/Slow")(b"", metadata=TO_B, timeout=0.5)
        assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.wait_for(app.cancelled.wait(), 10)


async def test_a_cancelled_call_cancels_the_apps_handler(mesh: Mesh) -> None:
    async with echo_app(mesh.b_app_port) as app, caller(mesh) as channel:
        await channel.unary_unary(f"/{SERVICE}/Unary")(b"", metadata=TO_B, timeout=10)  # connected
        call = channel.unary_unary(f"/{SERVICE}/Slow")(b"", metadata=TO_B, timeout=30)
        await asyncio.sleep(0.3)  # the call reaches the app: nothing to await that would not end it
        call.cancel()
        await asyncio.wait_for(app.cancelled.wait(), 10)


async def test_unknown_unreachable_and_missing_targets(mesh: Mesh) -> None:
    async with caller(mesh) as channel:
        unary = channel.unary_unary(f"/{SERVICE}/Unary")
        cases = [
            ((("dapr-app-id", "nobody"),), grpc.StatusCode.NOT_FOUND, "'nobody'"),
            ((("dapr-app-id", "ghost"),), grpc.StatusCode.UNAVAILABLE, "'ghost'"),
            (TO_B, grpc.StatusCode.UNAVAILABLE, "'b'"),  # b's sidecar is up, its app is not
            ((("dapr-app-id", "a"),), grpc.StatusCode.UNAVAILABLE, "no gRPC app"),
            ((), grpc.StatusCode.UNIMPLEMENTED, ""),  # no dapr-app-id: a method nobody serves
        ]
        for metadata, code, named in cases:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await unary(b"", metadata=metadata, timeout=10)
            assert failed.value.code() is code, metadata
            assert named in (failed.value.details() or ""), metadata

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
from pathlib import Path
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


HOUR_MS = 3_600_000
API_TOKEN = "api-t0ken"  # both sidecars': the apps present it, and a presents it on the hop
B_CONFIG = """\
app_id: b
app_protocol: grpc
app_port: {port}
api_token: {api_token}
invoke_token: hop-t0ken
access_control:
  defaultAction: deny
  policies:
    - appId: a
      defaultAction: allow
      operations:
        - {{name: /test.v1.Echo/Secret, httpVerb: ["*"], action: deny}}
    - appId: b
      defaultAction: allow
    - appId: c
      defaultAction: allow
"""
A_CONFIG = """\
app_id: a
api_token: {api_token}
invoke_token: hop-t0ken
name_resolution:
  type: static
  apps:
    b: [{b}]
    ghost: [127.0.0.1:{ghost_port}]
flow_control:
  rules:
    - {{resource: /test.v1.Echo/Limited, threshold: 1, statIntervalInMs: {hour}}}
    - {{appId: limited, threshold: 1, statIntervalInMs: {hour}}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("proxy")
    b_app_port = free_port()
    (root / "b.yaml").write_text(B_CONFIG.format(port=b_app_port, api_token=API_TOKEN))
    b = start_server("-c", str(root / "b.yaml"), data_dir=root / "b")
    (root / "a.yaml").write_text(
        A_CONFIG.format(api_token=API_TOKEN, b=b.grpc_address, ghost_port=free_port(), hour=HOUR_MS)
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

    async def refuse(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.OUT_OF_RANGE, "refused unread")  # as the caller is still writing
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
        "Refuse": grpc.stream_unary_rpc_method_handler(refuse),
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


TOKEN = (("dapr-api-token", API_TOKEN),)
TO_B = (("dapr-app-id", "b"), *TOKEN)


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
        hop_headers = {
            "dapr-app-id",
            "dapr-api-token",
            "layotto-invoke-hop",
            "layotto-caller-app-id",
            "layotto-invoke-token",
        }
        assert not hop_headers & set(seen)


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
        # an app answering before it reads: grpc.aio marked such calls INTERNAL one time in three
        refuse = channel.stream_unary(f"/{SERVICE}/Refuse")
        for _ in range(20):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await refuse(iter([b"a", b"b"]), metadata=TO_B, timeout=10)
            assert (refused.value.code(), refused.value.details()) == (grpc.StatusCode.OUT_OF_RANGE, "refused unread")


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
            ((("dapr-app-id", "nobody"), *TOKEN), grpc.StatusCode.NOT_FOUND, "'nobody'"),
            ((("dapr-app-id", "ghost"), *TOKEN), grpc.StatusCode.UNAVAILABLE, "'ghost'"),
            (TO_B, grpc.StatusCode.UNAVAILABLE, "'b'"),  # b's sidecar is up, its app is not
            ((("dapr-app-id", "a"), *TOKEN), grpc.StatusCode.UNAVAILABLE, "no gRPC app"),
            ((("dapr-app-id", "b"),), grpc.StatusCode.UNAUTHENTICATED, "dapr-api-token"),
            (TOKEN, grpc.StatusCode.UNIMPLEMENTED, ""),  # no dapr-app-id: a method nobody serves
        ]
        for metadata, code, named in cases:
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await unary(b"", metadata=metadata, timeout=10)
            assert failed.value.code() is code, metadata
            assert named in (failed.value.details() or ""), metadata


async def test_access_control_and_the_hop_token_hold_on_the_callee(mesh: Mesh) -> None:
    async with echo_app(mesh.b_app_port), caller(mesh) as channel:
        for _ in range(20):  # b refuses before reading: its status, never grpc.aio's INTERNAL for the write race
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await channel.unary_unary(f"/{SERVICE}/Secret")(b"", metadata=TO_B, timeout=10)
            assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "app 'a' may not call NONE /test.v1.Echo/Secret" in (denied.value.details() or "")
    forged = (*TO_B, ("layotto-invoke-hop", "1"), ("layotto-caller-app-id", "a"))  # without the invoke token
    async with echo_app(mesh.b_app_port) as app, grpc.aio.insecure_channel(mesh.b.grpc_address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await channel.unary_unary(f"/{SERVICE}/Unary")(b"", metadata=forged, timeout=10)
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "invoke token" in (refused.value.details() or "") and app.metadata == []


async def test_flow_control_limits_proxied_methods_and_target_apps(mesh: Mesh) -> None:
    async with caller(mesh) as channel:
        limited = channel.unary_unary(f"/{SERVICE}/Limited")
        codes = []
        for metadata in (TO_B, TO_B, (("dapr-app-id", "limited"), *TOKEN), (("dapr-app-id", "limited"), *TOKEN)):
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await (limited if metadata is TO_B else channel.unary_unary(f"/{SERVICE}/Unary"))(
                    b"", metadata=metadata, timeout=10
                )
            codes.append(failed.value.code())
        # b's app is not serving: the first call got through (and found no app), the second did not
        assert codes == [
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ]


async def test_one_trace_from_the_caller_through_both_sidecars_into_the_app(tmp_path: Path) -> None:
    from layotto.tracing import Tracing, TracingSettings
    from layotto.tracing.testing import OtlpReceiver, ReceivedSpan

    server_kind, client_kind, method = 2, 3, f"{SERVICE}/Unary"
    app_port = free_port()
    with OtlpReceiver() as otlp:
        tracing = f"tracing: {{exporters: [otlp], otlp_endpoint: '{otlp.endpoint}', service_name: %s}}\n"
        (tmp_path / "b.yaml").write_text(f"app_id: b\napp_protocol: grpc\napp_port: {app_port}\n" + tracing % "rt-b")
        b = start_server("-c", str(tmp_path / "b.yaml"), data_dir=tmp_path / "b")
        (tmp_path / "a.yaml").write_text(
            f"app_id: a\nname_resolution: {{apps: {{b: [{b.grpc_address}]}}}}\n" + tracing % "rt-a"
        )
        a = start_server("-c", str(tmp_path / "a.yaml"), data_dir=tmp_path / "a")
        caller_tracing = Tracing(
            TracingSettings(exporters=("otlp",), service_name="caller", otlp_endpoint=otlp.endpoint)
        )
        try:
            interceptors = caller_tracing.client_interceptors(a.grpc_address)
            async with (
                echo_app(app_port) as app,
                grpc.aio.insecure_channel(a.grpc_address, interceptors=interceptors) as channel,
            ):
                await channel.unary_unary(f"/{method}")(b"t", metadata=(("dapr-app-id", "b"),), timeout=10)
            caller_tracing.force_flush()
        finally:
            caller_tracing.shutdown()
            for server in (a, b):  # a runtime flushes its spans when it stops
                code, stderr = server.terminate()
                assert code == 0, stderr
        spans = otlp.wait_for(lambda found: len({(s.service, s.kind) for s in found}) >= 5)

    def one(kind: int, service: str) -> ReceivedSpan:
        found = [s for s in spans if s.name == method and s.kind == kind and s.service == service]
        assert len(found) == 1, f"one {service} span ({kind}), found {found}"
        return found[0]

    chain = [one(client_kind, "rt-b")]
    while chain[0].parent_span_id:  # up from the callee sidecar's call of its app to the caller's root
        chain.insert(0, next(s for s in spans if s.span_id == chain[0].parent_span_id))
    assert [(s.service, s.kind) for s in chain] == [
        ("caller", client_kind),
        ("rt-a", server_kind),
        ("rt-a", client_kind),
        ("rt-b", server_kind),
        ("rt-b", client_kind),
    ]
    assert len({s.trace_id for s in chain}) == 1
    traceparent = app.metadata[-1]["traceparent"]  # the app can continue the trace
    assert isinstance(traceparent, str) and traceparent.split("-")[1:3] == [chain[-1].trace_id, chain[-1].span_id]


async def test_the_callers_resiliency_timeout_and_breaker(mesh: Mesh, tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        f"app_id: c\napi_token: {API_TOKEN}\ninvoke_token: hop-t0ken\n"
        f"name_resolution: {{apps: {{b: [{mesh.b.grpc_address}]}}}}\n"
        "resiliency:\n  policies:\n    timeouts: {quick: 300ms}\n"
        "    circuitBreakers: {twoStrikes: {maxRequests: 1, timeout: 60s, trip: consecutiveFailures >= 2}}\n"
        "  targets:\n    apps:\n      b: {timeout: quick, circuitBreaker: twoStrikes}\n"
    )
    c = start_server("-c", str(tmp_path / "c.yaml"), data_dir=tmp_path / "c")
    try:
        async with echo_app(mesh.b_app_port) as app, grpc.aio.insecure_channel(c.grpc_address) as channel:
            # a call marked dapr-stream outlives the policy's timeout, as in Dapr
            bidi = channel.stream_stream(f"/{SERVICE}/Bidi")(metadata=(*TO_B, ("dapr-stream", "true")), timeout=10)
            await bidi.write(b"1")
            await asyncio.sleep(0.5)
            await bidi.write(b"2")
            assert [await bidi.read(), await bidi.read()] == [b"re:1", b"re:2"]
            await bidi.done_writing()
            assert await bidi.code() is grpc.StatusCode.OK
            with pytest.raises(grpc.aio.AioRpcError) as late:  # the policy's 300 ms, not the caller's 10 s
                await channel.unary_unary(f"/{SERVICE}/Slow")(b"", metadata=TO_B, timeout=10)
            assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            await asyncio.wait_for(app.cancelled.wait(), 10)
            with pytest.raises(grpc.aio.AioRpcError):  # the second failure in a row trips the breaker
                await channel.unary_unary(f"/{SERVICE}/Fail")(b"", metadata=TO_B, timeout=10)
            calls = len(app.metadata)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(f"/{SERVICE}/Unary")(b"", metadata=TO_B, timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "circuit breaker 'twoStrikes' is open" in (refused.value.details() or "")
            assert len(app.metadata) == calls  # refused without reaching the app
    finally:
        c.process.kill()
        c.process.wait()

"""Dapr's HTTP invoke API against what HTTP callers send, found by trying to break it: two runtimes
in process, ``a`` (no app) forwarding to ``b`` (an HTTP app that records every request as it came).
Each case runs on ``b`` calling its own app ("local") and on ``a`` through the hop ("remote")."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
import pytest
from aiohttp import web
from server_helpers import free_port
from yarl import URL

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime
from layotto.server.config import from_mapping

LIMIT = 64 * 1024  # max_message_bytes of both runtimes: the HTTP API's body limit too
GZIPPED = gzip.compress(b"squeezed " * 100, mtime=0)


@dataclass
class Seen:
    """The app's record: each request's raw target, headers and body; the slow handler's fate."""

    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    slow_started: asyncio.Event = field(default_factory=asyncio.Event)
    slow_cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def last(self) -> tuple[str, dict[str, str], bytes]:
        return self.requests[-1]


@dataclass
class Pair:
    a: Runtime
    b: Runtime
    seen: Seen

    def base(self, where: str) -> str:
        runtime = self.b if where == "local" else self.a
        return f"http://127.0.0.1:{runtime.http_port}/v1.0/invoke/b/method"


async def _record(seen: Seen, request: web.Request) -> web.StreamResponse:
    body = await request.read()
    seen.requests.append((request.raw_path, {k.lower(): v for k, v in request.headers.items()}, body))
    if request.path == "/slow":
        seen.slow_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.slow_cancelled.set()
            raise
    if request.path == "/gzip":  # an answer the app compressed itself, as the caller accepts
        return web.Response(body=GZIPPED, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    headers = {"Content-Type": "text/plain; charset=utf-8", "X-Answer": "naïve\tvalue"}
    return web.Response(body=b"ok", headers=headers)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    seen = Seen()

    async def record(request: web.Request) -> web.StreamResponse:
        return await _record(seen, request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, handler_cancellation=True)  # the app sees its caller going away
    await runner.setup()
    app_port, b_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", app_port).start()
    common = {"grpc_address": "127.0.0.1:0", "http_address": "127.0.0.1:0", "max_message_bytes": LIMIT}
    b_config = {"app_id": "b", "app_protocol": "http", "app_port": app_port, "data_dir": str(tmp_path / "b")}
    apps = {"b": [f"127.0.0.1:{b_port}"]}
    a_config = {"app_id": "a", "data_dir": str(tmp_path / "a"), "name_resolution": {"type": "static", "apps": apps}}
    try:
        async with (
            Runtime(from_mapping({**common, **b_config, "grpc_address": f"127.0.0.1:{b_port}"})) as b,
            Runtime(from_mapping({**common, **a_config})) as a,
        ):
            yield Pair(a, b, seen)
    finally:
        await runner.cleanup()


async def _chunks() -> AsyncIterator[bytes]:
    for part in (b"hel", b"lo"):
        yield part


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_connection_headers_and_chunked_bodies_stay_on_the_callers_connection(pair: Pair, where: str) -> None:
    """A chunked body's Transfer-Encoding went on beside the Content-Length of the app's request (its
    server answered 400), and on the hop HTTP/2 reset the stream over Upgrade or Keep-Alive (503)."""
    headers = {
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "s",
        "Upgrade": "websocket",
        "Keep-Alive": "timeout=5",
        "Proxy-Connection": "keep-alive",
        "X-Kept": "1",
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{pair.base(where)}/echo", data=_chunks(), headers=headers) as reply,
    ):
        assert reply.status == 200, await reply.text()
    _, got, body = pair.seen.last
    assert body == b"hello" and got["x-kept"] == "1"
    assert not {"x-hop-secret", "upgrade", "keep-alive", "proxy-connection", "transfer-encoding"} & set(got)


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_the_method_and_query_reach_the_app_as_the_caller_spelled_them(pair: Pair, where: str) -> None:
    """The method was decoded (a%2Fb became two segments, %3F began the query, %23 dropped the query
    string) and the query re-encoded (%20 became +, %2F became /); daprd passes both as they came."""
    query = "q=%26%3D%20+%2F&r=%E2%82%AC"
    async with aiohttp.ClientSession() as http:
        for method in ("a%2Fb", "a%3Fx=1", "a%23frag", "caf%C3%A9"):
            async with http.get(URL(f"{pair.base(where)}/{method}?{query}", encoded=True)) as reply:
                assert reply.status == 200
            assert pair.seen.last[0] == f"/{method}?{query}"
        by_header = URL(f"{pair.base(where).split('/v1.0')[0]}/x%2Fy/../z%3F?{query}", encoded=True)
        async with http.get(by_header, headers={"dapr-app-id": "b"}) as reply:
            assert reply.status == 200
        assert pair.seen.last[0] == f"/z%3F?{query}"  # dot segments removed, as daprd's path.Clean


async def test_a_grpc_methods_fragment_keeps_the_query_string(pair: Pair) -> None:
    extension = pb.HTTPExtension(verb=pb.HTTPExtension.GET, querystring="q=%20")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{pair.a.grpc_port}") as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for method, target in (("a#b", "/a?q=%20"), ("a?x=1", "/a?x=1&q=%20"), ("c d", "/c%20d?q=%20")):
            message = pb.CommonInvokeRequest(method=method, http_extension=extension)
            await stub.InvokeService(pb.InvokeServiceRequest(id="b", message=message), timeout=10)
            assert pair.seen.last[0] == target


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_content_types_are_neither_invented_nor_cut(pair: Pair, where: str) -> None:
    """A call without a body reached the app with aiohttp's Content-Type: application/octet-stream,
    and the app's answer lost its charset (a multipart answer would lose its boundary)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{pair.base(where)}/plain", skip_auto_headers=["Content-Type"]) as reply:
            assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "content-type" not in pair.seen.last[1]
        async with http.post(f"{pair.base(where)}/typed", headers={"Content-Type": "application/json"}) as reply:
            assert reply.status == 200
        assert pair.seen.last[1]["content-type"] == "application/json"


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_an_http_caller_going_away_cancels_the_call_down_to_the_app(pair: Pair, where: str) -> None:
    """The HTTP API has no deadline of its own: a caller that gave up left the call running (on both
    sidecars and in the app) until the app answered, however long."""
    async with aiohttp.ClientSession() as http:
        call = asyncio.create_task(http.get(f"{pair.base(where)}/slow"))
        await asyncio.wait_for(pair.seen.slow_started.wait(), 10)
        call.cancel()  # the connection closes
        await asyncio.gather(call, return_exceptions=True)
    await asyncio.wait_for(pair.seen.slow_cancelled.wait(), 10)


async def test_a_body_the_api_took_but_the_hop_cannot_carry_is_too_large_not_an_app_down(pair: Pair) -> None:
    """A body within the HTTP API's limit made, with the method and headers, a hop message over the
    limit: grpc refused to send it and the caller was told the app was unavailable (503)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{pair.base('local')}/echo", data=b"x" * (LIMIT - 8)) as reply:
            assert reply.status == 200  # the own HTTP app takes it as it is
        async with http.post(f"{pair.base('remote')}/echo", data=b"x" * (LIMIT - 8)) as reply:
            body = await reply.json()
            assert reply.status == 413 and body["details"][0]["reason"] == "PAYLOAD_TOO_LARGE", body
            assert body["message"].startswith("message: "), body
        async with http.post(f"{pair.base('remote')}/echo", data=b"x" * (LIMIT // 2)) as reply:
            assert reply.status == 200


async def test_headers_the_api_took_but_a_hop_cannot_carry_are_too_large_not_an_app_down(pair: Pair) -> None:
    """Headers within the HTTP API's limits (8 KiB each) went on as hop metadata over gRPC's 8 KiB:
    the callee sidecar answered 431 and the caller was told the app was unavailable (503)."""
    three = {f"x-big-{n}": "v" * 3000 for n in range(3)}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{pair.base('local')}/echo", headers=three) as reply:
            assert reply.status == 200  # the own HTTP app takes them
        async with http.get(f"{pair.base('remote')}/echo", headers=three) as reply:
            body = await reply.json()
            assert reply.status == 413 and body["details"][0]["reason"] == "PAYLOAD_TOO_LARGE", body
            assert body["message"].startswith("metadata: "), body
        two = dict(list(three.items())[:2])
        async with http.get(f"{pair.base('remote')}/echo", headers=two) as reply:
            assert reply.status == 200
        assert pair.seen.last[1]["x-big-1"] == "v" * 3000


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_headers_metadata_cannot_carry_reach_the_app_and_come_back(pair: Pair, where: str) -> None:
    """Non-ASCII or tab-holding values, and a name ending -bin, reached an own HTTP app but were
    dropped on the hop (gRPC text metadata is printable ASCII): so were the app's answer headers."""
    sent = {"X-Name": "café ☕", "X-Tab": "a\tb", "X-Thing-Bin": "plain text", "X-Plain": "p"}
    async with aiohttp.ClientSession() as http, http.get(f"{pair.base(where)}/echo", headers=sent) as reply:
        assert reply.status == 200
        assert reply.headers["X-Answer"] == "naïve\tvalue"
    got = pair.seen.last[1]
    assert {key: got.get(key.lower()) for key in sent} == sent


async def test_a_carrier_of_headers_that_is_no_list_of_pairs_is_invalid_argument(pair: Pair) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{pair.b.grpc_port}") as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        request = pb.InvokeServiceRequest(id="b", message=pb.CommonInvokeRequest(method="echo"))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.InvokeService(request, metadata=(("layotto-headers-bin", b'{"x": 1}'),), timeout=10)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert refused.value.details().startswith("metadata: layotto-headers-bin"), refused.value.details()
        carried = (("layotto-headers-bin", '[["x-name", "café"]]'.encode()),)
        await stub.InvokeService(request, metadata=carried, timeout=10)
        assert pair.seen.last[1]["x-name"] == "café"


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_a_head_answer_keeps_the_apps_content_length(pair: Pair, where: str) -> None:
    """A HEAD's Content-Length says how long the GET's body would be: it came back as 0."""
    async with aiohttp.ClientSession() as http, http.head(f"{pair.base(where)}/echo") as reply:
        assert reply.status == 200 and reply.headers["Content-Length"] == "2"
        assert await reply.read() == b""
    assert pair.seen.last[0] == "/echo"


@pytest.mark.parametrize("where", ["local", "remote"])
async def test_accept_encoding_and_the_encoded_answer_pass_as_they_are(pair: Pair, where: str) -> None:
    """The app saw aiohttp's own Accept-Encoding instead of the caller's (or of none), so it could
    compress an answer the caller cannot read."""
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(f"{pair.base(where)}/gzip", headers={"Accept-Encoding": "gzip;q=0.5, br"}) as reply:
            assert reply.status == 200 and reply.headers["Content-Encoding"] == "gzip"
            assert await reply.read() == GZIPPED
        assert pair.seen.last[1]["accept-encoding"] == "gzip;q=0.5, br"
        async with http.get(f"{pair.base(where)}/echo", skip_auto_headers=["Accept-Encoding"]) as reply:
            assert reply.status == 200
        assert "accept-encoding" not in pair.seen.last[1]

"""Service invocation through two sidecars, with real processes: `layotto serve` runtimes in child
processes, their apps (a gRPC app built with the SDK's SubscriberApp, an HTTP app with aiohttp)
served from this test's event loop.

Runtime ``a`` has no app and resolves ``b`` (gRPC app) and ``c`` (HTTP app) statically; the
etcd registry is tested in test_invocation_registry.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from server_helpers import ServerProcess, free_port, start_server

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
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from layotto.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc
from layotto.server import errors
from layotto.server.api.invoke import app_headers, to_invoke_request
from layotto.server.components.base import ConfigError
from layotto.server.components.nameresolution import create_resolver, parse_settings
from layotto.server.config import from_mapping
from layotto.server.runtime.invocation import InvokeRequest


@dataclass
class Mesh:
    a: ServerProcess
    b: ServerProcess
    c: ServerProcess
    b_app_port: int
    c_app_port: int


def _stop(*servers: ServerProcess) -> None:
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("mesh")
    b_app_port, c_app_port = free_port(), free_port()
    (root / "b.yaml").write_text(f"app_id: b\napp_callback_address: 127.0.0.1:{b_app_port}\n")
    (root / "c.yaml").write_text(f"app_id: c\napp_protocol: http\napp_port: {c_app_port}\n")
    b = start_server("-c", str(root / "b.yaml"), data_dir=root / "b")
    c = start_server("-c", str(root / "c.yaml"), data_dir=root / "c")
    (root / "a.yaml").write_text(
        "app_id: a\n"
        "name_resolution:\n"
        "  type: static\n"
        "  apps:\n"
        f"    b: [{b.grpc_address}]\n"
        f"    c: [{c.grpc_address}]\n"
        f"    ghost: [127.0.0.1:{free_port()}]\n"
    )
    a = start_server("-c", str(root / "a.yaml"), data_dir=root / "a")
    yield Mesh(a, b, c, b_app_port, c_app_port)
    _stop(a, b, c)


def grpc_app() -> tuple[SubscriberApp, list[Invocation], asyncio.Event]:
    """B's app: echo (headers back), sum (JSON), slow (sleeps; sets the event when cancelled)."""
    app, seen, cancelled = SubscriberApp(), [], asyncio.Event()

    @app.method("echo")
    async def echo(call: Invocation) -> InvokeResponse:
        seen.append(call)
        return InvokeResponse(b"echo:" + call.data, "text/plain", {"x-answer": "yes"})

    @app.method("sum")
    async def add(call: Invocation) -> dict[str, int]:
        return {"sum": sum(call.json())}

    @app.method("slow")
    async def slow(call: Invocation) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b"late"

    return app, seen, cancelled


@asynccontextmanager
async def http_app(port: int) -> AsyncIterator[list[web.Request]]:
    """C's app: /orders/{id} answers the verb, query, header and body it got; /missing is a 404."""
    seen: list[web.Request] = []

    async def orders(request: web.Request) -> web.Response:
        seen.append(request)
        body = await request.read()
        text = f"{request.method} {request.match_info['id']} {request.query_string} {request.headers.get('x-token')} "
        return web.Response(status=201, body=text.encode() + body, content_type="text/plain", headers={"x-c": "1"})

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such thing")

    app = web.Application()
    app.router.add_route("*", "/orders/{id}", orders)
    app.router.add_route("*", "/missing", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield seen
    finally:
        await runner.cleanup()


async def test_a_grpc_app_answers_through_both_sidecars(mesh: Mesh) -> None:
    app, seen, _ = grpc_app()
    async with app.serve(f"127.0.0.1:{mesh.b_app_port}"), RuntimeClient(mesh.a.grpc_address) as client:
        spoofed = {"dapr-caller-app-id": "evil", "layotto-caller-app-id": "evil"}  # the runtimes set these
        reply = await client.invoke("b", "echo", "hi", headers={"x-token": "t1", **spoofed})
        assert (reply.data, reply.content_type, reply.status) == (b"echo:hi", "text/plain", 200)
        assert reply.headers["x-answer"] == "yes"
        call = seen[-1]
        assert (call.method, call.content_type, call.caller_app_id) == ("echo", "text/plain", "a")
        assert call.headers["x-token"] == "t1" and "layotto-invoke-hop" not in call.headers
        assert "evil" not in call.headers.values()
        assert (await client.invoke("b", "sum", [1, 2, 3])).json() == {"sum": 6}
        big = os.urandom(5 * 1024 * 1024)  # bytes arrive exactly through both hops
        assert (await client.invoke("b", "echo", big, timeout=30)).data == b"echo:" + big
        replies = await asyncio.gather(*(client.invoke("b", "sum", [i, i]) for i in range(50)))
        assert [r.json()["sum"] for r in replies] == [2 * i for i in range(50)]  # each call gets its own answer
        async with grpc.aio.insecure_channel(mesh.a.grpc_address) as channel:  # a call without a deadline
            request = invoke_pb2.InvokeServiceRequest(id="b", message={"method": "echo", "data": {"value": b"x"}})
            assert (await dapr_pb2_grpc.DaprStub(channel).InvokeService(request)).data.value == b"echo:x"
        with pytest.raises(AppError) as unknown_method:
            await client.invoke("b", "nope")
        assert unknown_method.value.code == "UNIMPLEMENTED" and unknown_method.value.app_id == "b"
    async with app.serve(f"127.0.0.1:{mesh.b_app_port}"), RuntimeClient(mesh.b.grpc_address) as own:
        reply = await own.invoke("b", "echo", b"self", headers=spoofed)  # its own app id: straight to its app
        assert reply.data == b"echo:self" and seen[-1].caller_app_id == ""


async def test_an_http_app_gets_verb_querystring_headers_and_body(mesh: Mesh) -> None:
    async with http_app(mesh.c_app_port) as seen, RuntimeClient(mesh.a.grpc_address) as client:
        reply = await client.invoke(
            "c", "orders/7", b"body", verb="PUT", querystring="x=1&y=2", headers={"x-token": "t"}
        )
        assert reply.data == b"PUT 7 x=1&y=2 t body" and reply.status == 201
        assert reply.headers["x-c"] == "1" and reply.content_type.startswith("text/plain")
        assert seen[-1].headers["dapr-caller-app-id"] == "a"
        reply = await client.invoke("c", "orders/8", verb="GET")
        assert reply.data == b"GET 8  None "
        assert (await client.invoke("c", "orders/9", "x")).data.startswith(b"POST 9")  # NONE: POST
        with pytest.raises(AppError) as not_found:
            await client.invoke("c", "missing")
        assert not_found.value.http_status == 404 and not_found.value.code == "NOT_FOUND"
        assert "no such thing" in str(not_found.value)
        for method in ("orders/1 HTTP/1.1\r\nX-Evil: 1", "orders/\x00/x"):  # never reaches the request line
            with pytest.raises(InvalidArgument, match=r"^message\.method: "):
                await client.invoke("c", method)
        assert (await client.invoke("c", "orders/2", verb="GET")).status == 201  # the runtime is fine


async def test_failures_name_the_app(mesh: Mesh) -> None:
    async with RuntimeClient(mesh.a.grpc_address) as client:
        with pytest.raises(AppNotFound) as unknown:
            await client.invoke("nobody", "echo")
        assert "'nobody'" in str(unknown.value) and unknown.value.metadata["app_id"] == "nobody"
        with pytest.raises(AppUnavailable, match="'b'"):  # b's sidecar is up, its app is not
            await client.invoke("b", "echo")
        with pytest.raises(AppUnavailable, match="'c'"):
            await client.invoke("c", "orders/1")
        with pytest.raises(AppUnavailable, match="'ghost'"):  # no sidecar at the listed address
            await client.invoke("ghost", "echo")
        with pytest.raises(AppUnavailable, match="'a' is unavailable: its runtime has no app channel"):
            await client.invoke("a", "echo")  # its own app id, and it has no app


async def test_the_deadline_reaches_the_app_and_cancels_it(mesh: Mesh) -> None:
    app, _, cancelled = grpc_app()
    async with app.serve(f"127.0.0.1:{mesh.b_app_port}"), RuntimeClient(mesh.a.grpc_address) as client:
        await client.invoke("b", "echo", timeout=10)  # b's sidecar is connected to the app again
        with pytest.raises(DeadlineExceeded):
            await client.invoke("b", "slow", timeout=0.5)
        await asyncio.wait_for(cancelled.wait(), 10)  # the app's handler was cancelled, not left running


async def test_bad_input_is_refused_naming_the_field(mesh: Mesh) -> None:
    async with grpc.aio.insecure_channel(mesh.a.grpc_address) as channel:
        layotto = runtime_pb2_grpc.RuntimeStub(channel)
        dapr = dapr_pb2_grpc.DaprStub(channel)
        cases = [
            (layotto, runtime_pb2.InvokeServiceRequest(message=runtime_pb2.CommonInvokeRequest(method="m")), "id"),
            (layotto, runtime_pb2.InvokeServiceRequest(id="b"), "message.method"),
            (dapr, invoke_pb2.InvokeServiceRequest(message={"method": "m"}), "id"),
        ]
        bad_verb = runtime_pb2.InvokeServiceRequest(id="b", message={"method": "m", "http_extension": {"verb": 42}})
        cases.append((layotto, bad_verb, "message.http_extension.verb"))
        for stub, request, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.InvokeService(request, timeout=5)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert (refused.value.details() or "").startswith(f"{field}: "), refused.value.details()


DAPR_INVOKER = textwrap.dedent("""
    from dapr.clients import DaprClient

    with DaprClient() as client:
        reply = client.invoke_method("b", "echo", data=b"from dapr", content_type="text/plain")
        assert reply.data == b"echo:from dapr", reply.data
        assert reply.content_type == "text/plain", reply.content_type
    print("dapr invoke ok")
""")


async def test_dapr_python_sdk_invoke_method_in_grpc_mode(mesh: Mesh) -> None:
    app, seen, _ = grpc_app()
    env = {
        **os.environ,
        "DAPR_GRPC_ENDPOINT": mesh.a.grpc_address,
        "DAPR_HTTP_ENDPOINT": f"http://{mesh.a.http_address}",
        "DAPR_HEALTH_TIMEOUT": "10",
        "DAPR_API_METHOD_INVOCATION_PROTOCOL": "grpc",
    }
    async with app.serve(f"127.0.0.1:{mesh.b_app_port}"):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DAPR_INVOKER, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(child.communicate(), 90)
    assert child.returncode == 0, (out + err).decode()
    assert out.decode().strip().endswith("dapr invoke ok") and seen[-1].caller_app_id == "a"


DAPR_CALLEE = textwrap.dedent("""
    import sys
    from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse

    app = App()

    @app.method(name="hi")
    def hi(request: InvokeMethodRequest) -> InvokeMethodResponse:
        caller = dict(request.metadata).get("dapr-caller-app-id", [""])[0]
        return InvokeMethodResponse(b"dapr app says " + request.data + b" to " + caller.encode(), "text/plain")

    app.run(int(sys.argv[1]))
""")


async def test_a_dapr_app_answers_on_its_app_callback(mesh: Mesh) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DAPR_CALLEE, str(mesh.b_app_port), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        async with RuntimeClient(mesh.a.grpc_address) as client:
            loop = asyncio.get_running_loop()
            ends = loop.time() + 60
            while True:  # until the Dapr app is up
                try:
                    reply = await client.invoke("b", "hi", b"hello", timeout=10)
                    break
                except AppUnavailable:
                    assert loop.time() < ends and child.returncode is None, "the Dapr app did not come up"
                    await asyncio.sleep(0.3)
        assert reply.data == b"dapr app says hello to a" and reply.content_type == "text/plain"
    finally:
        child.kill()
        await child.wait()


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"name_resolution": {"type": "consul"}},
            "name_resolution.type: expected one of static, etcd, dns, got 'consul'",
        ),
        (
            {"name_resolution": {"apps": {"b": ["nowhere"]}}},
            "name_resolution.apps.b: expected HOST:PORT, got 'nowhere'",
        ),
        ({"name_resolution": {"colour": 1}}, "name_resolution.colour: unknown key (known: type, metadata, apps)"),
        (  # gRPC took it as port 34463 (99999 mod 65536): the calls went to whatever listened there
            {"name_resolution": {"apps": {"b": ["127.0.0.1:1", "127.0.0.1:99999"]}}},
            "name_resolution.apps.b: expected HOST:PORT, got '127.0.0.1:99999' (a port is 1-65535)",
        ),
        (
            {"name_resolution": {"apps": {"b": ["127.0.0.1:0"]}}},
            "name_resolution.apps.b: expected HOST:PORT, got '127.0.0.1:0' (a port is 1-65535)",
        ),
        ({"name_resolution": {"apps": {"b": ["[::1:5"]}}}, "name_resolution.apps.b: expected HOST:PORT, got '[::1:5'"),
        ({"name_resolution": {"apps": {"b": ["a b:5"]}}}, "name_resolution.apps.b: expected HOST:PORT, got 'a b:5'"),
        ({"app_protocol": "smtp"}, "app_protocol: expected one of grpc, http, got 'smtp'"),
        ({"app_port": 70000}, "app_port: must be between 0 and 65535, got 70000"),
    ],
)
def test_bad_invocation_config_is_one_line_naming_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        from_mapping(raw)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("resolution", "message"),
    [
        (
            {"metadata": {"endpoints": "127.0.0.1:2379"}},  # `type: etcd` forgotten: static is the default
            "name_resolution.metadata: type static takes no metadata (it lists addresses under apps);"
            " a registry or DNS needs type: etcd or dns",
        ),
        (
            {"type": "etcd", "metadata": {"endpoints": "127.0.0.1:2379"}, "apps": {"b": ["127.0.0.1:1"]}},
            "name_resolution.apps: only type static reads apps (type etcd finds the addresses itself)",
        ),
        (
            {"type": "dns", "apps": {"b": ["127.0.0.1:1"]}},
            "name_resolution.apps: only type static reads apps (type dns finds the addresses itself)",
        ),
    ],
    ids=["static-with-metadata", "etcd-with-apps", "dns-with-apps"],
)
def test_a_name_resolution_key_its_type_would_ignore_is_refused(resolution: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        from_mapping({"name_resolution": resolution})
    assert str(refused.value) == message


def test_a_resolver_s_metadata_error_names_the_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As every config error does: a reader of the one line knows which file to open."""
    from layotto.server.cli import main

    config = tmp_path / "r.yaml"
    config.write_text("name_resolution: {type: dns, metadata: {recordtype: A}}\n")
    listen = ["--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", str(tmp_path)]
    assert main(["serve", "-c", str(config), *listen]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"layotto: config error: {config}: name_resolution.metadata.recordtype: unknown key (known: server, domain,"
        " nameFormat, recordType, srvPrefix, port, timeoutInSeconds)"
    ]


def test_an_unknown_verb_is_named_with_the_verbs_known() -> None:
    call = InvokeRequest("b", "m", b"", "", "VERB_99", "", (), "", "", False, False, "")
    with pytest.raises(errors.InvalidArgument) as refused:
        call.validate()
    assert refused.value.message == (
        "message.http_extension.verb: unknown verb 'VERB_99'"
        " (known: NONE, GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH)"
    )


def test_a_hop_keeps_every_field_of_the_call() -> None:
    call = InvokeRequest(
        "b", "m", b"d", "text/plain", "PUT", "q=1", (("h", "v"),), "type/x", "", False, True, "old-token"
    )
    hop = call.as_hop("a", "token")
    assert hop == dataclasses.replace(call, caller_app_id="a", hop=True, hop_token="token")


@pytest.mark.parametrize("strip_trace", [False, True])
def test_the_call_metadata_splits_into_app_headers_and_hop_facts(strip_trace: bool) -> None:
    message = invoke_pb2.InvokeServiceRequest(id="b")
    message.message.method = "m"
    metadata = [
        ("X-Custom", "1"),
        ("traceparent", "00-01-02-01"),
        ("layotto-invoke-hop", "1"),
        ("Layotto-Caller-App-Id", "a"),
        ("layotto-raw-http-status", "1"),
        ("layotto-invoke-token", "t"),
        ("dapr-api-token", "secret"),
        ("grpc-accept-encoding", "gzip"),
        ("user-agent", "grpc"),
        ("x-bin", b"\x00"),
    ]
    request = to_invoke_request(message, metadata, strip_trace=strip_trace)
    assert request.headers == app_headers(metadata, strip_trace=strip_trace)
    assert request.headers == (("x-custom", "1"),) + (() if strip_trace else (("traceparent", "00-01-02-01"),))
    assert (request.hop, request.caller_app_id, request.raw_http_status, request.hop_token) == (True, "a", True, "t")
    not_a_hop = to_invoke_request(message, metadata[:2] + metadata[3:], strip_trace=strip_trace)
    assert (not_a_hop.hop, not_a_hop.caller_app_id, not_a_hop.raw_http_status) == (False, "", False)


def test_etcd_registry_metadata_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"name_resolution.metadata.endpoints: required"):
        create_resolver(parse_settings({"type": "etcd"}, "name_resolution"))
    with pytest.raises(ConfigError, match=r"ttlSeconds: must be between 2 and 86400, got 1"):
        create_resolver(parse_settings({"type": "etcd", "metadata": {"endpoints": "x:1", "ttlSeconds": 1}}, "n"))
    advertised = {"endpoints": "x:1", "advertiseAddress": "10.0.0.7:70000"}
    with pytest.raises(ConfigError, match=r"advertiseAddress: expected HOST:PORT, got '10.0.0.7:70000' \(a port"):
        create_resolver(parse_settings({"type": "etcd", "metadata": advertised}, "name_resolution"))


def test_the_cli_takes_the_app_protocol_and_port(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "layotto.server",
            "serve",
            "--app-protocol",
            "http",
            "--app-port",
            "8080",
            "--print-config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert '"app_protocol": "http"' in done.stdout and '"app_port": 8080' in done.stdout


# -- one trace through both sidecars ------------------------------------------------------------


async def test_one_trace_from_the_caller_through_both_sidecars_into_the_callee_app(tmp_path: Path) -> None:
    from layotto.tracing import Tracing, TracingSettings
    from layotto.tracing.testing import OtlpReceiver, ReceivedSpan

    server_kind, client_kind = 2, 3
    app, seen, _ = grpc_app()
    app_port, http_port = free_port(), free_port()
    with OtlpReceiver() as otlp:
        tracing = f"tracing: {{exporters: [otlp], otlp_endpoint: '{otlp.endpoint}', service_name: %s}}\n"
        (tmp_path / "b.yaml").write_text(f"app_id: b\napp_callback_address: 127.0.0.1:{app_port}\n" + tracing % "rt-b")
        (tmp_path / "c.yaml").write_text(f"app_id: c\napp_protocol: http\napp_port: {http_port}\n" + tracing % "rt-c")
        b = start_server("-c", str(tmp_path / "b.yaml"), data_dir=tmp_path / "b")
        c = start_server("-c", str(tmp_path / "c.yaml"), data_dir=tmp_path / "c")
        (tmp_path / "a.yaml").write_text(
            f"app_id: a\nname_resolution: {{apps: {{b: [{b.grpc_address}], c: [{c.grpc_address}]}}}}\n"
            + tracing % "rt-a"
        )
        a = start_server("-c", str(tmp_path / "a.yaml"), data_dir=tmp_path / "a")
        caller = Tracing(TracingSettings(exporters=("otlp",), service_name="caller", otlp_endpoint=otlp.endpoint))
        try:
            interceptors = caller.client_interceptors(a.grpc_address)
            async with (
                app.serve(f"127.0.0.1:{app_port}"),
                http_app(http_port) as http_seen,
                RuntimeClient(a.grpc_address, interceptors=interceptors) as client,
            ):
                await client.invoke("b", "echo", "traced", timeout=10)
                await client.invoke("c", "orders/1", timeout=10)
            caller.force_flush()
        finally:
            caller.shutdown()
            for server in (a, b, c):  # a runtime flushes its spans when it stops
                code, stderr = server.terminate()
                assert code == 0, stderr
        spans = otlp.wait_for(lambda found: len({(s.service, s.kind) for s in found}) >= 6)

    def one(name: str, kind: int, service: str) -> ReceivedSpan:
        found = [s for s in spans if s.name == name and s.kind == kind and s.service == service]
        assert len(found) == 1, f"one {service} span {name} ({kind}), found {found}"
        return found[0]

    invoke, hop = "spec.proto.runtime.v1.Runtime/InvokeService", "dapr.proto.runtime.v1.Dapr/InvokeService"
    callee_app = one("dapr.proto.runtime.v1.AppCallback/OnInvoke", client_kind, "rt-b")
    chain = [callee_app]
    while chain[0].parent_span_id:  # up from the callee sidecar's call of its app to the caller's root
        chain.insert(0, next(s for s in spans if s.span_id == chain[0].parent_span_id))
    assert [(s.service, s.kind, s.name) for s in chain] == [
        ("caller", client_kind, invoke),
        ("rt-a", server_kind, invoke),
        ("rt-a", client_kind, hop),
        ("rt-b", server_kind, hop),
        ("rt-b", client_kind, callee_app.name),
    ]
    assert len({s.trace_id for s in chain}) == 1
    traceparent = seen[-1].headers["traceparent"]  # the callee app can continue the trace
    assert traceparent.split("-")[1:3] == [callee_app.trace_id, callee_app.span_id]
    http_server = one(hop, server_kind, "rt-c")  # an HTTP app's parent is its sidecar's server span
    assert http_seen[-1].headers["traceparent"].split("-")[1:3] == [http_server.trace_id, http_server.span_id]


async def test_one_skywalking_trace_through_both_sidecars_into_the_callee_app(tmp_path: Path) -> None:
    """With the SkyWalking exporter, the callee app receives an ``sw8`` header of the caller sidecar's
    trace, whose parent is the callee sidecar's segment, and both sidecars report one trace id."""
    import base64

    from layotto.tracing.testing import SkyWalkingCollector

    app, seen, _ = grpc_app()
    app_port = free_port()
    with SkyWalkingCollector() as oap:
        tracing = f"tracing: {{exporters: [skywalking], skywalking_address: '{oap.address}', service_name: %s}}\n"
        (tmp_path / "b.yaml").write_text(f"app_id: b\napp_callback_address: 127.0.0.1:{app_port}\n" + tracing % "sw-b")
        b = start_server("-c", str(tmp_path / "b.yaml"), data_dir=tmp_path / "b")
        (tmp_path / "a.yaml").write_text(
            f"app_id: a\nname_resolution: {{apps: {{b: [{b.grpc_address}]}}}}\n" + tracing % "sw-a"
        )
        a = start_server("-c", str(tmp_path / "a.yaml"), data_dir=tmp_path / "a")
        try:
            async with app.serve(f"127.0.0.1:{app_port}"), RuntimeClient(a.grpc_address) as client:
                await client.invoke("b", "echo", "traced", timeout=10)
        finally:
            for server in (a, b):  # a runtime flushes its segments when it stops
                code, stderr = server.terminate()
                assert code == 0, stderr
        segments = oap.wait_for(lambda found: {s.service for s in found} >= {"sw-a", "sw-b"})

    sw8 = seen[-1].headers["sw8"].split("-")
    trace_id = base64.b64decode(sw8[1]).decode()
    parent_segment, parent_service = base64.b64decode(sw8[2]).decode(), base64.b64decode(sw8[4]).decode()
    assert parent_service == "sw-b", "the app's parent is its own sidecar"

    def segment_with(service: str, operation: str) -> Any:
        return next(s for s in segments if s.service == service and any(p.operationName == operation for p in s.spans))

    a_segment = segment_with("sw-a", "spec.proto.runtime.v1.Runtime/InvokeService")
    b_segment = segment_with("sw-b", "dapr.proto.runtime.v1.AppCallback/OnInvoke")
    assert a_segment.traceId == b_segment.traceId == trace_id, "one trace id from the caller sidecar to the app"
    assert parent_segment == b_segment.traceSegmentId
    (ref,) = next(s for s in b_segment.spans if s.spanId == 0).refs
    assert ref.parentTraceSegmentId == a_segment.traceSegmentId and ref.parentService == "sw-a"

"""Output bindings (http, redis, postgresql, mysql) through InvokeBinding on both wire APIs of a
running runtime, against real servers on loopback."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from aiohttp import web
from backends import address, require
from test_api import call_error, error_info

from layotto.proto.dapr.runtime.v1 import binding_pb2 as dapr_binding
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime
from layotto.server.components.base import ComponentContext, ConfigError
from layotto.server.components.bindings.mysql import driver_placeholders
from layotto.server.components.loader import load_components
from layotto.server.config import from_mapping

RELEASE = web.AppKey("release", asyncio.Event)
INJECTION = "'); DROP TABLE binding_rows; --"


async def http_target() -> tuple[web.AppRunner, str, list[dict[str, Any]]]:
    """A real HTTP server on loopback recording what it receives; /api/status/<n> answers status n."""
    received: list[dict[str, Any]] = []

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        received.append(
            {"method": request.method, "path": request.path, "headers": dict(request.headers), "body": body}
        )
        status = int(request.match_info["code"]) if "code" in request.match_info else 200
        return web.Response(status=status, body=b"echo:" + body, headers={"X-Seen": request.method})

    release = asyncio.Event()  # set when the test is done, so the server's shutdown need not wait

    async def never_answers(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app[RELEASE] = release
    app.router.add_route("*", "/api/never", never_answers)
    app.router.add_route("*", "/api/status/{code}", record)
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/api", received


@pytest.fixture
async def target() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    runner, url, received = await http_target()
    yield url, received
    runner.app[RELEASE].set()
    await runner.cleanup()


def bindings_config(tmp_path: Path, bindings: dict[str, Any]) -> Any:
    return from_mapping(
        {
            "data_dir": str(tmp_path),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "bindings": bindings,
        }
    )


@pytest.fixture
async def http_runtime(tmp_path: Path, target: tuple[str, list[dict[str, Any]]]) -> AsyncIterator[Runtime]:
    url, _ = target
    config = bindings_config(
        tmp_path,
        {
            "web": {"type": "http", "metadata": {"url": url}},
            "tick": {"type": "cron", "metadata": {"schedule": "@every 1h"}},
        },
    )
    async with Runtime(config) as rt:
        yield rt


def stubs(rt: Runtime) -> tuple[runtime_pb2_grpc.RuntimeStub, dapr_pb2_grpc.DaprStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}")
    return runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)


async def test_http_binding_on_both_apis_sends_method_path_headers_and_answers_status(
    http_runtime: Runtime, target: tuple[str, list[dict[str, Any]]]
) -> None:
    _, received = target
    layotto, dapr = stubs(http_runtime)
    answer = await layotto.InvokeBinding(
        pb.InvokeBindingRequest(
            name="web", operation="post", data=b'{"a":1}', metadata={"path": "/orders", "X-Trace": "t1", "lower": "no"}
        )
    )
    assert answer.data == b'echo:{"a":1}'
    assert answer.metadata["statusCode"] == "200" and answer.metadata["status"] == "200 OK"
    assert answer.metadata["X-Seen"] == "POST"
    sent = received[-1]
    assert (sent["method"], sent["path"], sent["body"]) == ("POST", "/api/orders", b'{"a":1}')
    assert sent["headers"]["X-Trace"] == "t1" and "lower" not in sent["headers"]
    assert sent["headers"]["Content-Type"] == "application/json; charset=utf-8"
    for operation in ("get", "put", "delete", "patch", "head", "options", "create"):
        reply = await dapr.InvokeBinding(
            dapr_binding.InvokeBindingRequest(name="web", operation=operation, data=b"x", metadata={"path": "p"})
        )
        method = "POST" if operation == "create" else operation.upper()
        assert received[-1]["method"] == method and reply.metadata["X-Seen"] == method
        assert received[-1]["body"] == (b"x" if method in ("POST", "PUT", "PATCH") else b"")


async def test_http_binding_non_2xx_fails_unless_the_request_says_not_to(http_runtime: Runtime) -> None:
    layotto, _ = stubs(http_runtime)
    request = pb.InvokeBindingRequest(name="web", operation="get", metadata={"path": "/status/404"})
    error = await call_error(layotto.InvokeBinding(request))
    assert "received status code 404" in (error.details() or "")
    request.metadata["errorIfNot2XX"] = "false"
    answer = await layotto.InvokeBinding(request)
    assert answer.metadata["statusCode"] == "404" and answer.metadata["status"] == "404 Not Found"


async def test_http_binding_answers_the_whole_of_a_large_response_body(http_runtime: Runtime) -> None:
    layotto, _ = stubs(http_runtime)
    body = bytes(range(256)) * 4096  # 1 MiB: more than one read of the socket
    answer = await layotto.InvokeBinding(pb.InvokeBindingRequest(name="web", operation="post", data=body))
    assert answer.data == b"echo:" + body


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        ({"X-Bad": "a\r\nInjected: 1"}, "metadata.X-Bad"),
        ({"Bad Header": "a"}, "metadata.Bad Header"),
        ({"path": "/x\r\nInjected: 1"}, "metadata.path"),
    ],
)
async def test_http_binding_refuses_header_and_path_injection_naming_the_key(
    http_runtime: Runtime, target: tuple[str, list[dict[str, Any]]], metadata: dict[str, str], field: str
) -> None:
    _, received = target
    layotto, _ = stubs(http_runtime)
    error = await call_error(
        layotto.InvokeBinding(pb.InvokeBindingRequest(name="web", operation="get", metadata=metadata))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(error).metadata["field"] == field
    assert received == []


async def test_unknown_operation_is_invalid_argument_listing_the_operations(http_runtime: Runtime) -> None:
    layotto, dapr = stubs(http_runtime)
    error = await call_error(layotto.InvokeBinding(pb.InvokeBindingRequest(name="web", operation="exec")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "operation: 'exec' is not an operation of binding 'web' (http); "
        "its operations: create, get, head, post, put, patch, delete, options, trace"
    )
    assert error_info(error).metadata["field"] == "operation"
    error = await call_error(dapr.InvokeBinding(dapr_binding.InvokeBindingRequest(name="web")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty: expected an operation" in (
        error.details() or ""
    )
    error = await call_error(dapr.InvokeBinding(dapr_binding.InvokeBindingRequest(name="tick", operation="create")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "is an input binding" in (error.details() or "")
    error = await call_error(dapr.InvokeBinding(dapr_binding.InvokeBindingRequest(name="nope", operation="get")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "configured: tick, web" in (error.details() or "")


async def test_redis_binding_create_get_delete_with_ttl(tmp_path: Path) -> None:
    require("redis")
    config = bindings_config(tmp_path, {"cache": {"type": "redis", "metadata": {"redisHost": address("redis")}}})
    key = f"binding-test-{uuid.uuid4().hex}"
    async with Runtime(config) as rt:
        layotto, dapr = stubs(rt)
        await layotto.InvokeBinding(
            pb.InvokeBindingRequest(name="cache", operation="create", data=b"\x00v1", metadata={"key": key})
        )
        got = await dapr.InvokeBinding(
            dapr_binding.InvokeBindingRequest(name="cache", operation="get", metadata={"key": key})
        )
        assert got.data == b"\x00v1"
        await layotto.InvokeBinding(pb.InvokeBindingRequest(name="cache", operation="delete", metadata={"key": key}))
        gone = await layotto.InvokeBinding(
            pb.InvokeBindingRequest(name="cache", operation="get", metadata={"key": key})
        )
        assert gone.data == b""
        await layotto.InvokeBinding(
            pb.InvokeBindingRequest(
                name="cache", operation="create", data=b"t", metadata={"key": key, "ttlInSeconds": "100"}
            )
        )
        binding = rt.components.find("bindings", "cache", "name")
        ttl = await binding._redis.client.ttl(key)  # type: ignore[attr-defined]
        assert 0 < ttl <= 100
        taken = await layotto.InvokeBinding(
            pb.InvokeBindingRequest(name="cache", operation="get", metadata={"key": key, "delete": "true"})
        )
        assert taken.data == b"t" and await binding._redis.client.exists(key) == 0  # type: ignore[attr-defined]
        error = await call_error(layotto.InvokeBinding(pb.InvokeBindingRequest(name="cache", operation="get")))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details() == (
            "metadata.key: required by the 'get' operation"
        )
        for ttl in ("0", "99999999999999999999", "9223372036854775"):  # the last: Redis's own "invalid expire time"
            for operation in ("create", "increment"):
                request = pb.InvokeBindingRequest(
                    name="cache", operation=operation, data=b"1", metadata={"key": key, "ttlInSeconds": ttl}
                )
                error = await call_error(layotto.InvokeBinding(request))
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (ttl, error.details())
                assert error_info(error).metadata["field"] == "metadata.ttlInSeconds"


def sql_request(operation: str, sql: str, params: list[Any] | None = None) -> pb.InvokeBindingRequest:
    metadata = {"sql": sql} if params is None else {"sql": sql, "params": json.dumps(params)}
    return pb.InvokeBindingRequest(name="db", operation=operation, metadata=metadata)


SQL_DIALECTS = {
    "postgresql": (
        lambda: {"connectionString": address("postgresql")},
        "CREATE TABLE IF NOT EXISTS {t} (id INT PRIMARY KEY, note TEXT)",
        "INSERT INTO {t} (id, note) VALUES ($1, $2)",
        "SELECT id, note FROM {t} WHERE note = $1",
    ),
    "mysql": (
        lambda: {"url": address("mysql")},
        "CREATE TABLE IF NOT EXISTS {t} (id INT PRIMARY KEY, note TEXT)",
        "INSERT INTO {t} (id, note) VALUES (?, ?)",
        "SELECT id, note FROM {t} WHERE note = ?",
    ),
}


@pytest.mark.parametrize("dialect", sorted(SQL_DIALECTS))
async def test_sql_bindings_bind_parameters_and_store_injection_strings_verbatim(tmp_path: Path, dialect: str) -> None:
    require(dialect)
    metadata, create, insert, select = SQL_DIALECTS[dialect]
    table = f"binding_rows_{uuid.uuid4().hex[:10]}"
    config = bindings_config(tmp_path, {"db": {"type": dialect, "metadata": metadata()}})
    async with Runtime(config) as rt:
        layotto, dapr = stubs(rt)
        await layotto.InvokeBinding(sql_request("exec", create.format(t=table)))
        try:
            notes = [INJECTION, "100% ? '?' \\' \"", "plain"]
            for i, note in enumerate(notes):
                answer = await layotto.InvokeBinding(sql_request("exec", insert.format(t=table), [i, note]))
                assert answer.metadata["rows-affected"] == "1" and answer.metadata["operation"] == "exec"
            for i, note in enumerate(notes):
                request = sql_request("query", select.format(t=table), [note])
                reply = await dapr.InvokeBinding(
                    dapr_binding.InvokeBindingRequest(name="db", operation="query", metadata=request.metadata)
                )
                rows = json.loads(reply.data)
                assert rows == ([[i, note]] if dialect == "postgresql" else [{"id": i, "note": note}])
                assert reply.metadata["sql"] == select.format(t=table) and "duration" in reply.metadata
            count = await layotto.InvokeBinding(sql_request("query", f"SELECT COUNT(*) FROM {table}"))
            assert json.loads(count.data)[0] in ([3], {"COUNT(*)": 3})
        finally:
            await layotto.InvokeBinding(sql_request("exec", f"DROP TABLE {table}"))
        bad = pb.InvokeBindingRequest(name="db", operation="query", metadata={"sql": "SELECT 1", "params": '{"a":1}'})
        error = await call_error(layotto.InvokeBinding(bad))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and (error.details() or "").startswith(
            "metadata.params: expected a JSON array"
        )
        error = await call_error(layotto.InvokeBinding(pb.InvokeBindingRequest(name="db", operation="exec")))
        assert error.details() == "metadata.sql: required by the 'exec' operation"
        await layotto.InvokeBinding(pb.InvokeBindingRequest(name="db", operation="close"))
        error = await call_error(layotto.InvokeBinding(sql_request("query", "SELECT 1")))
        assert "closed by a 'close' operation" in (error.details() or "")


SQL_BAD_PARAMS = {
    "postgresql": [
        ("SELECT $1::int, $2::int", "[1]"),  # fewer values than placeholders
        ("SELECT $1", '[{"a": 1}]'),  # an object
        ("SELECT $1::text", "[NaN]"),  # not JSON
        ("SELECT $1::text", "[1e400]"),  # no float holds it
        ("SELECT $1::text", '["a\\u0000b"]'),  # NUL in text
    ],
    "mysql": [
        ("SELECT ?, ?", "[1]"),
        ("SELECT ?", "[1, 2]"),
        ("SELECT 1", "[1]"),
        ("SELECT ?", '[{"a": 1}]'),
        ("SELECT ?", "[Infinity]"),
    ],
}


@pytest.mark.parametrize("dialect", sorted(SQL_DIALECTS))
async def test_sql_bindings_refuse_params_that_do_not_fit_naming_params(tmp_path: Path, dialect: str) -> None:
    require(dialect)
    config = bindings_config(tmp_path, {"db": {"type": dialect, "metadata": SQL_DIALECTS[dialect][0]()}})
    async with Runtime(config) as rt:
        layotto, _ = stubs(rt)
        for statement, params in SQL_BAD_PARAMS[dialect]:
            request = pb.InvokeBindingRequest(
                name="db", operation="query", metadata={"sql": statement, "params": params}
            )
            error = await call_error(layotto.InvokeBinding(request))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (statement, params, error.details())
            assert error_info(error).metadata["field"] == "metadata.params"
        answer = await layotto.InvokeBinding(sql_request("query", "SELECT 1"))  # the connections are still good
        assert json.loads(answer.data) in ([[1]], [{"1": 1}])


async def test_postgresql_binding_answers_nan_and_infinity_as_valid_json(tmp_path: Path) -> None:
    require("postgresql")
    config = bindings_config(tmp_path, {"db": {"type": "postgresql", "metadata": SQL_DIALECTS["postgresql"][0]()}})
    async with Runtime(config) as rt:
        layotto, _ = stubs(rt)
        statement = "SELECT 'NaN'::float8, '-Infinity'::float8, ARRAY['Infinity'::float8, 1.5]"
        answer = await layotto.InvokeBinding(sql_request("query", statement))
        rows = json.loads(answer.data, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
        assert rows == [["NaN", "-Infinity", ["Infinity", 1.5]]]


SQL_MANY_ROWS = {
    "postgresql": "SELECT g FROM generate_series(1, 100000) g",
    "mysql": "SELECT seq FROM seq_1_to_100000",  # MariaDB's sequence engine
}


@pytest.mark.parametrize("dialect", sorted(SQL_DIALECTS))
async def test_sql_query_rows_over_max_result_bytes_fail_and_leave_the_connection_usable(
    tmp_path: Path, dialect: str
) -> None:
    require(dialect)
    metadata = {**SQL_DIALECTS[dialect][0](), "maxResultBytes": "1000", "maxConns": "1"}
    async with Runtime(bindings_config(tmp_path, {"db": {"type": dialect, "metadata": metadata}})) as rt:
        layotto, _ = stubs(rt)
        error = await call_error(layotto.InvokeBinding(sql_request("query", SQL_MANY_ROWS[dialect])))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_info(error).metadata["field"] == "data"
        assert "1000-byte maxResultBytes" in (error.details() or "")
        answer = await layotto.InvokeBinding(sql_request("query", "SELECT 1"))  # the one connection is good again
        assert json.loads(answer.data) in ([[1]], [{"1": 1}])
        statement = "CREATE TEMPORARY TABLE no_rows (x INT)"  # a query of a statement without rows: none
        assert json.loads((await layotto.InvokeBinding(sql_request("query", statement))).data) == []


def test_mysql_placeholders_outside_quotes_become_the_drivers() -> None:
    assert driver_placeholders("SELECT ? , '?', \"?\", `a?` FROM t WHERE x LIKE '10%' AND y = ?") == (
        "SELECT %s , '?', \"?\", `a?` FROM t WHERE x LIKE '10%%' AND y = %s"
    )
    assert driver_placeholders("SELECT 'it\\'s ?' , ? -- a ? comment\n, ? /* ? */") == (
        "SELECT 'it\\'s ?' , %s -- a ? comment\n, %s /* ? */"
    )


async def test_mqtt3_binding_publishes_to_the_request_topic_or_the_components(tmp_path: Path) -> None:
    require("mqtt")
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    prefix = f"binding-test/{uuid.uuid4().hex}"
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    subscribed = asyncio.Event()
    subscriber.on_message = lambda c, u, m: loop.call_soon_threadsafe(received.put_nowait, (m.topic, m.payload))
    subscriber.on_subscribe = lambda *args: loop.call_soon_threadsafe(subscribed.set)
    host, _, port = address("mqtt").split("://")[-1].rpartition(":")
    subscriber.connect(host, int(port))
    subscriber.loop_start()
    try:
        subscriber.subscribe(f"{prefix}/#", qos=1)
        await asyncio.wait_for(subscribed.wait(), 10)
        metadata = {"url": address("mqtt"), "topic": f"{prefix}/default"}
        async with Runtime(bindings_config(tmp_path, {"out": {"type": "mqtt3", "metadata": metadata}})) as rt:
            layotto, dapr = stubs(rt)
            await layotto.InvokeBinding(pb.InvokeBindingRequest(name="out", operation="create", data=b"one"))
            await dapr.InvokeBinding(
                dapr_binding.InvokeBindingRequest(
                    name="out", operation="create", data=b"two", metadata={"topic": f"{prefix}/orders"}
                )
            )
            got = [await asyncio.wait_for(received.get(), 10) for _ in range(2)]
            assert sorted(got) == [(f"{prefix}/default", b"one"), (f"{prefix}/orders", b"two")]
            wildcard = pb.InvokeBindingRequest(name="out", operation="create", metadata={"topic": f"{prefix}/#"})
            error = await call_error(layotto.InvokeBinding(wildcard))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_info(error).metadata["field"] == "metadata.topic"
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()


async def test_rabbitmq_binding_publishes_persistent_messages_to_its_queue(tmp_path: Path) -> None:
    require("rabbitmq")
    import aio_pika

    queue_name = f"binding-test-{uuid.uuid4().hex}"
    metadata = {"host": address("rabbitmq"), "queueName": queue_name, "deleteWhenUnused": "false"}
    connection = await aio_pika.connect(address("rabbitmq"))
    try:
        async with Runtime(bindings_config(tmp_path, {"q": {"type": "rabbitmq", "metadata": metadata}})) as rt:
            layotto, _ = stubs(rt)
            await layotto.InvokeBinding(
                pb.InvokeBindingRequest(
                    name="q", operation="create", data=b"job", metadata={"ttlInSeconds": "60", "trace": "t1"}
                )
            )
            error = await call_error(
                layotto.InvokeBinding(
                    pb.InvokeBindingRequest(name="q", operation="create", metadata={"ttlInSeconds": "soon"})
                )
            )
            assert error.details() == "metadata.ttlInSeconds: expected a whole number, got 'soon'"
            for headers, field in (
                ({"big": "v" * 300_000}, "metadata"),
                ({"contentType": "x" * 300}, "metadata.contentType"),
            ):
                oversized = pb.InvokeBindingRequest(name="q", operation="create", metadata=headers)
                error = await call_error(layotto.InvokeBinding(oversized))
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(error).metadata["field"] == field
            await layotto.InvokeBinding(pb.InvokeBindingRequest(name="q", operation="create", data=b"still up"))
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name)
        message = await queue.get(timeout=5)
        assert message.body == b"job" and message.headers["trace"] == "t1"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT and message.expiration is not None
        await message.ack()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("type_name", "metadata", "message"),
    [
        ("cron", {"schedule": "every 1s"}, "bindings.c.metadata.schedule: 'every 1s' is not a schedule"),
        ("cron", {"schedule": "@every 1ns"}, "bindings.c.metadata.schedule: '@every 1ns' is under 100ms"),
        ("cron", {"schedule": "@every 99999999999h"}, "bindings.c.metadata.schedule: '@every 99999999999h' is more"),
        ("http", {"url": "ftp://x"}, "bindings.c.metadata.url: expected an http:// or https:// URL"),
        ("http", {"url": "http://x", "responseTimeout": "soon"}, "bindings.c.metadata.responseTimeout: 'soon'"),
        ("http", {"url": "http://x", "responseTimeout": "9999999h"}, "bindings.c.metadata.responseTimeout: '9999999h'"),
        ("mysql", {"url": "u@tcp(h:1)/d?tls=bogus"}, "bindings.c.metadata.url: tls='bogus' is not one of"),
        ("postgresql", {"connectionString": "host=x", "channel": "c" * 64}, "bindings.c.metadata.channel: 64 bytes"),
        ("ftp", {}, "bindings.c.type: unknown binding type 'ftp'"),
    ],
)
async def test_bad_binding_configs_name_the_field(
    tmp_path: Path, type_name: str, metadata: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        await load_components({"bindings": {"c": (type_name, metadata, ())}}, ComponentContext("app", tmp_path))
    assert str(caught.value).startswith(message)


async def test_http_binding_gives_up_after_its_response_timeout(
    tmp_path: Path, target: tuple[str, list[dict[str, Any]]]
) -> None:
    url, _ = target
    config = bindings_config(tmp_path, {"web": {"type": "http", "metadata": {"url": url, "responseTimeout": "200ms"}}})
    async with Runtime(config) as rt:
        layotto, _ = stubs(rt)
        request = pb.InvokeBindingRequest(name="web", operation="get", metadata={"path": "never"})
        error = await call_error(layotto.InvokeBinding(request, timeout=30))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "GET " in (error.details() or "")
        assert error_info(error).reason == "BACKEND_UNAVAILABLE"


async def test_binding_calls_are_backend_spans_of_the_invocation(
    tmp_path: Path, target: tuple[str, list[dict[str, Any]]]
) -> None:
    require("postgresql")
    import yaml
    from server_helpers import start_server

    from layotto.tracing.testing import OtlpReceiver, ReceivedSpan

    url, _ = target
    with OtlpReceiver() as otlp:
        config = {
            "tracing": {"exporters": ["otlp"], "otlp_endpoint": otlp.endpoint, "service_name": "layotto-runtime"},
            "bindings": {
                "db": {"type": "postgresql", "metadata": {"connectionString": address("postgresql")}},
                "web": {"type": "http", "metadata": {"url": url}},
            },
        }
        path = tmp_path / "runtime.yaml"
        path.write_text(yaml.safe_dump(config))
        server = await asyncio.to_thread(start_server, "-c", str(path), data_dir=tmp_path)
        try:
            async with grpc.aio.insecure_channel(server.grpc_address) as channel:
                stub = runtime_pb2_grpc.RuntimeStub(channel)
                await stub.InvokeBinding(sql_request("query", "SELECT $1::int", [7]))
                await stub.InvokeBinding(pb.InvokeBindingRequest(name="web", operation="get", metadata={"path": "x"}))
        finally:
            code, stderr = await asyncio.to_thread(server.terminate)
        assert code == 0, stderr

        def complete(spans: list[ReceivedSpan]) -> bool:
            names = {s.name for s in spans}
            return "postgresql SELECT" in names and "http GET" in names

        spans = await asyncio.to_thread(otlp.wait_for, complete)
    calls = [s for s in spans if s.name == "spec.proto.runtime.v1.Runtime/InvokeBinding"]
    for name in ("postgresql SELECT", "http GET"):
        backend = next(s for s in spans if s.name == name)
        assert backend.parent_span_id in {c.span_id for c in calls} and backend.kind == 3  # CLIENT

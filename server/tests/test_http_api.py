"""Dapr's HTTP API (v1.0 shapes) against a running runtime, with aiohttp's client: every endpoint,
its errors as daprd answers them (status + ``{"errorCode", "message"}``), and that the HTTP and
gRPC fronts share one runtime layer (what one writes, the other reads)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from test_pubsub import Subscriber, wait_for

from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, metadata_pb2, state_pb2
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.configuration import ConfigItem, Scope
from layotto.server.config import ComponentConfig
from layotto.server.http.errors import ANY_BLOCK, DAPR_CODES

MAX_BODY = 64 * 1024
SECRETS = {"db-password": "s3cret", "api": {"token": "t0k"}}


class Sidecar:
    """A runtime and an HTTP session on its HTTP port."""

    def __init__(self, runtime: Runtime, session: aiohttp.ClientSession) -> None:
        self.runtime = runtime
        self.http = session
        self.base = f"http://127.0.0.1:{runtime.http_port}"

    def url(self, path: str) -> str:
        return self.base + path

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, aiohttp.ClientResponse]:
        """(status, body as JSON when it is JSON else bytes, response)."""
        async with self.http.request(method, self.url(path), **kwargs) as response:
            raw = await response.read()
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return response.status, body, response

    async def error(self, method: str, path: str, status: int, code: str, **kwargs: Any) -> str:
        """Asserts a Dapr error answer; returns its message."""
        got, body, response = await self.call(method, path, **kwargs)
        assert (got, body["errorCode"] if isinstance(body, dict) else body) == (status, code), body
        assert response.content_type == "application/json"
        assert "Traceback" not in body["message"]
        return str(body["message"])


@pytest.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[Sidecar]:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(SECRETS))
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        app_id=f"app-{uuid.uuid4().hex[:8]}",
        max_message_bytes=MAX_BODY,
        components={
            "state": {"store": ComponentConfig("in-memory"), "sqlite": ComponentConfig("sqlite")},
            "pubsub": {"bus": ComponentConfig("in-memory")},
            "lock": {"locks": ComponentConfig("in-memory")},
            "config_store": {"config": ComponentConfig("in-memory")},
            "secret_store": {"vault": ComponentConfig("local.file", {"secretsFile": str(secrets_file)})},
            "bindings": {"disk": ComponentConfig("localstorage", {"rootPath": str(tmp_path / "disk")})},
        },
    )
    async with Runtime(config) as runtime, aiohttp.ClientSession() as session:
        yield Sidecar(runtime, session)


async def test_output_bindings_take_daprs_body_and_answer_data_with_metadata_headers(sidecar: Sidecar) -> None:
    """POST/PUT /v1.0/bindings/{name}: ``data`` goes to the binding as its JSON text (daprd's
    json.Marshal: a string keeps its quotes), the answer is the binding's data with each response
    metadata entry as a ``metadata.<name>`` header."""
    status, body, response = await sidecar.call(
        "POST",
        "/v1.0/bindings/disk",
        json={"operation": "create", "data": {"n": 1, "é": "x"}, "metadata": {"fileName": "a.json"}},
    )
    assert (status, body) == (200, {"fileName": "a.json"}) and response.headers["metadata.fileName"] == "a.json"
    status, body, _ = await sidecar.call(
        "PUT", "/v1.0/bindings/disk", json={"operation": "get", "metadata": {"fileName": "a.json"}}
    )
    assert (status, body) == (200, {"n": 1, "é": "x"})
    await sidecar.call(
        "POST", "/v1.0/bindings/disk", json={"operation": "create", "data": "hi", "metadata": {"fileName": "s"}}
    )
    status, raw, _ = await sidecar.call(
        "POST", "/v1.0/bindings/disk", json={"operation": "get", "metadata": {"fileName": "s"}}
    )
    assert (status, raw) == (200, "hi")  # stored as the JSON text "hi", quotes included, as daprd stores it
    status, _, _ = await sidecar.call(
        "POST", "/v1.0/bindings/disk", json={"operation": "delete", "metadata": {"fileName": "s"}}
    )
    assert status == 204


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "named"),
    [
        (
            "/v1.0/bindings/disk",
            {"operation": "fly"},
            400,
            "ERR_MALFORMED_REQUEST",
            "operation: 'fly' is not an operation",
        ),
        (
            "/v1.0/bindings/disk",
            {"operation": "get", "metadata": {"fileName": 3}},
            400,
            "ERR_MALFORMED_REQUEST",
            "metadata.fileName",
        ),
        ("/v1.0/bindings/disk", ["create"], 400, "ERR_MALFORMED_REQUEST", "body: expected an object"),
        ("/v1.0/bindings/nowhere", {"operation": "create"}, None, "ERR_INVOKE_OUTPUT_BINDING", "nowhere"),
        (
            "/v1.0/bindings/disk",
            {"operation": "get", "metadata": {"fileName": "missing"}},
            404,
            "ERR_INVOKE_OUTPUT_BINDING",
            "metadata.fileName",
        ),
    ],
)
async def test_output_binding_errors_name_the_field(
    sidecar: Sidecar, path: str, body: Any, status: int | None, *, code: str, named: str
) -> None:
    got, answer, _ = await sidecar.call("POST", path, json=body)
    assert answer["errorCode"] == code and named in answer["message"], answer
    assert got == status if status is not None else 400 <= got < 500, (got, answer)


@pytest.fixture
async def grpc_channel(sidecar: Sidecar) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.runtime.grpc_port}")
    yield channel
    await channel.close()


# -- state -------------------------------------------------------------------------------


async def test_state_save_get_delete_round_trip(sidecar: Sidecar) -> None:
    items = [{"key": "order", "value": {"id": 7, "items": ["a"]}}, {"key": "name", "value": "Bruce"}]
    assert (await sidecar.call("POST", "/v1.0/state/store", json=items))[0] == 204
    status, body, response = await sidecar.call("GET", "/v1.0/state/store/order")
    assert (status, body, response.content_type) == (200, {"id": 7, "items": ["a"]}, "application/json")
    assert response.headers["ETag"]
    status, raw, _ = await sidecar.call("GET", "/v1.0/state/store/name")
    assert (status, raw) == (200, "Bruce")  # stored as its JSON encoding, as daprd does
    assert (await sidecar.call("DELETE", "/v1.0/state/store/order"))[0] == 204
    status, body, _ = await sidecar.call("GET", "/v1.0/state/store/order")
    assert (status, body) == (204, None)


async def test_state_keys_may_hold_slashes(sidecar: Sidecar) -> None:
    await sidecar.call("POST", "/v1.0/state/store", json=[{"key": "a/b/c", "value": 1}])
    assert (await sidecar.call("GET", "/v1.0/state/store/a/b/c"))[:2] == (200, 1)


async def test_state_etags_and_first_write(sidecar: Sidecar) -> None:
    await sidecar.call("POST", "/v1.0/state/store", json=[{"key": "k", "value": 1}])
    etag = (await sidecar.call("GET", "/v1.0/state/store/k"))[2].headers["ETag"]
    stale = [{"key": "k", "value": 2, "etag": etag}]
    assert (await sidecar.call("POST", "/v1.0/state/store", json=stale))[0] == 204
    message = await sidecar.error("POST", "/v1.0/state/store", 409, "ERR_STATE_SAVE", json=stale)
    assert "body[0].etag" in message
    await sidecar.error(
        "POST", "/v1.0/state/store", 400, "ERR_STATE_SAVE", json=[{"key": "k", "value": 3, "etag": "x"}]
    )
    first = [{"key": "k", "value": 3, "options": {"concurrency": "first-write", "consistency": "strong"}}]
    await sidecar.error("POST", "/v1.0/state/store", 409, "ERR_STATE_SAVE", json=first)
    bad = [{"key": "k", "value": 3, "options": {"concurrency": "sometimes"}}]
    message = await sidecar.error("POST", "/v1.0/state/store", 400, "ERR_MALFORMED_REQUEST", json=bad)
    assert message.startswith("body[0].options.concurrency: must be one of first-write, last-write")
    await sidecar.error("DELETE", "/v1.0/state/store/k", 409, "ERR_STATE_DELETE", headers={"If-Match": etag})
    etag = (await sidecar.call("GET", "/v1.0/state/store/k"))[2].headers["ETag"]
    assert (await sidecar.call("DELETE", "/v1.0/state/store/k", headers={"If-Match": etag}))[0] == 204
    assert (await sidecar.call("GET", "/v1.0/state/store/k"))[0] == 204


async def test_state_ttl_is_reported_and_checked(sidecar: Sidecar) -> None:
    item = {"key": "t", "value": "v", "metadata": {"ttlInSeconds": "100"}}
    assert (await sidecar.call("POST", "/v1.0/state/store", json=[item]))[0] == 204
    response = (await sidecar.call("GET", "/v1.0/state/store/t"))[2]
    assert response.headers["metadata.ttlExpireTime"].endswith("Z")
    item["metadata"] = {"ttlInSeconds": "soon"}
    message = await sidecar.error("POST", "/v1.0/state/store", 400, "ERR_MALFORMED_REQUEST", json=[item])
    assert message.startswith("body[0].metadata.ttlInSeconds: expected an integer")


async def test_state_bulk_get(sidecar: Sidecar) -> None:
    await sidecar.call("POST", "/v1.0/state/store", json=[{"key": "a", "value": {"n": 1}}, {"key": "b", "value": "x"}])
    status, body, _ = await sidecar.call("POST", "/v1.0/state/store/bulk", json={"keys": ["a", "b", "nope"]})
    assert status == 200
    assert [(i["key"], i.get("data")) for i in body] == [("a", {"n": 1}), ("b", "x"), ("nope", None)]
    assert body[0]["etag"]
    message = await sidecar.error("POST", "/v1.0/state/store/bulk", 400, "ERR_MALFORMED_REQUEST", json={"keys": "a"})
    assert message.startswith("keys: expected an array")


async def test_state_transaction(sidecar: Sidecar) -> None:
    await sidecar.call("POST", "/v1.0/state/store", json=[{"key": "old", "value": 1}])
    operations = [
        {"operation": "upsert", "request": {"key": "new", "value": {"v": 2}}},
        {"operation": "delete", "request": {"key": "old"}},
    ]
    assert (await sidecar.call("POST", "/v1.0/state/store/transaction", json={"operations": operations}))[0] == 204
    assert (await sidecar.call("GET", "/v1.0/state/store/new"))[:2] == (200, {"v": 2})
    assert (await sidecar.call("GET", "/v1.0/state/store/old"))[0] == 204
    bad = {"operations": [{"operation": "merge", "request": {"key": "k"}}]}
    message = await sidecar.error("POST", "/v1.0/state/store/transaction", 400, "ERR_MALFORMED_REQUEST", json=bad)
    assert message.startswith("operations[0].operation: must be 'upsert' or 'delete'")


async def test_state_written_over_http_is_read_over_grpc(sidecar: Sidecar, grpc_channel: grpc.aio.Channel) -> None:
    await sidecar.call("POST", "/v1.0/state/sqlite", json=[{"key": "shared", "value": {"a": 1}}])
    dapr = dapr_pb2_grpc.DaprStub(grpc_channel)
    got = await dapr.GetState(state_pb2.GetStateRequest(store_name="sqlite", key="shared"))
    assert json.loads(got.data) == {"a": 1}
    await dapr.SaveState(
        state_pb2.SaveStateRequest(store_name="sqlite", states=[{"key": "bytes", "value": b"\x00\xff"}])
    )
    status, raw, response = await sidecar.call("GET", "/v1.0/state/sqlite/bytes")
    assert (status, raw, response.content_type) == (200, b"\x00\xff", "application/octet-stream")


@pytest.mark.parametrize(
    ("kwargs", "status", "problem"),
    [
        ({"data": b"[{not json", "headers": {"Content-Type": "application/json"}}, 400, "body: is not valid JSON"),
        ({"data": b"key=value"}, 400, "body: expected Content-Type application/json"),  # a form post
        ({"json": {"key": "k"}}, 400, "body: expected an array"),
        ({"json": [{"value": 1}]}, 400, "body[0].key: key is empty"),
        ({"json": [{"key": 5, "value": 1}]}, 400, "body[0].key: expected a string"),
        ({"json": [{"key": "k", "metadata": {"a": 1}}]}, 400, "body[0].metadata.a: expected a string"),
        ({"json": [{"key": "k", "value": "v" * MAX_BODY}]}, 413, "body:"),
    ],
)
async def test_state_bad_input_is_a_4xx_naming_the_problem(
    sidecar: Sidecar, kwargs: dict[str, Any], status: int, problem: str
) -> None:
    message = await sidecar.error("POST", "/v1.0/state/store", status, "ERR_MALFORMED_REQUEST", **kwargs)
    assert message.startswith(problem)


async def test_unknown_state_store(sidecar: Sidecar) -> None:
    message = await sidecar.error("GET", "/v1.0/state/nope/k", 400, "ERR_STATE_STORE_NOT_FOUND")
    assert "'nope' is not found (configured: sqlite, store)" in message
    await sidecar.error("POST", "/v1.0/state/nope", 400, "ERR_STATE_STORE_NOT_FOUND", json=[{"key": "k", "value": 1}])
    await sidecar.error("POST", "/v1.0/state/nope", 400, "ERR_STATE_STORE_NOT_FOUND", json=[])


async def test_state_query_over_http(sidecar: Sidecar) -> None:
    await sidecar.call("POST", "/v1.0/state/store", json=[{"key": "k1", "value": {"state": "CA"}}])
    query = {"filter": {"EQ": {"state": "CA"}}}
    status, body, _ = await sidecar.call("POST", "/v1.0-alpha1/state/store/query", json=query)
    assert (status, [r["key"] for r in body["results"]]) == (200, ["k1"])
    await sidecar.error("POST", "/v1.0-alpha1/state/nope/query", 400, "ERR_STATE_STORE_NOT_FOUND", json=query)


async def test_no_state_store_configured(tmp_path: Path) -> None:
    config = RuntimeConfig(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path))
    async with Runtime(config) as runtime, aiohttp.ClientSession() as session:
        await Sidecar(runtime, session).error("GET", "/v1.0/state/s/k", 500, "ERR_STATE_STORES_NOT_CONFIGURED")


# -- publish -----------------------------------------------------------------------------


async def test_publish_reaches_a_grpc_subscriber(sidecar: Sidecar, grpc_channel: grpc.aio.Channel) -> None:
    subscriber = await Subscriber(runtime_pb2_grpc.RuntimeStub(grpc_channel), "orders").start()
    try:
        status, _, _ = await sidecar.call("POST", "/v1.0/publish/bus/orders", json={"id": 1})
        assert status == 204
        await sidecar.call(
            "POST",
            "/v1.0/publish/bus/orders?metadata.rawPayload=true",
            data=b"raw!",
            headers={"Content-Type": "text/plain"},
        )
        await wait_for(lambda: len(subscriber.events) == 2)
        wrapped, raw = subscriber.events
        assert (json.loads(wrapped.data), wrapped.data_content_type) == ({"id": 1}, "application/json")
        assert raw.data == b"raw!"
        entries = [
            {"entryId": "1", "event": {"n": 1}, "contentType": "application/json"},
            {"entryID": "2", "event": "plain", "contentType": "text/plain"},  # names match ignoring case, as in daprd
        ]
        assert (await sidecar.call("POST", "/v1.0-alpha1/publish/bulk/bus/orders", json=entries))[0] == 204
        await wait_for(lambda: len(subscriber.events) == 4)
        assert [e.data for e in subscriber.events[2:]] == [b'{"n":1}', b"plain"]
    finally:
        await subscriber.stop()


async def test_publish_errors(sidecar: Sidecar) -> None:
    await sidecar.error("POST", "/v1.0/publish/nope/t", 400, "ERR_PUBSUB_NOT_FOUND", data=b"x")
    message = await sidecar.error(
        "POST", "/v1.0/publish/bus/t?metadata.ttlInSeconds=-5", 400, "ERR_MALFORMED_REQUEST", data=b"x"
    )
    assert message.startswith("metadata.ttlInSeconds:")
    await sidecar.error("POST", "/v1.0/publish/bus/t", 413, "ERR_MALFORMED_REQUEST", data=b"x" * (MAX_BODY + 1))
    twice = [{"entryId": "1", "event": 1}, {"entryId": "1", "event": 2}]
    message = await sidecar.error("POST", "/v1.0-alpha1/publish/bulk/bus/t", 400, "ERR_MALFORMED_REQUEST", json=twice)
    assert message.startswith("entries[1].entry_id: '1' is not unique")


# -- secrets, configuration, lock ----------------------------------------------------------


async def test_secrets(sidecar: Sidecar) -> None:
    assert (await sidecar.call("GET", "/v1.0/secrets/vault/db-password"))[:2] == (200, {"db-password": "s3cret"})
    assert (await sidecar.call("GET", "/v1.0/secrets/vault/bulk"))[:2] == (
        200,
        {"db-password": {"db-password": "s3cret"}, "api:token": {"api:token": "t0k"}},
    )
    await sidecar.error("GET", "/v1.0/secrets/vault/missing", 404, "ERR_SECRET_GET")
    await sidecar.error("GET", "/v1.0/secrets/nope/k", 400, "ERR_SECRET_STORE_NOT_FOUND")


async def test_configuration_get(sidecar: Sidecar) -> None:
    app_id = sidecar.runtime.config.app_id
    assert sidecar.runtime.services is not None
    store = sidecar.runtime.services.configuration.find("config")
    await store.save([ConfigItem(Scope(app_id), "color", "blue"), ConfigItem(Scope(app_id), "size", "L")])
    for version in ("v1.0", "v1.0-alpha1"):
        status, body, _ = await sidecar.call("GET", f"/{version}/configuration/config?key=color")
        assert status == 200
        assert list(body) == ["color"]
        assert body["color"]["value"] == "blue"
        assert body["color"]["version"]
    assert set((await sidecar.call("GET", "/v1.0/configuration/config"))[1]) == {"color", "size"}
    await sidecar.error("GET", "/v1.0/configuration/nope?key=a", 400, "ERR_CONFIGURATION_STORE_NOT_FOUND")


async def test_lock_and_unlock(sidecar: Sidecar) -> None:
    def body(owner: str, **more: Any) -> dict[str, Any]:
        return {"resourceId": "res", "lockOwner": owner, **more}

    lock, unlock = "/v1.0-alpha1/lock/locks", "/v1.0-alpha1/unlock/locks"
    assert (await sidecar.call("POST", lock, json=body("a", expiryInSeconds=30)))[:2] == (200, {"success": True})
    assert (await sidecar.call("POST", lock, json=body("b", expiryInSeconds=30)))[:2] == (200, {"success": False})
    assert (await sidecar.call("POST", unlock, json=body("b")))[:2] == (200, {"status": 2})
    assert (await sidecar.call("POST", unlock, json=body("a")))[:2] == (200, {"status": 0})
    assert (await sidecar.call("POST", unlock, json=body("a")))[:2] == (200, {"status": 1})
    message = await sidecar.error("POST", lock, 400, "ERR_MALFORMED_REQUEST", json=body("a", expiryInSeconds=0))
    assert message.startswith("expiryInSeconds: must be between 1 and")
    await sidecar.error(
        "POST", "/v1.0-alpha1/lock/nope", 400, "ERR_LOCK_STORE_NOT_FOUND", json=body("a", expiryInSeconds=9)
    )


# -- metadata, health, shutdown ------------------------------------------------------------


async def test_metadata_get_and_put_are_shared_with_grpc(sidecar: Sidecar, grpc_channel: grpc.aio.Channel) -> None:
    status, body, _ = await sidecar.call("GET", "/v1.0/metadata")
    assert (status, body["id"]) == (200, sidecar.runtime.config.app_id)
    assert {"name": "store", "type": "state.in-memory"} in [
        {k: c[k] for k in ("name", "type")} for c in body["components"]
    ]
    assert (await sidecar.call("PUT", "/v1.0/metadata/team", data=b"payments"))[0] == 204
    assert (await sidecar.call("GET", "/v1.0/metadata"))[1]["extended"]["team"] == "payments"
    got = await dapr_pb2_grpc.DaprStub(grpc_channel).GetMetadata(metadata_pb2.GetMetadataRequest())
    assert got.extended_metadata["team"] == "payments"
    message = await sidecar.error("PUT", "/v1.0/metadata/runtime", 400, "ERR_MALFORMED_REQUEST", data=b"x")
    assert message.startswith("key: 'runtime' is reported by the runtime itself")


async def test_healthz_and_shutdown(sidecar: Sidecar) -> None:
    assert (await sidecar.call("GET", "/v1.0/healthz"))[0] == 204
    assert (await sidecar.call("GET", "/v1.0/healthz/outbound"))[0] == 204
    assert (await sidecar.call("POST", "/v1.0/shutdown"))[0] == 204
    await asyncio.wait_for(sidecar.runtime.wait_for_shutdown(), 5)


async def test_no_call_starts_once_the_runtime_is_stopping(tmp_path: Path) -> None:
    config = RuntimeConfig(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path))
    runtime = Runtime(config)
    await runtime.start()
    answers: list[str] = []
    async with aiohttp.ClientSession() as session:
        sidecar = Sidecar(runtime, session)
        assert (await sidecar.call("GET", "/v1.0/metadata"))[0] == 200
        close = runtime.components.aclose

        async def close_after_a_call() -> None:  # stop() has begun; the HTTP port still listens
            runtime.components.aclose = close  # type: ignore[method-assign]
            answers.append(await sidecar.error("GET", "/v1.0/metadata", 503, "ERR_METADATA_GET"))
            await close()

        runtime.components.aclose = close_after_a_call  # type: ignore[method-assign]
        await runtime.stop(grace=0)
    assert answers == ["GET /v1.0/metadata: the runtime is shutting down and did not start this call; retry"]


async def test_another_method_is_405_and_an_unknown_path_404(sidecar: Sidecar) -> None:
    status, body, response = await sidecar.call("GET", "/v1.0/shutdown")
    assert (status, response.headers["Allow"], body["error"]) == (405, "POST", "GET not allowed")
    assert (await sidecar.call("PATCH", "/v1.0/state/store/k"))[0] == 405
    assert (await sidecar.call("GET", "/v1.0/nothing/here"))[0] == 404


def test_error_codes_are_dapr_codes_and_each_reason_is_mapped_once() -> None:
    assert all(code.startswith("ERR_") for code in [*DAPR_CODES.values(), *ANY_BLOCK.values()])
    assert not {reason for _, reason in DAPR_CODES} & set(ANY_BLOCK)

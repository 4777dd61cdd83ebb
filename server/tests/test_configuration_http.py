"""Configuration subscriptions over Dapr's HTTP API, delivered to an HTTP app as daprd does:
``GET /v1.0/configuration/{store}/subscribe`` answers the id, each change is POSTed to the app at
``/configuration/{store}/{key}``, ``GET .../{id}/unsubscribe`` ends it (over HTTP or gRPC)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from test_configuration import store_metadata
from test_http_app import FakeApp, runtime_config, wait_for

from layotto.proto.dapr.runtime.v1 import configuration_pb2, dapr_pb2_grpc
from layotto.server import Runtime
from layotto.server.components.configuration import ConfigItem, Scope
from layotto.server.config import ComponentConfig


@pytest.fixture(params=["in-memory", "redis"])
async def sidecar(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Runtime, FakeApp]]:
    app = FakeApp()
    config = runtime_config(tmp_path, app)
    metadata = store_metadata(request.param, uuid.uuid4().hex[:12])
    config.components["config_store"] = {"config": ComponentConfig(request.param, metadata)}
    async with app.serving(), Runtime(config) as runtime:
        yield runtime, app


async def get(runtime: Runtime, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{runtime.http_port}{path}") as r:
        return r.status, await r.json()


async def save(runtime: Runtime, key: str, content: str) -> None:
    assert runtime.services is not None
    store = runtime.services.configuration.find("config")
    await store.save([ConfigItem(Scope(runtime.config.app_id), key, content)])


async def test_changes_are_posted_to_the_app_until_unsubscribed(sidecar: tuple[Runtime, FakeApp]) -> None:
    runtime, app = sidecar
    status, body = await get(runtime, "/v1.0/configuration/config/subscribe?key=color")
    assert status == 200
    subscription = body["id"]
    await save(runtime, "size", "L")  # not subscribed to
    await save(runtime, "color", "blue")
    await wait_for(lambda: len(app.received["/configuration/config/color"]) == 1)
    (event,) = app.received["/configuration/config/color"]
    assert event["id"] == subscription
    assert list(event["items"]) == ["color"]
    assert event["items"]["color"]["value"] == "blue" and event["items"]["color"]["version"]
    assert "/configuration/config/size" not in app.received
    assert await get(runtime, f"/v1.0/configuration/config/{subscription}/unsubscribe") == (200, {"ok": True})
    status, body = await get(runtime, f"/v1.0/configuration/config/{subscription}/unsubscribe")
    assert (status, body["errorCode"]) == (400, "ERR_MALFORMED_REQUEST")
    await save(runtime, "color", "red")
    # a subscription made after the change above reports the next one: the ended one posts nothing more
    status, body = await get(runtime, "/v1.0-alpha1/configuration/config/subscribe?key=color")
    await save(runtime, "color", "green")
    await wait_for(lambda: len(app.received["/configuration/config/color"]) == 2)
    assert [e["items"]["color"]["value"] for e in app.received["/configuration/config/color"]] == ["blue", "green"]
    assert app.received["/configuration/config/color"][1]["id"] == body["id"]


async def test_grpc_unsubscribes_an_http_subscription(sidecar: tuple[Runtime, FakeApp]) -> None:
    runtime, _ = sidecar
    _, body = await get(runtime, "/v1.0/configuration/config/subscribe")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        request = configuration_pb2.UnsubscribeConfigurationRequest(store_name="config", id=body["id"])
        assert (await dapr_pb2_grpc.DaprStub(channel).UnsubscribeConfigurationAlpha1(request)).ok
    status, answer = await get(runtime, f"/v1.0/configuration/config/{body['id']}/unsubscribe")
    assert status == 400 and "no subscription" in answer["message"]


async def test_subscribe_errors(tmp_path: Path) -> None:
    config = dataclasses.replace(runtime_config(tmp_path, FakeApp()), app_protocol="grpc", app_port=0)
    config.components["config_store"] = {"config": ComponentConfig("in-memory")}
    async with Runtime(config) as without_app:
        status, body = await get(without_app, "/v1.0/configuration/nope/subscribe?key=a")
        assert (status, body["errorCode"]) == (400, "ERR_CONFIGURATION_STORE_NOT_FOUND")
        status, body = await get(without_app, "/v1.0/configuration/config/subscribe")
        assert (status, body["errorCode"]) == (503, "ERR_CONFIGURATION_SUBSCRIBE")
        assert "no HTTP app" in body["message"]

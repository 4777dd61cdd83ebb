"""Nothing a client sends can make an error answer outgrow gRPC's limit on trailing metadata:
names and app ids are capped at the API boundary (INVALID_ARGUMENT naming the field, without
echoing the name), and every message and ErrorInfo value is clipped where errors become
statuses (gRPC) and bodies (HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from test_api import call_error, error_info

from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import state_pb2 as dapr_state
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime
from layotto.server.errors import MAX_MESSAGE_BYTES, MAX_METADATA_VALUE_BYTES
from layotto.server.runtime.validation import MAX_NAME_BYTES

LONG_NAMES = ["n" * 20_000, "é" * 20_000, "n" * (MAX_NAME_BYTES + 1)]


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.layotto = runtime_pb2_grpc.RuntimeStub(channel)
        self.dapr = dapr_pb2_grpc.DaprStub(channel)


@pytest.fixture
async def stubs(runtime: Runtime) -> AsyncIterator[Stubs]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield Stubs(channel)


def assert_bounded(error: grpc.aio.AioRpcError) -> None:
    assert len(error.details().encode()) <= MAX_MESSAGE_BYTES, len(error.details())
    for value in error_info(error).metadata.values():
        assert len(value.encode()) <= MAX_METADATA_VALUE_BYTES


@pytest.mark.parametrize("name", LONG_NAMES, ids=["ascii", "utf8", "one-over"])
async def test_long_component_names_and_app_ids_are_refused_naming_the_field(stubs: Stubs, name: str) -> None:
    calls = {
        "store_name": [
            stubs.layotto.GetState(pb.GetStateRequest(store_name=name, key="k")),
            stubs.layotto.TryLock(pb.TryLockRequest(store_name=name, resource_id="r", lock_owner="o", expire=5)),
            stubs.layotto.GetConfiguration(pb.GetConfigurationRequest(store_name=name)),
            stubs.layotto.GetNextId(pb.GetNextIdRequest(store_name=name, key="k")),
            stubs.dapr.GetState(dapr_state.GetStateRequest(store_name=name, key="k")),
        ],
        "pubsub_name": [stubs.layotto.PublishEvent(pb.PublishEventRequest(pubsub_name=name, topic="t", data=b"x"))],
        "id": [
            stubs.layotto.InvokeService(pb.InvokeServiceRequest(id=name, message=pb.CommonInvokeRequest(method="m")))
        ],
    }
    for field, pending in calls.items():
        for call in pending:
            error = await call_error(call)  # was RESOURCE_EXHAUSTED: the name went into the trailers
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert error.details().startswith(f"{field}: ") and f"{MAX_NAME_BYTES}-byte limit" in error.details()
            assert error_info(error).metadata["field"] == field
            assert_bounded(error)


async def test_a_name_at_the_limit_is_looked_up(stubs: Stubs) -> None:
    name = "n" * MAX_NAME_BYTES
    error = await call_error(stubs.layotto.GetState(pb.GetStateRequest(store_name=name, key="k")))
    assert error_info(error).reason == "COMPONENT_NOT_FOUND"
    assert_bounded(error)


@pytest.mark.parametrize("char", ["k", "é"])
async def test_an_error_echoing_many_keys_is_clipped(stubs: Stubs, char: str) -> None:
    keys = [f"{i}-{char * 200}" for i in range(500)]  # every item refused for its etag: 500 echoed keys
    items = [pb.StateItem(key=key, value=b"v", etag=pb.Etag(value="not-an-etag")) for key in keys]
    error = await call_error(stubs.layotto.SaveState(pb.SaveStateRequest(store_name="in-memory", states=items)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()  # was RESOURCE_EXHAUSTED
    assert error.details().startswith("500 item(s) failed") and error.details().endswith("…")
    assert_bounded(error)
    failed = error_info(error).metadata["failed_keys"].split(",")
    assert failed and set(failed) <= set(keys)  # whole keys only, never a clipped one


async def test_http_error_bodies_are_clipped(runtime: Runtime) -> None:
    name = "n" * 5_000
    base = f"http://127.0.0.1:{runtime.http_port}/v1.0"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/state/{name}/k") as response:
            body = await response.json()
        assert response.status == 400
        assert body["message"].startswith("store_name: ")
        items = [{"key": f"{i}-{'k' * 400}", "value": "v", "etag": "not-an-etag"} for i in range(100)]
        async with session.post(f"{base}/state/in-memory", json=items) as response:
            body = await response.json()
        assert response.status >= 400
        assert len(body["message"].encode()) <= MAX_MESSAGE_BYTES
        for value in body["details"][0]["metadata"].values():
            assert len(value.encode()) <= MAX_METADATA_VALUE_BYTES

"""A response over the runtime's message limit (max_message_bytes, 16 MiB by default) is not
sent: the call answers RESOURCE_EXHAUSTED with reason PAYLOAD_TOO_LARGE naming the response
field, and nothing is logged as an error (gRPC's own failure had no reason and logged a traceback)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from test_api import call_error, error_info

from layotto.proto.dapr.runtime.v1 import configuration_pb2 as dapr_config
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import state_pb2 as dapr_state
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime

TEN_MIB = b"x" * (10 * 1024 * 1024)


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.layotto = runtime_pb2_grpc.RuntimeStub(channel)
        self.dapr = dapr_pb2_grpc.DaprStub(channel)


@pytest.fixture
async def stubs(runtime: Runtime) -> AsyncIterator[Stubs]:
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]  # the client takes whatever is sent
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}", options=options) as channel:
        yield Stubs(channel)


def assert_too_large(error: grpc.aio.AioRpcError, field: str) -> None:
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
    info = error_info(error)  # gRPC's own "Sent message larger than max" carried no details at all
    assert info.reason == "PAYLOAD_TOO_LARGE" and info.metadata["field"] == field
    assert error.details().startswith(f"{field}: the response would be ")


async def test_responses_over_the_limit_answer_payload_too_large(
    stubs: Stubs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    for key in ("a", "b"):
        item = pb.StateItem(key=key, value=TEN_MIB)
        await stubs.layotto.SaveState(pb.SaveStateRequest(store_name="in-memory", states=[item]))
        config = pb.ConfigurationItem(key=key, content=TEN_MIB.decode())
        await stubs.layotto.SaveConfiguration(pb.SaveConfigurationRequest(store_name="in-memory", items=[config]))
    bulk = pb.GetBulkStateRequest(store_name="in-memory", keys=["a", "b"])
    assert_too_large(await call_error(stubs.layotto.GetBulkState(bulk)), "items")
    dapr_bulk = dapr_state.GetBulkStateRequest(store_name="in-memory", keys=["a", "b"])
    assert_too_large(await call_error(stubs.dapr.GetBulkState(dapr_bulk)), "items")
    get = pb.GetConfigurationRequest(store_name="in-memory", keys=["a", "b"])
    assert_too_large(await call_error(stubs.layotto.GetConfiguration(get)), "items")
    dapr_get = dapr_config.GetConfigurationRequest(store_name="in-memory", keys=["a", "b"])
    assert_too_large(await call_error(stubs.dapr.GetConfiguration(dapr_get)), "items")
    subscribe = pb.SubscribeConfigurationRequest(store_name="in-memory", keys=["a", "b"])
    stream = stubs.layotto.SubscribeConfiguration(iter([subscribe]))
    assert_too_large(await call_error(stream.read()), "items")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    one = await stubs.layotto.GetState(pb.GetStateRequest(store_name="in-memory", key="a"))  # the runtime still serves
    assert len(one.data) == len(TEN_MIB)

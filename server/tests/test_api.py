"""The gRPC API of an in-process runtime: statuses, error details, Dapr metadata."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from layotto.proto.dapr.runtime.v1 import actors_pb2, binarystore_pb2, dapr_pb2_grpc, metadata_pb2
from layotto.proto.extension.v1.s3 import oss_pb2, oss_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            info = error_details_pb2.ErrorInfo()
            status.details[0].Unpack(info)
            return info
    raise AssertionError("no rich error details")


async def call_error(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


@pytest.fixture
async def stub(runtime: Runtime) -> runtime_pb2_grpc.RuntimeStub:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
    return runtime_pb2_grpc.RuntimeStub(channel)


async def test_unknown_store_names_field_and_choices(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    error = await call_error(stub.GetState(pb.GetStateRequest(store_name="redis", key="k")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "store_name: state store 'redis' is not found (configured: in-memory, sqlite)"
    info = error_info(error)
    assert (info.reason, info.metadata["field"]) == ("COMPONENT_NOT_FOUND", "store_name")


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (
            pb.SaveStateRequest(store_name="sqlite", states=[pb.StateItem(key="a"), pb.StateItem(key="")]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "states[1].key",
        ),
        (
            pb.SaveStateRequest(store_name="sqlite", states=[pb.StateItem(key="a", metadata={"ttlInSeconds": "1.5"})]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "states[0].metadata.ttlInSeconds",
        ),
        (
            pb.SaveStateRequest(store_name="sqlite", states=[pb.StateItem(key="a", metadata={"ttlInSeconds": "0"})]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "states[0].metadata.ttlInSeconds",
        ),
        (
            pb.SaveStateRequest(store_name="sqlite", states=[pb.StateItem(key="a", etag=pb.Etag(value="x1"))]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "states[0].etag",
        ),
        (
            pb.SaveStateRequest(store_name="sqlite", states=[pb.StateItem(key="new", etag=pb.Etag(value="77"))]),
            grpc.StatusCode.ABORTED,
            "states[0].etag",
        ),
    ],
)
async def test_save_state_bad_input(
    stub: runtime_pb2_grpc.RuntimeStub, request_: pb.SaveStateRequest, code: grpc.StatusCode, field: str
) -> None:
    error = await call_error(stub.SaveState(request_))
    assert error.code() == code
    assert error.details().startswith(field + ":")
    assert error_info(error).metadata["field"] == field
    assert (await stub.GetState(pb.GetStateRequest(store_name="sqlite", key="a"))).data == b""


@pytest.mark.parametrize("store", ["in-memory", "sqlite"])
async def test_a_first_write_conflict_without_an_etag_says_so(stub: runtime_pb2_grpc.RuntimeStub, store: str) -> None:
    first_write = pb.StateOptions(concurrency=pb.StateOptions.CONCURRENCY_FIRST_WRITE)
    save = pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key="fw", value=b"1", options=first_write)])
    await stub.SaveState(save)
    error = await call_error(stub.SaveState(save))
    assert error.code() == grpc.StatusCode.ABORTED
    assert error.details() == "states[0].options.concurrency: first-write conflict: key 'fw' already exists"
    info = error_info(error)
    assert (info.reason, info.metadata["key"]) == ("ETAG_MISMATCH", "fw")


async def test_transaction_validation_names_the_operation(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    ops = [
        pb.TransactionalStateOperation(operationType="upsert", request=pb.StateItem(key="a", value=b"1")),
        pb.TransactionalStateOperation(operationType="merge", request=pb.StateItem(key="b")),
    ]
    error = await call_error(
        stub.ExecuteStateTransaction(pb.ExecuteStateTransactionRequest(storeName="in-memory", operations=ops))
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("operations[1].operationType: must be 'upsert' or 'delete'")
    missing = [pb.TransactionalStateOperation(operationType="upsert")]
    error = await call_error(
        stub.ExecuteStateTransaction(pb.ExecuteStateTransactionRequest(storeName="in-memory", operations=missing))
    )
    assert error.details().startswith("operations[0].request: is missing")
    assert (await stub.GetState(pb.GetStateRequest(store_name="in-memory", key="a"))).data == b""


async def test_unserved_rpcs_answer_unimplemented_naming_the_rpc(runtime: Runtime) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        dapr = dapr_pb2_grpc.DaprStub(channel)
        error = await call_error(dapr.GetActorState(actors_pb2.GetActorStateRequest(actor_type="t", actor_id="i")))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "dapr.proto.runtime.v1.Dapr/GetActorState" in error.details()
        stream = dapr.GetBinaryFileAlpha1(binarystore_pb2.GetBinaryFileRequestAlpha1())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stream:
                pass
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "GetBinaryFileAlpha1" in caught.value.details()
        oss = oss_pb2_grpc.ObjectStorageServiceStub(channel)  # served: this runtime has no object store
        error = await call_error(oss.HeadObject(oss_pb2.HeadObjectInput(store_name="x", bucket="b", key="f")))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "object store" in error.details()


async def test_say_hello_echoes_data_and_validates_service(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    request = pb.SayHelloRequest(name="you")
    request.data.value = b"payload"
    answer = await stub.SayHello(request)
    assert (answer.hello, answer.data.value) == ("greetings from Layotto, you", b"payload")
    error = await call_error(stub.SayHello(pb.SayHelloRequest(service_name="nope")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("service_name:")


async def test_dapr_metadata_lists_components_with_capabilities(runtime: Runtime) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}")
    answer = await dapr_pb2_grpc.DaprStub(channel).GetMetadata(metadata_pb2.GetMetadataRequest())
    components = {(c.name, c.type): list(c.capabilities) for c in answer.registered_components}
    assert components[("sqlite", "state.sqlite")] == ["ETAG", "FIRST_WRITE", "QUERY_API", "TRANSACTIONAL", "TTL"]
    assert answer.id == "layotto"


async def test_dapr_set_metadata_attributes_show_in_get_metadata(runtime: Runtime) -> None:
    stub = dapr_pb2_grpc.DaprStub(grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}"))
    await stub.SetMetadata(metadata_pb2.SetMetadataRequest(key="owner", value="checkout-team"))
    await stub.SetMetadata(metadata_pb2.SetMetadataRequest(key="owner", value="payments-team"))
    extended = (await stub.GetMetadata(metadata_pb2.GetMetadataRequest())).extended_metadata
    assert extended["owner"] == "payments-team" and extended["runtime"] == "layotto-python"
    for key in ("", "runtime"):
        error = await call_error(stub.SetMetadata(metadata_pb2.SetMetadataRequest(key=key, value="x")))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(error).metadata["field"] == "key"


async def test_no_state_store_configured_is_failed_precondition(tmp_path: Path) -> None:
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"hellos": {"helloworld": ComponentConfig("helloworld")}},
    )
    async with Runtime(config) as rt:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}")
        error = await call_error(
            runtime_pb2_grpc.RuntimeStub(channel).GetState(pb.GetStateRequest(store_name="s", key="k"))
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no state store is configured" in error.details()


async def test_readiness_reports_a_broken_component(runtime: Runtime) -> None:
    import aiohttp

    url = f"http://127.0.0.1:{runtime.http_port}/actuator/health/readiness"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
        sqlite = next(c for block, c in runtime.components if c.name == "sqlite")
        await sqlite.close()  # the store loses its database
        async with session.get(url) as response:
            body = await response.json()
            assert response.status == 503
            assert body["status"] == "DOWN"
            assert body["components"]["state.sqlite"]["status"] == "DOWN"
            assert body["components"]["state.in-memory"]["status"] == "UP"


async def test_stop_drains_in_flight_calls(tmp_path: Path) -> None:
    """A call that is running when shutdown starts still completes."""
    import asyncio
    import dataclasses

    from layotto.server.components.registry import registry_for
    from layotto.server.components.state import StateEntry
    from layotto.server.components.state.inmemory import InMemoryStateStore

    class SlowStore(InMemoryStateStore):
        spec = dataclasses.replace(InMemoryStateStore.spec, type="test-slow")

        async def get(self, key: str) -> StateEntry | None:
            await asyncio.sleep(1.0)
            return StateEntry(key, b"slow", "1")

    registry_for("state").register(SlowStore)
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"state": {"slow": ComponentConfig("test-slow")}},
    )
    rt = Runtime(config)
    await rt.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}")
    call = asyncio.ensure_future(
        runtime_pb2_grpc.RuntimeStub(channel).GetState(pb.GetStateRequest(store_name="slow", key="k"))
    )
    await asyncio.sleep(0.3)
    await rt.stop(grace=5)
    assert (await call).data == b"slow"
    await channel.close()

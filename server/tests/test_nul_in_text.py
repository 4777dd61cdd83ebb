"""NUL (U+0000) in keys and lock owners, on every state store, lock store and sequencer, through
the API: a store that declares ``Limits.text_without_nul`` (PostgreSQL's TEXT columns) refuses it
with INVALID_ARGUMENT naming the field; every other store keeps the text as sent. Never INTERNAL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backends
import grpc
import pytest
from backends import REAL_LOCK_STORES, REAL_SEQUENCERS, REAL_STATE_STORES
from test_api import call_error
from test_state_limits import assert_invalid

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.registry import registry_for
from layotto.server.config import ComponentConfig

NUL_KEY = "a\x00b"


async def stub_for(block: str, store_type: str, tmp_path: Path) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    if store_type not in {"in-memory", "sqlite"}:
        backends.require(store_type)
    namespace = uuid.uuid4().hex[:12]
    if block == "state":
        metadata = backends.state_metadata(store_type, namespace)
    else:
        metadata = backends.lock_metadata(store_type, namespace)
        if block == "sequencer" and "tableName" in metadata:
            metadata["tableName"] = f"seq_{namespace}"
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={block: {"s": ComponentConfig(store_type, metadata)}},
    )
    async with Runtime(config) as runtime, grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


def refuses_nul(block: str, store_type: str) -> bool:
    return registry_for(block).spec(store_type).limits.text_without_nul


@pytest.fixture(params=["in-memory", "sqlite", *REAL_STATE_STORES])
async def state(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, runtime_pb2_grpc.RuntimeStub]]:
    async for stub in stub_for("state", request.param, tmp_path):
        yield request.param, stub


async def test_state_keys_with_nul(state: tuple[str, runtime_pb2_grpc.RuntimeStub]) -> None:
    store_type, stub = state
    save = pb.SaveStateRequest(store_name="s", states=[pb.StateItem(key=NUL_KEY, value=b"v\x00")])
    get = pb.GetStateRequest(store_name="s", key=NUL_KEY)
    if not refuses_nul("state", store_type):
        await stub.SaveState(save)
        assert (await stub.GetState(get)).data == b"v\x00"
        assert (await stub.GetState(pb.GetStateRequest(store_name="s", key="a"))).data == b""
        return
    # PostgreSQL answered INTERNAL "PostgreSQL text fields cannot contain NUL (0x00) bytes"
    assert_invalid(await call_error(stub.SaveState(save)), "states[0].key", "NUL", "postgresql")
    assert_invalid(await call_error(stub.GetState(get)), "key", "NUL")
    bulk = pb.GetBulkStateRequest(store_name="s", keys=["a", NUL_KEY])
    assert_invalid(await call_error(stub.GetBulkState(bulk)), "keys[1]", "NUL")
    delete = pb.DeleteStateRequest(store_name="s", key=NUL_KEY)
    assert_invalid(await call_error(stub.DeleteState(delete)), "key", "NUL")
    operation = pb.TransactionalStateOperation(operationType="upsert", request=pb.StateItem(key=NUL_KEY, value=b"t"))
    transaction = pb.ExecuteStateTransactionRequest(storeName="s", operations=[operation])
    assert_invalid(await call_error(stub.ExecuteStateTransaction(transaction)), "operations[0].request.key", "NUL")
    await stub.SaveState(pb.SaveStateRequest(store_name="s", states=[pb.StateItem(key="k", value=b"v\x00")]))
    assert (await stub.GetState(pb.GetStateRequest(store_name="s", key="k"))).data == b"v\x00"  # BYTEA values


@pytest.mark.parametrize("store_type", ["in-memory", *REAL_LOCK_STORES])
async def test_lock_resources_and_owners_with_nul(store_type: str, tmp_path: Path) -> None:
    async for stub in stub_for("lock", store_type, tmp_path):
        calls = {
            "resource_id": pb.TryLockRequest(store_name="s", resource_id=NUL_KEY, lock_owner="o", expire=5),
            "lock_owner": pb.TryLockRequest(store_name="s", resource_id="r", lock_owner=NUL_KEY, expire=5),
        }
        for field, request in calls.items():
            if not refuses_nul("lock", store_type):
                assert (await stub.TryLock(request)).success
                unlock = pb.UnlockRequest(
                    store_name="s", resource_id=request.resource_id, lock_owner=request.lock_owner
                )
                assert (await stub.Unlock(unlock)).status == pb.UnlockResponse.SUCCESS
                continue
            assert_invalid(await call_error(stub.TryLock(request)), field, "NUL")
            unlock = pb.UnlockRequest(store_name="s", resource_id=request.resource_id, lock_owner=request.lock_owner)
            assert_invalid(await call_error(stub.Unlock(unlock)), field, "NUL")
            keep = pb.LockKeepAliveRequest(
                store_name="s", resource_id=request.resource_id, lock_owner=request.lock_owner, expire=5
            )
            assert_invalid(await call_error(stub.LockKeepAlive(keep)), field, "NUL")


@pytest.mark.parametrize("store_type", ["in-memory", *REAL_SEQUENCERS])
async def test_sequencer_keys_with_nul(store_type: str, tmp_path: Path) -> None:
    async for stub in stub_for("sequencer", store_type, tmp_path):
        fresh = uuid.uuid4().hex  # redis and etcd counters outlive a run: a new key each time
        request = pb.GetNextIdRequest(store_name="s", key=f"{fresh}\x00b")
        if not refuses_nul("sequencer", store_type):
            assert (await stub.GetNextId(request)).next_id == 1
            assert (await stub.GetNextId(pb.GetNextIdRequest(store_name="s", key=fresh))).next_id == 1
            continue
        assert_invalid(await call_error(stub.GetNextId(request)), "key", "NUL")

"""Numbers and sizes at the State API boundary, on every state store and both wire APIs.

Out-of-range numbers (TTLs, enums, parallelism) and keys or values beyond a store's declared
limits are refused with INVALID_ARGUMENT naming the field, and a read never fails because
of what a write stored.
"""

from __future__ import annotations

import random
import sqlite3
import string
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomysql
import backends
import grpc
import pytest
from backends import REAL_STATE_STORES
from test_api import call_error, error_info

from layotto.proto.dapr.common.v1 import common_pb2 as dapr_common
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import state_pb2 as dapr_state
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.api.state import entry_metadata
from layotto.server.components.mysql_client import parse_connection_string
from layotto.server.components.registry import registry_for
from layotto.server.components.state import SetRequest, StateEntry, StateStore
from layotto.server.config import ComponentConfig
from layotto.server.errors import LayottoError
from layotto.server.runtime.validation import MAX_TTL_SECONDS

STORES = ["in-memory", "sqlite", *REAL_STATE_STORES]
ISSUE_TTL = "300000000000"  # year 11533: accepted before, then every read of the key failed
TWENTY_DIGITS = "12345678901234567890"


class Api:
    """One runtime with one state store ``s``, seen through both wire APIs."""

    def __init__(self, runtime: Runtime, store_type: str) -> None:
        self.runtime = runtime
        self.type = store_type
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{runtime.grpc_port}", options=[("grpc.max_receive_message_length", 16 * 1024 * 1024)]
        )
        self.layotto = runtime_pb2_grpc.RuntimeStub(self.channel)
        self.dapr = dapr_pb2_grpc.DaprStub(self.channel)

    def component(self) -> StateStore:
        found = next(c for block, c in self.runtime.components if block == "state" and c.name == "s")
        assert isinstance(found, StateStore)
        return found

    async def save(self, key: str, value: bytes = b"v", **metadata: str) -> None:
        await self.layotto.SaveState(
            pb.SaveStateRequest(store_name="s", states=[pb.StateItem(key=key, value=value, metadata=metadata)])
        )

    async def get(self, key: str) -> pb.GetStateResponse:
        return await self.layotto.GetState(pb.GetStateRequest(store_name="s", key=key))


def state_config(store_type: str, data_dir: Path, namespace: str) -> RuntimeConfig:
    metadata = backends.state_metadata(store_type, namespace)
    return RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(data_dir),
        components={"state": {"s": ComponentConfig(store_type, metadata)}},
    )


@pytest.fixture(params=STORES)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    if request.param in REAL_STATE_STORES:
        backends.require(request.param)
    async with Runtime(state_config(request.param, tmp_path, uuid.uuid4().hex[:12])) as runtime:
        client = Api(runtime, request.param)
        yield client
        await client.channel.close()


def assert_invalid(error: grpc.aio.AioRpcError, field: str, *words: str) -> None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(f"{field}: "), error.details()
    assert error_info(error).metadata["field"] == field
    for word in words:
        assert word in error.details()


# -- TTL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [ISSUE_TTL, TWENTY_DIGITS, str(MAX_TTL_SECONDS + 1), "0", "-2", "1_0", "+5"])
async def test_ttl_out_of_range_is_refused_and_reads_still_work(api: Api, ttl: str) -> None:
    await api.save("k", b"before")
    error = await call_error(api.save("k", b"after", ttlInSeconds=ttl))
    assert_invalid(error, "states[0].metadata.ttlInSeconds")
    assert (await api.get("k")).data == b"before"
    bulk = await api.layotto.GetBulkState(pb.GetBulkStateRequest(store_name="s", keys=["k"]))
    assert [(i.data, i.error) for i in bulk.items] == [(b"before", "")]
    # the same in a transaction and on the Dapr API, which name their own field
    operation = pb.TransactionalStateOperation(
        operationType="upsert", request=pb.StateItem(key="k", value=b"t", metadata={"ttlInSeconds": ttl})
    )
    error = await call_error(
        api.layotto.ExecuteStateTransaction(pb.ExecuteStateTransactionRequest(storeName="s", operations=[operation]))
    )
    assert_invalid(error, "operations[0].request.metadata.ttlInSeconds")
    item = dapr_common.StateItem(key="k", value=b"d", metadata={"ttlInSeconds": ttl})
    error = await call_error(api.dapr.SaveState(dapr_state.SaveStateRequest(store_name="s", states=[item])))
    assert_invalid(error, "states[0].metadata.ttlInSeconds")
    assert (await api.get("k")).data == b"before"


async def test_the_longest_ttl_is_served_and_read_back(api: Api) -> None:
    await api.save("k", ttlInSeconds=str(MAX_TTL_SECONDS))
    expire = (await api.get("k")).metadata["ttlExpireTime"]
    assert int(expire[:4]) - time.gmtime().tm_year in (9, 10)


async def test_a_stored_far_expiry_never_fails_a_read(api: Api) -> None:
    """What an older runtime stored (or a store holds) past year 9999 is read, not an INTERNAL error."""
    try:
        await api.component().set(SetRequest("poisoned", b"v", ttl_seconds=int(ISSUE_TTL)))
    except LayottoError:  # etcd (lease TTL) and MariaDB (DATETIME) cannot store it: nothing is stored
        assert api.type in ("etcd", "mysql")
        assert (await api.get("poisoned")).data == b""
        return
    got = await api.get("poisoned")
    assert got.data == b"v" and got.metadata["ttlExpireTime"].endswith("Z")
    bulk = await api.dapr.GetBulkState(dapr_state.GetBulkStateRequest(store_name="s", keys=["poisoned"]))
    assert [(i.data, i.error) for i in bulk.items] == [(b"v", "")]


@pytest.mark.parametrize("expire_at", [time.time() + int(ISSUE_TTL), 1e300, float("inf"), float("nan")])
def test_entry_metadata_never_raises(expire_at: float) -> None:
    stored = entry_metadata(StateEntry("k", b"", "1", expire_at))
    assert stored["ttlExpireTime"] == "9999-12-31T23:59:59Z"


async def test_sqlite_file_with_a_far_expiry_reads_after_restart(tmp_path: Path) -> None:
    """The issue's durable case: the row an older runtime wrote is served after a restart."""
    config = state_config("sqlite", tmp_path, "x")
    async with Runtime(config) as runtime:
        api = Api(runtime, "sqlite")
        await api.save("good", b"g")
        assert_invalid(await call_error(api.save("k", ttlInSeconds=ISSUE_TTL)), "states[0].metadata.ttlInSeconds")
        await api.channel.close()
    database = sqlite3.connect(tmp_path / "state.db")
    with database:  # what the runtime stored before the TTL was range-checked
        database.execute(
            "INSERT INTO state (key, value, etag, expire_at) VALUES ('k', x'76', 999, ?)", (time.time() + 3e11,)
        )
    database.close()
    async with Runtime(config) as runtime:
        api = Api(runtime, "sqlite")
        assert (await api.get("good")).data == b"g"
        assert (await api.get("k")).metadata["ttlExpireTime"] == "9999-12-31T23:59:59Z"
        await api.channel.close()


# -- enums and other numbers --------------------------------------------------------------------


async def test_unknown_concurrency_and_consistency_are_refused(api: Api) -> None:
    await api.save("k", b"before")
    bad_concurrency = pb.StateOptions(concurrency=3)  # type: ignore[arg-type]
    bad_consistency = pb.StateOptions(consistency=3)  # type: ignore[arg-type]
    save = pb.SaveStateRequest(store_name="s", states=[pb.StateItem(key="k", value=b"x", options=bad_concurrency)])
    assert_invalid(await call_error(api.layotto.SaveState(save)), "states[0].options.concurrency", "unknown value 3")
    save = pb.SaveStateRequest(store_name="s", states=[pb.StateItem(key="k", value=b"x", options=bad_consistency)])
    assert_invalid(await call_error(api.layotto.SaveState(save)), "states[0].options.consistency")
    delete = pb.DeleteStateRequest(store_name="s", key="k", options=bad_concurrency)
    assert_invalid(await call_error(api.layotto.DeleteState(delete)), "options.concurrency")
    bulk = pb.DeleteBulkStateRequest(store_name="s", states=[pb.StateItem(key="k", options=bad_consistency)])
    assert_invalid(await call_error(api.layotto.DeleteBulkState(bulk)), "states[0].options.consistency")
    operation = pb.TransactionalStateOperation(
        operationType="delete", request=pb.StateItem(key="k", options=bad_concurrency)
    )
    transaction = pb.ExecuteStateTransactionRequest(storeName="s", operations=[operation])
    assert_invalid(
        await call_error(api.layotto.ExecuteStateTransaction(transaction)), "operations[0].request.options.concurrency"
    )
    get = pb.GetStateRequest(store_name="s", key="k", consistency=7)  # type: ignore[arg-type]
    assert_invalid(await call_error(api.layotto.GetState(get)), "consistency")
    dapr_item = dapr_common.StateItem(key="k", value=b"x", options=dapr_common.StateOptions(concurrency=3))  # type: ignore[arg-type]
    dapr_save = dapr_state.SaveStateRequest(store_name="s", states=[dapr_item])
    assert_invalid(await call_error(api.dapr.SaveState(dapr_save)), "states[0].options.concurrency")
    assert (await api.get("k")).data == b"before"
    # the values the contract names are served
    first_write = pb.StateOptions(concurrency=pb.StateOptions.CONCURRENCY_LAST_WRITE, consistency=2)  # type: ignore[arg-type]
    save = pb.SaveStateRequest(store_name="s", states=[pb.StateItem(key="k", value=b"after", options=first_write)])
    await api.layotto.SaveState(save)
    assert (await api.get("k")).data == b"after"


@pytest.mark.parametrize("parallelism", [-1, 1001, 2**31 - 1])
async def test_bulk_get_parallelism_out_of_range_is_refused(api: Api, parallelism: int) -> None:
    request = pb.GetBulkStateRequest(store_name="s", keys=["k"], parallelism=parallelism)
    assert_invalid(await call_error(api.layotto.GetBulkState(request)), "parallelism", "between 0 and 1000")
    dapr_request = dapr_state.GetBulkStateRequest(store_name="s", keys=["k"], parallelism=parallelism)
    assert_invalid(await call_error(api.dapr.GetBulkState(dapr_request)), "parallelism")
    served = await api.layotto.GetBulkState(pb.GetBulkStateRequest(store_name="s", keys=["k"], parallelism=10))
    assert [i.key for i in served.items] == ["k"]


# -- store limits -------------------------------------------------------------------------------


def random_key(size: int) -> str:
    """A key that does not compress (PostgreSQL compresses long repetitive index entries)."""
    return "".join(random.choices(string.ascii_letters + string.digits, k=size))


async def test_keys_up_to_the_store_limit_are_served_and_longer_refused(api: Api) -> None:
    limit = registry_for("state").spec(api.type).limits.max_key_bytes
    if limit is None or limit > 1_000_000:  # no limit a request can reach: 100,000 characters work
        key = random_key(100_000)
        await api.save(key, b"long")
        assert (await api.get(key)).data == b"long"
        return
    at_limit = random_key(limit)
    await api.save(at_limit, b"at")
    assert (await api.get(at_limit)).data == b"at"
    over = random_key(limit + 1)
    error = await call_error(api.save(over))
    assert_invalid(error, "states[0].key", f"{limit + 1} bytes", f"{limit}-byte limit", api.type)
    over_in_utf8 = "é" * (limit // 2 + 1)  # fewer characters than the limit, more bytes
    assert_invalid(await call_error(api.save(over_in_utf8)), "states[0].key", f"{limit}-byte limit")
    assert_invalid(await call_error(api.get(over)), "key", f"{limit}-byte limit")
    bulk = pb.GetBulkStateRequest(store_name="s", keys=["a", over])
    assert_invalid(await call_error(api.layotto.GetBulkState(bulk)), "keys[1]")
    deletes = pb.DeleteBulkStateRequest(store_name="s", states=[pb.StateItem(key="a"), pb.StateItem(key=over)])
    assert_invalid(await call_error(api.layotto.DeleteBulkState(deletes)), "states[1].key")
    operation = pb.TransactionalStateOperation(operationType="upsert", request=pb.StateItem(key=over, value=b"t"))
    transaction = pb.ExecuteStateTransactionRequest(storeName="s", operations=[operation])
    assert_invalid(await call_error(api.layotto.ExecuteStateTransaction(transaction)), "operations[0].request.key")
    assert (await api.get(at_limit)).data == b"at"


async def test_keys_differing_only_by_trailing_spaces_are_separate_items(api: Api) -> None:
    await api.save("k", b"plain")
    assert (await api.get("k  ")).data == b""  # MySQL's PAD SPACE collation answered b"plain"
    await api.layotto.DeleteState(pb.DeleteStateRequest(store_name="s", key="k   "))
    assert (await api.get("k")).data == b"plain"
    await api.save("k ", b"spaced")
    assert (await api.get("k")).data == b"plain"
    assert (await api.get("k ")).data == b"spaced"


async def test_a_mysql_table_of_the_old_schema_gets_exact_keys(tmp_path: Path) -> None:
    backends.require("mysql")
    namespace = uuid.uuid4().hex[:12]
    table = f"state_{namespace}"
    params = parse_connection_string(backends.address("mysql"))
    del params["tls"]
    connection = await aiomysql.connect(autocommit=True, **params)
    async with connection.cursor() as cur:  # the schema before exact keys, with a row in it
        await cur.execute(
            f"CREATE TABLE `{table}` (id VARCHAR(700) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL "
            "PRIMARY KEY, value LONGBLOB NOT NULL, etag BIGINT UNSIGNED NOT NULL, expire_at DATETIME(6) NULL, "
            "updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), INDEX (expire_at)) ENGINE=InnoDB"
        )
        await cur.execute(f"INSERT INTO `{table}` (id, value, etag) VALUES ('k', 'old', 7)")
    try:
        async with Runtime(state_config("mysql", tmp_path, namespace)) as runtime:
            api = Api(runtime, "mysql")
            assert (await api.get("k")).data == b"old"
            assert (await api.get("k ")).data == b""
            await api.save("k ", b"spaced")
            assert (await api.get("k")).data == b"old"
            await api.channel.close()
    finally:
        async with connection.cursor() as cur:
            await cur.execute(f"DROP TABLE `{table}`")
        connection.close()


@pytest.mark.parametrize("store_type", ["mysql", "etcd"])  # the stores with a value limit below 16 MiB
async def test_values_over_the_store_limit_are_refused(store_type: str, tmp_path: Path) -> None:
    backends.require(store_type)
    async with Runtime(state_config(store_type, tmp_path, uuid.uuid4().hex[:12])) as runtime:
        api = Api(runtime, store_type)
        await values_over_the_limit_are_refused(api)
        await api.channel.close()


async def values_over_the_limit_are_refused(api: Api) -> None:
    limit = registry_for("state").spec(api.type).limits.max_value_bytes
    assert limit is not None
    await api.save("k", b"\x00" * limit)
    assert len((await api.get("k")).data) == limit
    error = await call_error(api.save("k", b"\x00" * (limit + 1)))
    assert_invalid(error, "states[0].value", f"{limit}-byte limit")
    assert len((await api.get("k")).data) == limit


async def test_etcd_transaction_limits(tmp_path: Path) -> None:
    backends.require("etcd")
    async with Runtime(state_config("etcd", tmp_path, uuid.uuid4().hex[:12])) as runtime:
        api = Api(runtime, "etcd")

        def upserts(count: int, value: bytes = b"v") -> pb.ExecuteStateTransactionRequest:
            items = [pb.StateItem(key=f"k{i}", value=value) for i in range(count)]
            ops = [pb.TransactionalStateOperation(operationType="upsert", request=item) for item in items]
            return pb.ExecuteStateTransactionRequest(storeName="s", operations=ops)

        await api.layotto.ExecuteStateTransaction(upserts(128))
        assert_invalid(await call_error(api.layotto.ExecuteStateTransaction(upserts(129))), "operations", "128")
        error = await call_error(api.layotto.ExecuteStateTransaction(upserts(2, b"x" * 1_000_000)))
        assert_invalid(error, "operations", "1565536-byte limit")
        await api.channel.close()

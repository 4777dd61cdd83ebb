"""local.file flattens JSON arrays as Dapr's local file secret store does: ``hosts`` =
``["a", "b"]`` serves ``hosts:0`` and ``hosts:1``, arrays of objects and nested arrays likewise,
in both modes, and on both wire APIs of a running runtime."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
from test_api import call_error
from test_secrets import store

from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, secret_pb2
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import ConfigError
from layotto.server.config import ComponentConfig

WITH_ARRAYS = {
    "hosts": ["a", "b"],
    "servers": [{"host": "h0", "port": 1}, {"host": "h1", "tags": ["x"]}],
    "matrix": [[1, 2], [True, None]],
    "db": {"replicas": ["r0", "r1"], "user": "app"},
    "token": "t",
    "empty": [],
}


def arrays_file(tmp_path: Path) -> str:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(WITH_ARRAYS))
    return str(path)


async def test_arrays_flatten_to_one_secret_per_element(tmp_path: Path) -> None:
    secrets = await store(tmp_path, "local.file", secretsFile=arrays_file(tmp_path))
    assert await secrets.get("hosts:0") == {"hosts:0": "a"}
    assert await secrets.get("hosts:1") == {"hosts:1": "b"}
    assert await secrets.get("hosts") is None
    assert await secrets.get("servers:1:tags:0") == {"servers:1:tags:0": "x"}
    assert await secrets.get("servers:0:port") == {"servers:0:port": "1"}
    assert await secrets.get("matrix:1:0") == {"matrix:1:0": "true"}
    assert await secrets.get("matrix:1:1") == {"matrix:1:1": "null"}
    assert sorted(await secrets.bulk_get()) == [
        "db:replicas:0",
        "db:replicas:1",
        "db:user",
        "hosts:0",
        "hosts:1",
        "matrix:0:0",
        "matrix:0:1",
        "matrix:1:0",
        "matrix:1:1",
        "servers:0:host",
        "servers:0:port",
        "servers:1:host",
        "servers:1:tags:0",
        "token",
    ]


async def test_array_indexes_take_the_nested_separator(tmp_path: Path) -> None:
    for separator in (".", "__"):
        secrets = await store(tmp_path, "local.file", secretsFile=arrays_file(tmp_path), nestedSeparator=separator)
        key = separator.join(("servers", "1", "tags", "0"))
        assert await secrets.get(key) == {key: "x"}


async def test_multi_valued_secrets_flatten_their_arrays_below_the_secret(tmp_path: Path) -> None:
    multi = await store(tmp_path, "local.file", secretsFile=arrays_file(tmp_path), multiValued="true")
    assert await multi.get("db") == {"replicas:0": "r0", "replicas:1": "r1", "user": "app"}
    assert await multi.get("servers") == {"0:host": "h0", "0:port": "1", "1:host": "h1", "1:tags:0": "x"}
    assert await multi.get("hosts") == {"0": "a", "1": "b"}
    assert await multi.get("token") == {"token": "t"}
    assert await multi.get("empty") == {}
    assert sorted(await multi.bulk_get()) == ["db", "empty", "hosts", "matrix", "servers", "token"]


@pytest.mark.parametrize("multi_valued", ["false", "true"])
async def test_two_values_for_one_key_stop_start_up_naming_the_key(tmp_path: Path, multi_valued: str) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"s": {"hosts:0": "x", "hosts": ["y"]}}))
    key = "s:hosts:0" if multi_valued == "false" else "hosts:0"
    with pytest.raises(ConfigError, match=rf"^secret_store\.s\.metadata\.secretsFile: .* two values for .*'{key}'"):
        await store(tmp_path, "local.file", secretsFile=str(path), multiValued=multi_valued)


async def test_a_file_nesting_beyond_the_parser_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text('{"deep": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ConfigError, match=r"^secret_store\.s\.metadata\.secretsFile: .*nests too deeply"):
        await store(tmp_path, "local.file", secretsFile=str(path))


async def test_array_elements_are_served_on_both_wire_apis(tmp_path: Path) -> None:
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={"secret_store": {"files": ComponentConfig("local.file", {"secretsFile": arrays_file(tmp_path)})}},
    )
    async with Runtime(config) as rt, grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as channel:
        dapr = dapr_pb2_grpc.DaprStub(channel)
        layotto = runtime_pb2_grpc.RuntimeStub(channel)
        got = await dapr.GetSecret(secret_pb2.GetSecretRequest(store_name="files", key="hosts:0"))
        assert dict(got.data) == {"hosts:0": "a"}
        got = await layotto.GetSecret(pb.GetSecretRequest(store_name="files", key="servers:1:host"))
        assert dict(got.data) == {"servers:1:host": "h1"}
        bulk = await dapr.GetBulkSecret(secret_pb2.GetBulkSecretRequest(store_name="files"))
        assert dict(bulk.data["hosts:1"].secrets) == {"hosts:1": "b"}
        whole_array = await call_error(dapr.GetSecret(secret_pb2.GetSecretRequest(store_name="files", key="hosts")))
        assert whole_array.code() == grpc.StatusCode.NOT_FOUND

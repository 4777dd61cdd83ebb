"""The Secrets building block: local.file and local.env stores, and GetSecret / GetBulkSecret
on both wire APIs of a running runtime."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from test_api import call_error, error_info

from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, secret_pb2
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import ComponentContext, ConfigError
from layotto.server.components.loader import load_components
from layotto.server.components.secretstore import SecretStore
from layotto.server.config import ComponentConfig, from_mapping, with_dapr_components
from layotto.server.dapr_manifests import load_manifests
from layotto.server.runtime.secret_scopes import SecretScope

SECRETS = {"conftestsecret": "abcd", "db": {"user": "app", "port": 5432, "tls": {"ca": "pem"}}}


async def store(tmp_path: Path, type_name: str, **metadata: str) -> SecretStore:
    loaded = await load_components(
        {"secret_store": {"s": (type_name, metadata, ())}}, ComponentContext("app", tmp_path)
    )
    found = loaded.find("secret_store", "s", "store_name")
    assert isinstance(found, SecretStore)
    return found


def secrets_file(tmp_path: Path) -> Path:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps(SECRETS))
    return path


async def test_local_file_flattens_nested_keys_into_one_secret_per_leaf(tmp_path: Path) -> None:
    secrets = await store(tmp_path, "local.file", secretsFile=str(secrets_file(tmp_path)))
    assert await secrets.get("conftestsecret") == {"conftestsecret": "abcd"}
    assert await secrets.get("db:tls:ca") == {"db:tls:ca": "pem"}
    assert await secrets.get("db:port") == {"db:port": "5432"}  # non-string leaves as JSON spells them
    assert await secrets.get("db") is None
    assert sorted(await secrets.bulk_get()) == ["conftestsecret", "db:port", "db:tls:ca", "db:user"]


async def test_local_file_separator_and_multi_valued_secrets(tmp_path: Path) -> None:
    path = str(secrets_file(tmp_path))
    dotted = await store(tmp_path, "local.file", secretsFile=path, nestedSeparator=".")
    assert await dotted.get("db.tls.ca") == {"db.tls.ca": "pem"}
    multi = await store(tmp_path, "local.file", secretsFile=path, multiValued="true")
    assert await multi.get("db") == {"user": "app", "port": "5432", "tls:ca": "pem"}
    assert await multi.get("conftestsecret") == {"conftestsecret": "abcd"}
    assert sorted(await multi.bulk_get()) == ["conftestsecret", "db"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("{not json", "is not valid JSON"), ("[1]", "must hold a JSON object")],
)
async def test_local_file_bad_file_is_one_config_error_naming_the_key(
    tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "secrets.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=rf"^secret_store\.s\.metadata\.secretsFile: .*{problem}"):
        await store(tmp_path, "local.file", secretsFile=str(path))


async def test_local_env_serves_variables_under_the_prefix_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTAPP_SECRET_token", "t0k")
    monkeypatch.setenv("TESTAPP_SECRET_other", "o")
    monkeypatch.setenv("UNRELATED_token", "no")
    secrets = await store(tmp_path, "local.env", prefix="TESTAPP_SECRET_")
    assert await secrets.get("token") == {"token": "t0k"}
    assert await secrets.get("UNRELATED_token") is None
    assert await secrets.bulk_get() == {"token": {"token": "t0k"}, "other": {"other": "o"}}
    unprefixed = await store(tmp_path, "local.env")
    assert await unprefixed.get("UNRELATED_token") == {"UNRELATED_token": "no"}


def test_secret_store_section_and_dapr_manifest_load(tmp_path: Path) -> None:
    config = from_mapping({"secret_store": {"vault": {"type": "local.file", "metadata": {"secretsFile": "s.json"}}}})
    assert config.components["secret_store"]["vault"] == ComponentConfig("local.file", {"secretsFile": "s.json"})
    (tmp_path / "secrets.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: local-secrets}\n"
        "spec:\n  type: secretstores.local.file\n  version: v1\n"
        "  metadata:\n  - {name: secretsFile, value: /run/secrets.json}\n  - {name: multiValued, value: true}\n"
    )
    assert load_manifests(tmp_path) == [
        ("secret_store", "local-secrets", "local.file", {"secretsFile": "/run/secrets.json", "multiValued": "true"}, ())
    ]


@pytest.fixture
async def runtime_with_secrets(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "secret_store": {"files": ComponentConfig("local.file", {"secretsFile": str(secrets_file(tmp_path))})}
        },
    )
    async with Runtime(config) as rt:
        yield rt


async def test_get_secret_on_both_wire_apis(runtime_with_secrets: Runtime) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{runtime_with_secrets.grpc_port}")
    layotto = runtime_pb2_grpc.RuntimeStub(channel)
    dapr = dapr_pb2_grpc.DaprStub(channel)
    got = await layotto.GetSecret(pb.GetSecretRequest(store_name="files", key="db:user"))
    assert dict(got.data) == {"db:user": "app"}
    got_dapr = await dapr.GetSecret(secret_pb2.GetSecretRequest(store_name="files", key="conftestsecret"))
    assert dict(got_dapr.data) == {"conftestsecret": "abcd"}
    for stub, request in (
        (layotto.GetBulkSecret, pb.GetBulkSecretRequest(store_name="files")),
        (dapr.GetBulkSecret, secret_pb2.GetBulkSecretRequest(store_name="files")),
    ):
        bulk = await stub(request)
        assert {name: dict(s.secrets) for name, s in bulk.data.items()} == {
            "conftestsecret": {"conftestsecret": "abcd"},
            "db:user": {"db:user": "app"},
            "db:port": {"db:port": "5432"},
            "db:tls:ca": {"db:tls:ca": "pem"},
        }


async def test_get_secret_bad_input_names_the_field(runtime_with_secrets: Runtime) -> None:
    stub = runtime_pb2_grpc.RuntimeStub(grpc.aio.insecure_channel(f"127.0.0.1:{runtime_with_secrets.grpc_port}"))
    missing = await call_error(stub.GetSecret(pb.GetSecretRequest(store_name="files", key="nope")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert missing.details() == "key: secret store 'files' has no secret 'nope'"
    assert error_info(missing).reason == "SECRET_NOT_FOUND"
    empty = await call_error(stub.GetSecret(pb.GetSecretRequest(store_name="files", key="")))
    assert (empty.code(), error_info(empty).metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "key")
    unknown = await call_error(stub.GetBulkSecret(pb.GetBulkSecretRequest(store_name="vault")))
    assert unknown.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.details() == "store_name: secret store 'vault' is not found (configured: files)"


async def test_no_secret_store_configured_is_failed_precondition(runtime: Runtime) -> None:
    stub = runtime_pb2_grpc.RuntimeStub(grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}"))
    error = await call_error(stub.GetSecret(pb.GetSecretRequest(store_name="s", key="k")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == "no secret store is configured in this runtime"


def greeter_config(tmp_path: Path, secret_ref: list[dict[str, str]]) -> RuntimeConfig:
    (tmp_path / "secrets.json").write_text(json.dumps({"greeting": "hello from a secret", "db": {"path": "x.db"}}))
    return from_mapping(
        {
            "data_dir": str(tmp_path),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "secret_store": {
                "files": {"type": "local.file", "metadata": {"secretsFile": str(tmp_path / "secrets.json")}}
            },
            "hellos": {"greeter": {"type": "helloworld", "secret_ref": secret_ref}},
        }
    )


async def test_layotto_secret_ref_fills_metadata_before_init(tmp_path: Path) -> None:
    config = greeter_config(tmp_path, [{"store_name": "files", "key": "greeting", "inject_as": "hello"}])
    assert config.to_dict()["hellos"]["greeter"]["secret_ref"] == [
        {"store_name": "files", "key": "greeting", "sub_key": "greeting", "inject_as": "hello"}
    ]
    async with Runtime(config) as rt:
        stub = runtime_pb2_grpc.RuntimeStub(grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}"))
        answer = await stub.SayHello(pb.SayHelloRequest(service_name="greeter", name="app"))
        assert answer.hello == "hello from a secret, app"


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        ({"store_name": "vault", "key": "greeting", "inject_as": "hello"}, "secret store 'vault' is not configured"),
        ({"store_name": "files", "key": "nope", "inject_as": "hello"}, "secret store 'files' has no secret 'nope'"),
        (
            {"store_name": "files", "key": "greeting", "sub_key": "other", "inject_as": "hello"},
            "secret 'greeting' of 'files' has no key 'other'",
        ),
    ],
)
async def test_an_unresolvable_secret_ref_is_one_config_error_naming_the_key(
    tmp_path: Path, ref: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=rf": hellos\.greeter\.metadata\.hello: {problem}$"):
        async with Runtime(greeter_config(tmp_path, [ref])):
            pass


def test_malformed_secret_ref_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^hellos\.g\.secret_ref\[0\]\.store_name: required"):
        from_mapping({"hellos": {"g": {"type": "helloworld", "secret_ref": [{"key": "k"}]}}})


async def test_dapr_secret_key_ref_reads_the_auth_secret_store(tmp_path: Path) -> None:
    manifests = tmp_path / "components"
    manifests.mkdir()
    (tmp_path / "secrets.json").write_text(json.dumps({"sqlite": {"file": str(tmp_path / "from-secret.db")}}))
    (manifests / "secrets.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: files}\n"
        f"spec:\n  type: secretstores.local.file\n  metadata:\n  - {{name: secretsFile, value: {tmp_path}/secrets.json}}\n"
        "  - {name: multiValued, value: true}\n"
    )
    (manifests / "state.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: db}\n"
        "spec:\n  type: state.sqlite\n  metadata:\n  - {name: connectionString, secretKeyRef: {name: sqlite, key: file}}\n"
        "auth: {secretStore: files}\n"
    )
    config = with_dapr_components(
        RuntimeConfig(
            grpc_address="127.0.0.1:0",
            http_address="127.0.0.1:0",
            data_dir=str(tmp_path),
            components_path=str(manifests),
            components={},
        )
    )
    async with Runtime(config) as rt:
        stub = runtime_pb2_grpc.RuntimeStub(grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}"))
        await stub.SaveState(pb.SaveStateRequest(store_name="db", states=[pb.StateItem(key="k", value=b"v")]))
        assert (await stub.GetState(pb.GetStateRequest(store_name="db", key="k"))).data == b"v"
    assert (tmp_path / "from-secret.db").exists()


async def test_a_secret_store_cannot_take_secret_refs(tmp_path: Path) -> None:
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "secret_store": {
                "env": {
                    "type": "local.env",
                    "secret_ref": [{"store_name": "env", "key": "PREFIX", "inject_as": "prefix"}],
                }
            },
        }
    ).with_overrides(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0")
    with pytest.raises(
        ConfigError, match=r": secret_store\.env: a secret store cannot take its metadata from secret stores$"
    ):
        async with Runtime(config):
            pass


# -- secret scopes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "readable"),
    [
        (SecretScope("s"), {"a", "b", "c"}),
        (SecretScope("s", default_allow=False), set()),
        (SecretScope("s", denied=frozenset({"b"})), {"a", "c"}),
        (SecretScope("s", default_allow=False, allowed=frozenset({"a"})), {"a"}),
        (SecretScope("s", allowed=frozenset({"a"}), denied=frozenset({"a", "b"})), {"a"}),  # allowed comes first
    ],
)
def test_a_scope_decides_like_dapr(scope: SecretScope, readable: set[str]) -> None:
    assert {name for name in ("a", "b", "c") if scope.allows(name)} == readable


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"defaultAccess": "deny"}, r"secret_scopes\[0\]\.storeName: required"),
        ({"storeName": "s", "defaultAccess": "maybe"}, r"secret_scopes\[0\]\.defaultAccess: expected allow or deny"),
        ({"storeName": "s", "allowedSecrets": "a"}, r"secret_scopes\[0\]\.allowedSecrets: expected a list"),
        ({"storeName": "s", "allowed": ["a"]}, r"secret_scopes\[0\]\.allowed: unknown key"),
    ],
)
def test_bad_secret_scopes_name_the_key(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{problem}"):
        from_mapping({"secret_scopes": [raw]})


async def test_scoped_store_answers_permission_denied_and_hides_the_rest_from_bulk(tmp_path: Path) -> None:
    path = secrets_file(tmp_path)
    config = from_mapping(
        {
            "secret_store": {"files": {"type": "local.file", "metadata": {"secretsFile": str(path)}}},
            "secret_scopes": [{"storeName": "files", "defaultAccess": "deny", "allowedSecrets": ["conftestsecret"]}],
        }
    ).with_overrides(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path))
    assert config.to_dict()["secret_scopes"][0]["allowedSecrets"] == ["conftestsecret"]
    async with Runtime(config) as rt:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}")
        layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
        allowed = await layotto.GetSecret(pb.GetSecretRequest(store_name="files", key="conftestsecret"))
        assert dict(allowed.data) == {"conftestsecret": "abcd"}
        denied = await call_error(dapr.GetSecret(secret_pb2.GetSecretRequest(store_name="files", key="db:user")))
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        assert denied.details() == "key: secret 'db:user' of secret store 'files' is not allowed by its secret scope"
        assert error_info(denied).reason == "SECRET_ACCESS_DENIED"
        bulk = await layotto.GetBulkSecret(pb.GetBulkSecretRequest(store_name="files"))
        assert list(bulk.data) == ["conftestsecret"]


def test_dapr_configuration_manifest_scopes_secrets(tmp_path: Path) -> None:
    (tmp_path / "appconfig.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: appconfig}\n"
        "spec:\n  tracing: {samplingRate: '1'}\n  secrets:\n    scopes:\n"
        "    - {storeName: vault, defaultAccess: deny, allowedSecrets: [db-password]}\n"
    )
    config = with_dapr_components(RuntimeConfig(components_path=str(tmp_path)))
    assert config.secret_scopes == (SecretScope("vault", default_allow=False, allowed=frozenset({"db-password"})),)

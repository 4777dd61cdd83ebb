"""Key stores of the crypto building block: config sections and Dapr manifests naming them, a
jwks file rotating without a restart, bad JWKS, and keys kept in a secret store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from crypto_keys import RSA_PEM, oct_jwk
from test_api import call_error, error_info
from test_cryption import dapr, dapr_decrypt, dapr_encrypt, layotto

from layotto.proto.dapr.runtime.v1 import metadata_pb2
from layotto.proto.extension.v1.cryption import cryption_pb2
from layotto.server import Runtime, RuntimeConfig
from layotto.server.components.base import ComponentContext, ConfigError
from layotto.server.components.crypto import KeyStore
from layotto.server.components.loader import load_components
from layotto.server.config import ComponentConfig, from_mapping, with_dapr_components


def test_config_sections_and_dapr_manifests_name_key_stores(tmp_path: Path) -> None:
    layotto_file = from_mapping({"cryption": {"keys": {"type": "local", "metadata": {"path": "/k"}}}})
    assert layotto_file.components["crypto"]["keys"].type == "local"
    (tmp_path / "jwks.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: published}\n"
        "spec: {type: crypto.dapr.jwks, version: v1, metadata: [{name: jwks, value: '{\"keys\": []}'}]}\n"
    )
    loaded = with_dapr_components(RuntimeConfig(components_path=str(tmp_path)))
    assert loaded.components["crypto"]["published"].type == "jwks"


async def test_a_jwks_file_rotates_without_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [oct_jwk(os.urandom(32), "k/1")]}))
    loaded = await load_components(
        {"crypto": {"j": ("jwks", {"jwks": str(path)}, ())}}, ComponentContext("a", tmp_path)
    )
    store = loaded.find("crypto", "j", "component_name")
    assert isinstance(store, KeyStore)
    assert (await store.key("k")).ref == "k/1"
    path.write_text(json.dumps({"keys": [oct_jwk(os.urandom(32), "k/1"), oct_jwk(os.urandom(32), "k/2")]}))
    os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))  # a new mtime, however coarse the clock
    assert (await store.key("k")).ref == "k/2"
    assert (await store.key("k/1")).ref == "k/1"


@pytest.mark.parametrize(
    ("jwks_value", "problem"),
    [
        ("{not json", "not a JSON Web Key Set"),
        ('{"keys": [{"kty": "oct"}]}', "has no 'kid'"),
        ('{"keys": [{"kty": "XX", "kid": "a"}]}', "kty 'XX' is not supported"),
        ("https://x/jwks", "URL"),
    ],
)
async def test_a_bad_jwks_is_one_config_error_naming_the_key(tmp_path: Path, jwks_value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=rf"^crypto\.j\.metadata\.jwks: .*{problem}"):
        await load_components({"crypto": {"j": ("jwks", {"jwks": jwks_value}, ())}}, ComponentContext("a", tmp_path))


async def test_a_secret_store_holds_versioned_keys(tmp_path: Path) -> None:
    versions = {"1": json.dumps(oct_jwk(os.urandom(32))), "2": RSA_PEM}
    (tmp_path / "secrets.json").write_text(json.dumps({"orders": versions}))
    secret_store = {
        "vault": ComponentConfig("local.file", {"secretsFile": str(tmp_path / "secrets.json"), "multiValued": "true"})
    }
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "secret_store": secret_store,
            "crypto": {"kms": ComponentConfig("secretstore", {"secretStore": "vault"})},
        },
    )
    async with Runtime(config) as rt:
        stub = layotto(rt)
        sealed = {}
        for key_id in ("orders", "orders/1"):
            request = cryption_pb2.EncryptRequest(component_name="kms", plain_text=key_id.encode(), key_id=key_id)
            sealed[key_id] = await stub.Encrypt(request)
        assert [(s.key_id, s.key_version_id) for s in sealed.values()] == [("orders", "2"), ("orders", "1")]
        for key_id, response in sealed.items():
            opened = await stub.Decrypt(
                cryption_pb2.DecryptRequest(component_name="kms", cipher_text=response.cipher_text)
            )
            assert opened.plain_text == key_id.encode()
        missing = await call_error(stub.Encrypt(cryption_pb2.EncryptRequest(component_name="kms", key_id="orders/3")))
        assert error_info(missing).reason == "KEY_NOT_FOUND"
        streamed = await dapr_encrypt(
            dapr(rt), b"dapr", component_name="kms", key_name="orders", key_wrap_algorithm="RSA"
        )
        assert await dapr_decrypt(dapr(rt), streamed, component_name="kms") == b"dapr"
        listed = await dapr(rt).GetMetadata(metadata_pb2.GetMetadataRequest())
        assert {c.name: c.type for c in listed.registered_components}["kms"] == "crypto.secretstore"


async def test_a_secret_store_key_store_names_a_configured_secret_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^crypto\.kms\.metadata: no secret store named 'vault' is configured"):
        await load_components(
            {"crypto": {"kms": ("secretstore", {"secretStore": "vault"}, ())}}, ComponentContext("a", tmp_path)
        )

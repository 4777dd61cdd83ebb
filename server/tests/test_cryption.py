"""Cryption on a running runtime: Layotto's CryptionService and Dapr's EncryptAlpha1/DecryptAlpha1
and Subtle RPCs, over the local and jwks key stores; rotation, wrong keys and tampered data."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from crypto_keys import EC_KEY, RSA_KEY, jwks, oct_jwk, write_key_dir
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from test_api import call_error, error_info

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import crypto_pb2, dapr_pb2_grpc
from layotto.proto.extension.v1.cryption import cryption_pb2, cryption_pb2_grpc
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig

STORES = ("local", "jwks")
#: the same keys under each store's names: (symmetric, rotating, rsa)
NAMES = {"local": ("aes.json", "rotating", "rsa.pem"), "jwks": ("aes", "rot", "rsa")}


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    secrets = write_key_dir(tmp_path / "keys")
    (tmp_path / "jwks.json").write_text(jwks(secrets))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "aes.json").write_text(json.dumps(oct_jwk(os.urandom(32))))
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "crypto": {
                "local": ComponentConfig("local", {"path": str(tmp_path / "keys")}),
                "jwks": ComponentConfig("jwks", {"jwks": str(tmp_path / "jwks.json")}),
                "other": ComponentConfig("local", {"path": str(tmp_path / "other")}),
            }
        },
    )
    async with Runtime(config) as rt:
        yield rt


def channel(rt: Runtime) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}", options=[("grpc.max_receive_message_length", -1)])


def layotto(rt: Runtime) -> cryption_pb2_grpc.CryptionServiceStub:
    return cryption_pb2_grpc.CryptionServiceStub(channel(rt))


def dapr(rt: Runtime) -> dapr_pb2_grpc.DaprStub:
    return dapr_pb2_grpc.DaprStub(channel(rt))


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


async def dapr_encrypt(stub: dapr_pb2_grpc.DaprStub, data: bytes, chunk: int = 10_000, **options: Any) -> bytes:
    requests = [
        crypto_pb2.EncryptRequest(
            options=crypto_pb2.EncryptRequestOptions(**options) if i == 0 else None,
            payload=common_pb2.StreamPayload(data=part, seq=i),
        )
        for i, part in enumerate(chunks(data, chunk))
    ]
    return b"".join([r.payload.data async for r in stub.EncryptAlpha1(iter(requests))])


async def dapr_decrypt(stub: dapr_pb2_grpc.DaprStub, data: bytes, chunk: int = 7_000, **options: Any) -> bytes:
    requests = [
        crypto_pb2.DecryptRequest(
            options=crypto_pb2.DecryptRequestOptions(**options) if i == 0 else None,
            payload=common_pb2.StreamPayload(data=part, seq=i),
        )
        for i, part in enumerate(chunks(data, chunk))
    ]
    return b"".join([r.payload.data async for r in stub.DecryptAlpha1(iter(requests))])


@pytest.mark.parametrize("store", STORES)
async def test_layotto_encrypt_names_the_key_version_and_decrypt_needs_no_key_id(runtime: Runtime, store: str) -> None:
    stub = layotto(runtime)
    symmetric, rotating, rsa_name = NAMES[store]
    for key_id, plain in ((symmetric, b"hello"), (rotating, os.urandom(200_000)), (rsa_name, b"")):
        sealed = await stub.Encrypt(cryption_pb2.EncryptRequest(component_name=store, plain_text=plain, key_id=key_id))
        assert sealed.cipher_text.startswith(b"dapr.io/enc/v1\n")
        assert not plain or plain not in sealed.cipher_text
        opened = await stub.Decrypt(cryption_pb2.DecryptRequest(component_name=store, cipher_text=sealed.cipher_text))
        assert opened.plain_text == plain
        assert (opened.key_id, opened.key_version_id) == (sealed.key_id, sealed.key_version_id)
    rotated = await stub.Encrypt(cryption_pb2.EncryptRequest(component_name=store, plain_text=b"x", key_id=rotating))
    assert (rotated.key_id, rotated.key_version_id) == ((rotating, "v1.json") if store == "local" else ("rot", "1"))


async def test_rotation_new_version_encrypts_old_versions_still_decrypt(runtime: Runtime, tmp_path: Path) -> None:
    stub = layotto(runtime)
    old = await stub.Encrypt(cryption_pb2.EncryptRequest(component_name="local", plain_text=b"old", key_id="rotating"))
    for version in ("v2.json", "v10.json"):  # natural order: v10 is newer than v2
        (tmp_path / "keys" / "rotating" / version).write_text(json.dumps(oct_jwk(os.urandom(32))))
    new = await stub.Encrypt(cryption_pb2.EncryptRequest(component_name="local", plain_text=b"new", key_id="rotating"))
    assert (old.key_version_id, new.key_version_id) == ("v1.json", "v10.json")
    for sealed, plain in ((old, b"old"), (new, b"new")):
        opened = await stub.Decrypt(cryption_pb2.DecryptRequest(component_name="local", cipher_text=sealed.cipher_text))
        assert (opened.plain_text, opened.key_version_id) == (plain, sealed.key_version_id)


@pytest.mark.parametrize("cipher", ["", "AES-GCM", "CHACHA20-POLY1305"])
@pytest.mark.parametrize(("store", "key", "algorithm"), [("local", "aes.json", "A256KW"), ("jwks", "rsa", "RSA")])
async def test_dapr_streams_round_trip_across_segments(
    runtime: Runtime, store: str, key: str, algorithm: str, cipher: str
) -> None:
    stub = dapr(runtime)
    for size in (0, 1, 65_536, 65_537, 300_000):
        plain = os.urandom(size)
        sealed = await dapr_encrypt(
            stub, plain, component_name=store, key_name=key, key_wrap_algorithm=algorithm, data_encryption_cipher=cipher
        )
        assert len(sealed) > size
        assert await dapr_decrypt(stub, sealed, component_name=store) == plain


async def test_layotto_and_dapr_ciphertexts_are_one_format(runtime: Runtime) -> None:
    sealed = await dapr_encrypt(
        dapr(runtime), b"from dapr", component_name="jwks", key_name="aes", key_wrap_algorithm="AES"
    )
    opened = await layotto(runtime).Decrypt(cryption_pb2.DecryptRequest(component_name="jwks", cipher_text=sealed))
    assert (opened.plain_text, opened.key_id) == (b"from dapr", "aes")
    layotto_sealed = await layotto(runtime).Encrypt(
        cryption_pb2.EncryptRequest(component_name="jwks", plain_text=b"from layotto", key_id="rsa")
    )
    assert await dapr_decrypt(dapr(runtime), layotto_sealed.cipher_text, component_name="jwks") == b"from layotto"


async def test_omitted_key_name_needs_one_on_decrypt(runtime: Runtime) -> None:
    stub = dapr(runtime)
    sealed = await dapr_encrypt(
        stub,
        b"x",
        component_name="local",
        key_name="aes.json",
        key_wrap_algorithm="A256KW",
        omit_decryption_key_name=True,
    )
    missing = await call_error(dapr_decrypt(stub, sealed, component_name="local"))
    assert (missing.code(), error_info(missing).metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "key_name")
    assert await dapr_decrypt(stub, sealed, component_name="local", key_name="aes.json") == b"x"


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


async def test_tampered_truncated_or_foreign_ciphertext_is_decryption_failed(runtime: Runtime) -> None:
    stub = layotto(runtime)
    plain = os.urandom(150_000)
    sealed = await stub.Encrypt(
        cryption_pb2.EncryptRequest(component_name="local", plain_text=plain, key_id="aes.json")
    )
    data = sealed.cipher_text
    header_end = data.index(b"\n", data.index(b"\n", 15) + 1) + 1
    cases = {
        "segment": flip(data, header_end + 70_000),
        "last segment": flip(data, len(data) - 1),
        "mac": data[: header_end - 5]
        + (b"A" if data[header_end - 5 : header_end - 4] != b"A" else b"B")
        + data[header_end - 4 :],
        "truncated": data[: header_end + 65_552],  # exactly the first full segment
        "dropped tail": data[:-1],
        "not sealed": b"plain text",
    }
    for what, bad in cases.items():
        for call in (
            stub.Decrypt(cryption_pb2.DecryptRequest(component_name="local", cipher_text=bad)),
            # one message: a client still writing when the server ends the call may see INTERNAL
            # instead of the server's status (grpc/grpc#36066), whatever the server sent
            dapr_decrypt(dapr(runtime), bad, chunk=len(bad), component_name="local"),
        ):
            error = await call_error(call)
            assert (what, error.code()) == (what, grpc.StatusCode.INVALID_ARGUMENT), error.details()
            assert (what, error.code(), error_info(error).reason) == (
                what,
                grpc.StatusCode.INVALID_ARGUMENT,
                "DECRYPTION_FAILED",
            ), error.details()
    # the same key name in another store is another key: the file key does not unwrap
    foreign = await call_error(stub.Decrypt(cryption_pb2.DecryptRequest(component_name="other", cipher_text=data)))
    assert error_info(foreign).reason == "DECRYPTION_FAILED"
    assert "another key" in foreign.details()


async def test_a_segment_that_fails_sends_no_plaintext_of_it(runtime: Runtime) -> None:
    stub = dapr(runtime)
    plain = os.urandom(200_000)
    sealed = await dapr_encrypt(stub, plain, component_name="local", key_name="aes.json", key_wrap_algorithm="A256KW")
    bad = flip(sealed, len(sealed) - 20)  # inside the last segment, read after every chunk was sent
    received = b""
    requests = [
        crypto_pb2.DecryptRequest(
            options=crypto_pb2.DecryptRequestOptions(component_name="local") if i == 0 else None,
            payload=common_pb2.StreamPayload(data=part, seq=i),
        )
        for i, part in enumerate(chunks(bad, 5_000))
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for response in stub.DecryptAlpha1(iter(requests)):
            received += response.payload.data
    assert error_info(caught.value).reason == "DECRYPTION_FAILED"
    assert received == plain[: 3 * 65_536]  # the three full segments that verified, nothing of the last


async def test_bad_requests_name_the_field(runtime: Runtime) -> None:
    stub = layotto(runtime)
    unknown_key = await call_error(stub.Encrypt(cryption_pb2.EncryptRequest(component_name="local", key_id="nope")))
    assert (unknown_key.code(), error_info(unknown_key).reason) == (grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND")
    assert unknown_key.details() == "key_name: key store 'local' has no key 'nope'"
    escape = await call_error(stub.Encrypt(cryption_pb2.EncryptRequest(component_name="local", key_id="../jwks.json")))
    assert error_info(escape).reason == "KEY_NOT_FOUND"
    no_key = await call_error(stub.Encrypt(cryption_pb2.EncryptRequest(component_name="local")))
    assert error_info(no_key).metadata["field"] == "key_id"
    no_store = await call_error(stub.Decrypt(cryption_pb2.DecryptRequest(component_name="vault")))
    assert error_info(no_store).reason == "COMPONENT_NOT_FOUND"
    d = dapr(runtime)
    for options, field in (
        ({"component_name": "local", "key_name": "aes.json", "key_wrap_algorithm": "A999"}, "key_wrap_algorithm"),
        ({"component_name": "local", "key_name": "aes.json", "key_wrap_algorithm": "RSA"}, "algorithm"),
        (
            {
                "component_name": "local",
                "key_name": "aes.json",
                "key_wrap_algorithm": "AES",
                "data_encryption_cipher": "DES",
            },
            "data_encryption_cipher",
        ),
    ):
        error = await call_error(dapr_encrypt(d, b"x", **options))
        assert (error.code(), error_info(error).metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, field), (
            error.details()
        )
    no_options = [crypto_pb2.EncryptRequest(payload=common_pb2.StreamPayload(data=b"x", seq=0))]
    error = await call_error(_drain(d.EncryptAlpha1(iter(no_options))))
    assert error_info(error).metadata["field"] == "options"
    out_of_order = [
        crypto_pb2.EncryptRequest(
            options=crypto_pb2.EncryptRequestOptions(
                component_name="local", key_name="aes.json", key_wrap_algorithm="AES"
            ),
            payload=common_pb2.StreamPayload(data=b"x", seq=0),
        ),
        crypto_pb2.EncryptRequest(payload=common_pb2.StreamPayload(data=b"y", seq=2)),
    ]
    error = await call_error(_drain(d.EncryptAlpha1(iter(out_of_order))))
    assert error_info(error).metadata["field"] == "payload.seq"


async def _drain(call: Any) -> None:
    async for _ in call:
        pass


async def test_subtle_operations(runtime: Runtime) -> None:
    stub = dapr(runtime)
    wrapped = await stub.SubtleWrapKeyAlpha1(
        crypto_pb2.SubtleWrapKeyRequest(
            component_name="jwks", plaintext_key=b"k" * 32, algorithm="A256KW", key_name="aes"
        )
    )
    unwrapped = await stub.SubtleUnwrapKeyAlpha1(
        crypto_pb2.SubtleUnwrapKeyRequest(
            component_name="jwks", wrapped_key=wrapped.wrapped_key, algorithm="A256KW", key_name="aes"
        )
    )
    assert unwrapped.plaintext_key == b"k" * 32
    nonce = os.urandom(12)
    sealed = await stub.SubtleEncryptAlpha1(
        crypto_pb2.SubtleEncryptRequest(
            component_name="local",
            plaintext=b"msg",
            algorithm="A256GCM",
            key_name="aes.json",
            nonce=nonce,
            associated_data=b"ad",
        )
    )
    assert len(sealed.tag) == 16
    opened = await stub.SubtleDecryptAlpha1(
        crypto_pb2.SubtleDecryptRequest(
            component_name="local",
            ciphertext=sealed.ciphertext,
            algorithm="A256GCM",
            key_name="aes.json",
            nonce=nonce,
            tag=sealed.tag,
            associated_data=b"ad",
        )
    )
    assert opened.plaintext == b"msg"
    bad_tag = await call_error(
        stub.SubtleDecryptAlpha1(
            crypto_pb2.SubtleDecryptRequest(
                component_name="local",
                ciphertext=sealed.ciphertext,
                algorithm="A256GCM",
                key_name="aes.json",
                nonce=nonce,
                tag=bytes(16),
                associated_data=b"ad",
            )
        )
    )
    assert error_info(bad_tag).reason == "DECRYPTION_FAILED"
    rsa_sealed = await stub.SubtleEncryptAlpha1(
        crypto_pb2.SubtleEncryptRequest(component_name="jwks", plaintext=b"m", algorithm="RSA-OAEP-256", key_name="rsa")
    )
    assert RSA_KEY.decrypt(rsa_sealed.ciphertext, _oaep256()) == b"m"
    digest = hashlib.sha256(b"document").digest()
    for store, key, algorithm in (
        ("local", "ec.pem", "ES256"),
        ("jwks", "rsa", "RS256"),
        ("local", "rsa.pem", "PS256"),
    ):
        signed = await stub.SubtleSignAlpha1(
            crypto_pb2.SubtleSignRequest(component_name=store, digest=digest, algorithm=algorithm, key_name=key)
        )
        for checked, valid in ((digest, True), (hashlib.sha256(b"other").digest(), False)):
            verdict = await stub.SubtleVerifyAlpha1(
                crypto_pb2.SubtleVerifyRequest(
                    component_name=store, digest=checked, algorithm=algorithm, key_name=key, signature=signed.signature
                )
            )
            assert verdict.valid is valid
    pem = await stub.SubtleGetKeyAlpha1(crypto_pb2.SubtleGetKeyRequest(component_name="local", name="ec.pem"))
    assert pem.public_key.startswith("-----BEGIN PUBLIC KEY-----")
    jwk = await stub.SubtleGetKeyAlpha1(
        crypto_pb2.SubtleGetKeyRequest(
            component_name="local", name="ec.pem", format=crypto_pb2.SubtleGetKeyRequest.JSON
        )
    )
    assert json.loads(jwk.public_key)["kty"] == "EC" and "d" not in json.loads(jwk.public_key)
    EC_KEY.public_key().verify(
        _der(
            await stub.SubtleSignAlpha1(
                crypto_pb2.SubtleSignRequest(
                    component_name="local", digest=digest, algorithm="ES256", key_name="ec.pem"
                )
            )
        ),
        b"document",
        ec.ECDSA(hashes.SHA256()),
    )
    secret = await call_error(
        stub.SubtleGetKeyAlpha1(crypto_pb2.SubtleGetKeyRequest(component_name="local", name="aes.json"))
    )
    assert error_info(secret).reason == "KEY_NOT_FOUND"  # a symmetric key is never exported


def _oaep256() -> Any:
    from cryptography.hazmat.primitives.asymmetric import padding

    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _der(signed: Any) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    raw = signed.signature
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


async def test_a_message_over_the_offload_size_round_trips(runtime: Runtime) -> None:
    stub = layotto(runtime)
    plain = os.urandom(5 * 1024 * 1024)  # sealed and opened on a worker thread (OFFLOAD_BYTES)
    sealed = await stub.Encrypt(cryption_pb2.EncryptRequest(component_name="jwks", plain_text=plain, key_id="aes"))
    opened = await stub.Decrypt(cryption_pb2.DecryptRequest(component_name="jwks", cipher_text=sealed.cipher_text))
    assert opened.plain_text == plain

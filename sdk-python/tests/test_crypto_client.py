"""client.crypto against an in-process runtime with a local key store."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from layotto.client import CryptoResult, DecryptionFailed, InvalidArgument, KeyNotFound, StoreNotFound
from layotto.client.testing import test_runtime
from layotto.server import embedded_defaults
from layotto.server.config import ComponentConfig, RuntimeConfig


def with_keys(root: Path) -> RuntimeConfig:
    root.mkdir()
    secret = os.urandom(32).hex()
    jwk = {"kty": "oct", "k": __import__("base64").urlsafe_b64encode(bytes.fromhex(secret)).rstrip(b"=").decode()}
    (root / "aes.json").write_text(json.dumps(jwk))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (root / "rsa.pem").write_bytes(pem)
    stores = {"keys": ComponentConfig("local", {"path": str(root)})}
    return RuntimeConfig(components={**embedded_defaults().components, "crypto": stores})


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_bytes_and_streams_round_trip(tmp_path: Path) -> None:
    async with test_runtime(with_keys(tmp_path / "keys")) as runtime, runtime.client() as client:
        for key, algorithm in (("aes.json", ""), ("rsa.pem", "RSA-OAEP-256"), ("aes.json", "AES")):
            sealed = await client.crypto.encrypt("keys", b"secret message", key_name=key, algorithm=algorithm)
            assert sealed.startswith(b"dapr.io/enc/v1\n")
            assert await client.crypto.decrypt("keys", sealed) == b"secret message"
        plain = os.urandom(3 * 1024 * 1024 + 5)  # more than one message of the stream, odd sized
        sealed_chunks = [
            chunk
            async for chunk in client.crypto.encrypt(
                "keys", chunks_of(plain, 100_000), key_name="aes.json", cipher="CHACHA20-POLY1305"
            )
        ]
        result = client.crypto.decrypt("keys", chunks_of(b"".join(sealed_chunks), 77_777))
        assert isinstance(result, CryptoResult)
        opened = [chunk async for chunk in result]
        assert len(opened) > 1 and b"".join(opened) == plain
        assert await client.crypto.decrypt("keys", await client.crypto.encrypt("keys", b"", key_name="aes.json")) == b""


async def test_errors_are_named(tmp_path: Path) -> None:
    async with test_runtime(with_keys(tmp_path / "keys")) as runtime, runtime.client() as client:
        sealed = bytearray(await client.crypto.encrypt("keys", b"x" * 1000, key_name="aes.json"))
        sealed[-1] ^= 1
        with pytest.raises(DecryptionFailed) as failed:
            await client.crypto.decrypt("keys", bytes(sealed))
        assert failed.value.field == "payload"
        with pytest.raises(KeyNotFound):
            await client.crypto.encrypt("keys", b"x", key_name="nope")
        with pytest.raises(StoreNotFound):
            await client.crypto.encrypt("vault", b"x", key_name="aes.json")
        with pytest.raises(InvalidArgument) as bad:
            await client.crypto.encrypt("keys", b"x", key_name="aes.json", algorithm="RSA")
        assert bad.value.field == "algorithm"

"""Interop with Dapr's own Go implementation of scheme v1 (github.com/dapr/kit/schemes/enc/v1):
what it encrypts decrypts through both of our APIs, and what we encrypt it decrypts.

The Go command (interop/dapr_enc_v1) is built once through the Go module proxy and cached in the
temp directory by a hash of its source. Without Go or the module, the tests skip saying why, or
fail under LAYOTTO_REQUIRE_BACKENDS=1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from crypto_keys import jwks, write_key_dir
from test_api import call_error, error_info
from test_cryption import dapr, dapr_decrypt, dapr_encrypt, layotto

from layotto.proto.extension.v1.cryption import cryption_pb2
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig

SOURCE = Path(__file__).parent / "interop" / "dapr_enc_v1"


def _unavailable(reason: str) -> None:
    if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def go_scheme() -> Path:
    """The built Go command (see interop/dapr_enc_v1/main.go for its arguments)."""
    go = shutil.which("go")
    if go is None:
        _unavailable("the Go toolchain is not installed: the interop tests build Dapr's Go scheme v1")
    assert go is not None
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(SOURCE.iterdir()))).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "layotto-crypto-interop" / digest
    binary = cache / "dapr_enc_v1"
    if binary.exists():
        return binary
    build = cache.with_name(f"{digest}.build.{os.getpid()}")
    shutil.copytree(SOURCE, build, dirs_exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    done = subprocess.run(
        [go, "build", "-o", "dapr_enc_v1", "."], cwd=build, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        _unavailable(f"building Dapr's Go scheme v1 (github.com/dapr/kit v0.17.1) failed: {done.stderr.strip()[-800:]}")
    cache.mkdir(parents=True, exist_ok=True)
    os.replace(build / "dapr_enc_v1", binary)  # atomic: concurrent builders race harmlessly
    shutil.rmtree(build, ignore_errors=True)
    return binary


def run_go(binary: Path, *args: str, data: bytes) -> bytes:
    done = subprocess.run([str(binary), *args], input=data, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


@pytest.fixture
async def keyed_runtime(tmp_path: Path) -> AsyncIterator[tuple[Runtime, dict[str, str]]]:
    secrets = write_key_dir(tmp_path / "keys")
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "crypto": {
                "local": ComponentConfig("local", {"path": str(tmp_path / "keys")}),
                "jwks": ComponentConfig("jwks", {"jwks": jwks(secrets)}),
            }
        },
    )
    keys = {"aes.json": f"aes:{secrets['aes.json'].hex()}", "rsa": f"rsa:{tmp_path / 'keys' / 'rsa.pem'}"}
    async with Runtime(config) as rt:
        yield rt, keys


CASES = [
    ("local", "aes.json", "A256KW", "AES-GCM"),
    ("jwks", "rsa", "RSA-OAEP-256", "CHACHA20-POLY1305"),
]


@pytest.mark.parametrize("case", CASES)
async def test_go_encrypts_we_decrypt_on_both_apis(
    go_scheme: Path, keyed_runtime: tuple[Runtime, dict[str, str]], case: tuple[str, str, str, str]
) -> None:
    rt, keys = keyed_runtime
    store, key, algorithm, cipher = case
    for size in (0, 1, 65_536, 200_000):
        plain = os.urandom(size)
        sealed = run_go(go_scheme, "encrypt", key, keys[key], algorithm, cipher, data=plain)
        assert sealed.startswith(b"dapr.io/enc/v1\n")
        assert await dapr_decrypt(dapr(rt), sealed, component_name=store) == plain
        request = cryption_pb2.DecryptRequest(component_name=store, cipher_text=sealed)
        opened = await layotto(rt).Decrypt(request)
        assert (opened.plain_text, opened.key_id) == (plain, key)
    tampered = bytearray(run_go(go_scheme, "encrypt", key, keys[key], algorithm, cipher, data=b"x" * 1000))
    tampered[-3] ^= 1
    error = await call_error(dapr_decrypt(dapr(rt), bytes(tampered), chunk=len(tampered), component_name=store))
    assert error_info(error).reason == "DECRYPTION_FAILED"


@pytest.mark.parametrize("case", CASES)
async def test_we_encrypt_go_decrypts(
    go_scheme: Path, keyed_runtime: tuple[Runtime, dict[str, str]], case: tuple[str, str, str, str]
) -> None:
    rt, keys = keyed_runtime
    store, key, algorithm, cipher = case
    for size in (0, 65_535, 65_536, 131_073):
        plain = os.urandom(size)
        sealed = await dapr_encrypt(
            dapr(rt),
            plain,
            component_name=store,
            key_name=key,
            key_wrap_algorithm=algorithm,
            data_encryption_cipher=cipher,
        )
        assert run_go(go_scheme, "decrypt", key, keys[key], algorithm, cipher, data=sealed) == plain
    layotto_sealed = await layotto(rt).Encrypt(
        cryption_pb2.EncryptRequest(component_name=store, plain_text=b"from layotto", key_id=key)
    )
    assert (
        run_go(go_scheme, "decrypt", key, keys[key], algorithm, cipher, data=layotto_sealed.cipher_text)
        == b"from layotto"
    )

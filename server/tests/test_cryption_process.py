"""Cryption on a `layotto serve` process configured by Dapr manifests: a 256 MiB stream through
EncryptAlpha1 and back through DecryptAlpha1 keeps the runtime's memory bounded (peak RSS
growth under 64 MiB, read from /proc), and the plaintext comes back whole."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from crypto_keys import write_key_dir
from server_helpers import ServerProcess, start_server

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import crypto_pb2, dapr_pb2_grpc

#: the stream's size: 256 MiB in CI; LAYOTTO_TEST_LARGE_STREAM_MIB=1024 for 1 GiB by hand
STREAM_BYTES = int(os.environ.get("LAYOTTO_TEST_LARGE_STREAM_MIB", "256")) * 1024 * 1024
CHUNK = 1024 * 1024
MAX_GROWTH = 64 * 1024 * 1024

MANIFEST = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: keys
spec:
  type: crypto.dapr.localstorage
  version: v1
  metadata:
    - name: path
      value: {path}
"""


def peak_rss(pid: int) -> int:
    """VmHWM: the process's peak resident set, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    write_key_dir(tmp_path / "keys")
    (tmp_path / "components").mkdir()
    (tmp_path / "components" / "keys.yaml").write_text(MANIFEST.format(path=tmp_path / "keys"))
    process = start_server("--components-path", str(tmp_path / "components"), data_dir=tmp_path / "rt")
    yield process
    process.terminate()


BLOCK = os.urandom(CHUNK)


def plaintext_chunks() -> Iterator[bytes]:
    """The same STREAM_BYTES on every call: 1 MiB chunks, each numbered in its first 8 bytes."""
    for i in range(STREAM_BYTES // CHUNK):
        yield i.to_bytes(8, "big") + BLOCK[8:]


def encrypt_requests() -> Iterator[crypto_pb2.EncryptRequest]:
    options = crypto_pb2.EncryptRequestOptions(component_name="keys", key_name="aes.json", key_wrap_algorithm="A256KW")
    for seq, chunk in enumerate(plaintext_chunks()):
        payload = common_pb2.StreamPayload(data=chunk, seq=seq)
        yield crypto_pb2.EncryptRequest(options=options if seq == 0 else None, payload=payload)


def decrypt_requests(path: Path) -> Iterator[crypto_pb2.DecryptRequest]:
    options = crypto_pb2.DecryptRequestOptions(component_name="keys")
    with path.open("rb") as sealed:
        seq = 0
        while chunk := sealed.read(CHUNK):
            payload = common_pb2.StreamPayload(data=chunk, seq=seq)
            yield crypto_pb2.DecryptRequest(options=options if seq == 0 else None, payload=payload)
            seq += 1


def test_a_256_mib_stream_keeps_the_runtime_memory_bounded(server: ServerProcess, tmp_path: Path) -> None:
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        warm = [crypto_pb2.EncryptRequest(options=next(encrypt_requests()).options)]
        list(stub.EncryptAlpha1(iter(warm)))  # the first call's imports and buffers are not growth
        before = peak_rss(server.process.pid)
        sealed = tmp_path / "sealed.bin"
        with sealed.open("wb") as out:
            for response in stub.EncryptAlpha1(encrypt_requests()):
                out.write(response.payload.data)
        assert sealed.stat().st_size > STREAM_BYTES
        expected, got = hashlib.sha256(), hashlib.sha256()
        for chunk in plaintext_chunks():
            expected.update(chunk)
        for response in stub.DecryptAlpha1(decrypt_requests(sealed)):
            got.update(response.payload.data)
        growth = peak_rss(server.process.pid) - before
    assert got.hexdigest() == expected.hexdigest()
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    print(f"peak RSS growth over 2 x {STREAM_BYTES >> 20} MiB: {growth / 2**20:.1f} MiB")

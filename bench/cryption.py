"""Encryption throughput: Dapr's EncryptAlpha1/DecryptAlpha1 streams and Layotto's unary
Encrypt/Decrypt through `layotto serve`, against the same AEAD work (AES-256-GCM over 64 KiB
segments) done directly with the `cryptography` package in this process, in the same run.

    python bench/cryption.py [--mib 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).parent))

from _runtime import start_runtime, stop, wait_ready

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import crypto_pb2, dapr_pb2_grpc
from layotto.proto.extension.v1.cryption import cryption_pb2, cryption_pb2_grpc

SEGMENT = 64 * 1024
CHUNK = 1024 * 1024


def direct_seal(aead: AESGCM, prefix: bytes, data: bytes) -> bytes:
    """What the scheme does per message, without the runtime: AES-256-GCM per 64 KiB segment."""
    parts = []
    for index, start in enumerate(range(0, len(data), SEGMENT)):
        last = start + SEGMENT >= len(data)
        nonce = prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        parts.append(aead.encrypt(nonce, data[start : start + SEGMENT], None))
    return b"".join(parts)


def direct_open(aead: AESGCM, prefix: bytes, sealed: bytes) -> bytes:
    parts = []
    size = SEGMENT + 16
    for index, start in enumerate(range(0, len(sealed), size)):
        last = start + size >= len(sealed)
        nonce = prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")
        parts.append(aead.decrypt(nonce, sealed[start : start + size], None))
    return b"".join(parts)


def best_rate(mib: int, rounds: int, run: Callable[[], object]) -> float:
    """The best of ``rounds`` runs, in MiB/s."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return mib / best


async def best_rate_async(mib: int, rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        await run()  # type: ignore[misc]
        best = min(best, time.perf_counter() - started)
    return mib / best


async def requests(message: type, options: object, data: bytes) -> AsyncIterator[object]:
    for seq, start in enumerate(range(0, len(data), CHUNK)):
        payload = common_pb2.StreamPayload(data=data[start : start + CHUNK], seq=seq)
        yield message(options=options if seq == 0 else None, payload=payload)


async def through_runtime(address: str, data: bytes, mib: int, rounds: int) -> dict[str, float]:
    options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        dapr = dapr_pb2_grpc.DaprStub(channel)
        layotto = cryption_pb2_grpc.CryptionServiceStub(channel)
        enc = crypto_pb2.EncryptRequestOptions(component_name="keys", key_name="aes.json", key_wrap_algorithm="A256KW")
        dec = crypto_pb2.DecryptRequestOptions(component_name="keys")
        sealed = b""

        async def encrypt() -> None:
            nonlocal sealed
            sealed = b"".join(
                [r.payload.data async for r in dapr.EncryptAlpha1(requests(crypto_pb2.EncryptRequest, enc, data))]
            )

        async def decrypt() -> None:
            out = [r.payload.data async for r in dapr.DecryptAlpha1(requests(crypto_pb2.DecryptRequest, dec, sealed))]
            assert sum(map(len, out)) == len(data)

        results = {"dapr EncryptAlpha1": await best_rate_async(mib, rounds, encrypt)}
        results["dapr DecryptAlpha1"] = await best_rate_async(mib, rounds, decrypt)
        message = data[:CHUNK]  # Layotto's unary API: 1 MiB messages, one after another
        sealed_messages: list[bytes] = []

        async def unary_encrypt() -> None:
            sealed_messages.clear()
            for _ in range(mib):
                request = cryption_pb2.EncryptRequest(component_name="keys", plain_text=message, key_id="aes.json")
                sealed_messages.append((await layotto.Encrypt(request)).cipher_text)

        async def unary_decrypt() -> None:
            for sealed_message in sealed_messages:
                await layotto.Decrypt(cryption_pb2.DecryptRequest(component_name="keys", cipher_text=sealed_message))

        results["layotto Encrypt (1 MiB)"] = await best_rate_async(mib, rounds, unary_encrypt)
        results["layotto Decrypt (1 MiB)"] = await best_rate_async(mib, rounds, unary_decrypt)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=64, help="MiB per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per measure; the best is reported")
    args = parser.parse_args()
    data = os.urandom(args.mib * CHUNK)
    aead, prefix = AESGCM(os.urandom(32)), os.urandom(7)
    sealed = direct_seal(aead, prefix, data)
    results = {
        "cryptography AES-GCM seal (in process)": best_rate(
            args.mib, args.rounds, lambda: direct_seal(aead, prefix, data)
        ),
        "cryptography AES-GCM open (in process)": best_rate(
            args.mib, args.rounds, lambda: direct_open(aead, prefix, sealed)
        ),
    }
    with tempfile.TemporaryDirectory(prefix="layotto-bench-crypto-") as tmp:
        keys = Path(tmp) / "keys"
        keys.mkdir()
        jwk = {"kty": "oct", "k": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
        (keys / "aes.json").write_text(json.dumps(jwk))
        config = Path(tmp) / "bench.yaml"
        config.write_text(json.dumps({"crypto": {"keys": {"type": "local", "metadata": {"path": str(keys)}}}}))
        process, address = start_runtime(tmp, config)
        try:
            asyncio.run(wait_ready(address))
            results |= asyncio.run(through_runtime(address, data, args.mib, args.rounds))
        finally:
            stop(process)
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs; {args.mib} MiB per run, best of {args.rounds}")
    for name, rate in results.items():
        print(f"  {name:42s} {rate:8.1f} MiB/s")


if __name__ == "__main__":
    main()

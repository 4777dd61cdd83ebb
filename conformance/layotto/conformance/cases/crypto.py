"""Key store cases: encryption round trips, tampered data and unknown keys, through Layotto's
CryptionService (api ``layotto``) and Dapr's EncryptAlpha1/DecryptAlpha1 streams (api ``dapr``).

The key store under test must hold a 256-bit symmetric key ``conformance-aes`` and an RSA
private key ``conformance-rsa`` (for the local store, files of those names in its directory;
for jwks, those kids).
"""

from __future__ import annotations

import os

import grpc

from layotto.conformance.model import Case, CaseContext, CaseFailed, check
from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import crypto_pb2, dapr_pb2_grpc
from layotto.proto.extension.v1.cryption import cryption_pb2, cryption_pb2_grpc

LAYOTTO_RPCS = tuple(f"spec.proto.extension.v1.cryption.CryptionService/{n}" for n in ("Encrypt", "Decrypt"))
DAPR_RPCS = tuple(f"dapr.proto.runtime.v1.Dapr/{n}" for n in ("EncryptAlpha1", "DecryptAlpha1"))
CHUNK = 16 * 1024


async def _stream(call: object) -> bytes:
    return b"".join([response.payload.data async for response in call])  # type: ignore[attr-defined]


async def encrypt(ctx: CaseContext, data: bytes, key: str) -> bytes:
    """``data`` sealed with ``key`` through the case's API."""
    if ctx.api.name == "layotto":
        stub = cryption_pb2_grpc.CryptionServiceStub(ctx.channel)
        request = cryption_pb2.EncryptRequest(component_name=ctx.component, plain_text=data, key_id=key)
        return bytes((await stub.Encrypt(request, timeout=ctx.timeout)).cipher_text)
    algorithm = "RSA-OAEP-256" if key.endswith("rsa") else "A256KW"  # daprd requires one
    options = crypto_pb2.EncryptRequestOptions(component_name=ctx.component, key_name=key, key_wrap_algorithm=algorithm)
    requests = [
        crypto_pb2.EncryptRequest(
            options=options if i == 0 else None, payload=common_pb2.StreamPayload(data=data[s : s + CHUNK], seq=i)
        )
        for i, s in enumerate(range(0, max(len(data), 1), CHUNK))
    ]
    return await _stream(dapr_pb2_grpc.DaprStub(ctx.channel).EncryptAlpha1(iter(requests), timeout=ctx.timeout))


async def decrypt(ctx: CaseContext, sealed: bytes) -> bytes:
    """The plaintext of ``sealed`` through the case's API (one stream message: a server ending the
    call while a grpc.aio client still writes may be reported as INTERNAL, grpc/grpc#36066)."""
    if ctx.api.name == "layotto":
        stub = cryption_pb2_grpc.CryptionServiceStub(ctx.channel)
        unary = cryption_pb2.DecryptRequest(component_name=ctx.component, cipher_text=sealed)
        return bytes((await stub.Decrypt(unary, timeout=ctx.timeout)).plain_text)
    options = crypto_pb2.DecryptRequestOptions(component_name=ctx.component)
    first = crypto_pb2.DecryptRequest(options=options, payload=common_pb2.StreamPayload(data=sealed, seq=0))
    return await _stream(dapr_pb2_grpc.DaprStub(ctx.channel).DecryptAlpha1(iter([first]), timeout=ctx.timeout))


async def _expect(ctx: CaseContext, call: object, code: grpc.StatusCode, what: str) -> None:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        if error.code() != code:
            raise CaseFailed(f"{what}: expected {code.name}, got {error.code().name}: {error.details()}") from None
        return
    raise CaseFailed(f"{what}: expected {code.name}, but the call succeeded")


async def _round_trip(ctx: CaseContext) -> None:
    for key in ("conformance-aes", "conformance-rsa"):
        for size in (0, 1, 65_536, 150_000):
            data = os.urandom(size)
            sealed = await encrypt(ctx, data, key)
            check(sealed.startswith(b"dapr.io/enc/v1\n"), f"{key}: the ciphertext is not dapr.io/enc/v1")
            opened = await decrypt(ctx, sealed)
            check(opened == data, f"{key}, {size} bytes: decrypted data differs from the original")


async def _tampered(ctx: CaseContext) -> None:
    sealed = bytearray(await encrypt(ctx, os.urandom(100_000), "conformance-aes"))
    for index in (len(sealed) - 1, len(sealed) // 2):
        tampered = bytearray(sealed)
        tampered[index] ^= 1
        await _expect(ctx, decrypt(ctx, bytes(tampered)), grpc.StatusCode.INVALID_ARGUMENT, f"byte {index} flipped")
    await _expect(ctx, decrypt(ctx, bytes(sealed[:-20])), grpc.StatusCode.INVALID_ARGUMENT, "truncated")


async def _unknown_key(ctx: CaseContext) -> None:
    await _expect(ctx, encrypt(ctx, b"x", ctx.key("no-such-key")), grpc.StatusCode.NOT_FOUND, "an unknown key")


def _rpcs_of_both() -> tuple[str, ...]:
    return LAYOTTO_RPCS + DAPR_RPCS


CRYPTO_CASES = [
    Case(
        "crypto-round-trip",
        "crypto",
        "data sealed with the AES and RSA keys decrypts to itself (0 B to several 64 KiB segments)",
        _rpcs_of_both(),
        _round_trip,
    ),
    Case(
        "crypto-tampered",
        "crypto",
        "a flipped byte or a cut tail is INVALID_ARGUMENT, never plaintext",
        _rpcs_of_both(),
        _tampered,
    ),
    Case("crypto-unknown-key", "crypto", "an unknown key is NOT_FOUND", _rpcs_of_both(), _unknown_key),
]

"""Crypto: encrypt and decrypt with keys that stay in the runtime's key stores.

Data is sealed in Dapr's encryption scheme v1 (``dapr.io/enc/v1``): what this client encrypts
decrypts through Dapr's SDKs and daprd, and the reverse. The ciphertext names the key version
that sealed it, so :meth:`CryptoClient.decrypt` needs no key name, and rotated keys keep
opening old data.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Generator
from typing import Any

from layotto.client._transport import EOF, Transport
from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import crypto_pb2

#: the largest payload of one stream message, in bytes (bigger chunks are split)
CHUNK_BYTES = 1024 * 1024


class CryptoResult:
    """The output of :meth:`CryptoClient.encrypt` or :meth:`CryptoClient.decrypt`: ``await`` it
    for the whole result as bytes, or ``async for`` over it for chunks as they are ready (memory
    stays bounded). Either way it runs once."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def _collect(self) -> bytes:
        return b"".join([chunk async for chunk in self._chunks])

    def __await__(self) -> Generator[Any, None, bytes]:
        return self._collect().__await__()


async def _pieces(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        data = bytes(data)
        for start in range(0, len(data), CHUNK_BYTES):
            yield data[start : start + CHUNK_BYTES]
        return
    async for chunk in data:
        for start in range(0, len(chunk), CHUNK_BYTES):
            yield bytes(chunk[start : start + CHUNK_BYTES])


class CryptoClient:
    """Encrypts and decrypts through a key store of the runtime (a ``crypto`` component)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def encrypt(
        self,
        component: str,
        data: bytes | AsyncIterable[bytes],
        *,
        key_name: str,
        algorithm: str = "",
        cipher: str = "",
    ) -> CryptoResult:
        """``data`` (bytes, or an async iterable of byte chunks) sealed with the newest version of
        ``key_name``. ``algorithm`` wraps the data's random key: ``A256KW`` (alias ``AES``) or
        ``RSA-OAEP-256`` (``RSA``); "" picks by the key's type. ``cipher`` is ``AES-GCM`` (the
        default) or ``CHACHA20-POLY1305``. Raises KeyNotFound, StoreNotFound, InvalidArgument.
        """
        options = crypto_pb2.EncryptRequestOptions(
            component_name=component, key_name=key_name, key_wrap_algorithm=algorithm, data_encryption_cipher=cipher
        )
        return CryptoResult(self._stream("dapr/EncryptAlpha1", crypto_pb2.EncryptRequest, options, data))

    def decrypt(self, component: str, data: bytes | AsyncIterable[bytes], *, key_name: str = "") -> CryptoResult:
        """The plaintext of sealed ``data``, chunk by chunk as each 64 KiB segment verifies.
        ``key_name`` overrides the key the ciphertext names. Raises DecryptionFailed (tampered,
        truncated, or another key's data: no unverified plaintext is ever returned), KeyNotFound.
        """
        options = crypto_pb2.DecryptRequestOptions(component_name=component, key_name=key_name)
        return CryptoResult(self._stream("dapr/DecryptAlpha1", crypto_pb2.DecryptRequest, options, data))

    async def _stream(
        self, method: str, request: Any, options: Any, data: bytes | AsyncIterable[bytes]
    ) -> AsyncIterator[bytes]:
        call = self._t.stream(method)

        async def send() -> None:
            seq = 0
            async for piece in _pieces(data):
                payload = common_pb2.StreamPayload(data=piece, seq=seq)
                await call.write(request(options=options if seq == 0 else None, payload=payload))
                seq += 1
            if seq == 0:  # empty data: the options alone
                await call.write(request(options=options))
            await call.done_writing()

        sender = asyncio.create_task(send())
        try:
            while (response := await call.read()) is not EOF:
                yield response.payload.data
            await sender
        finally:
            if not sender.done():
                sender.cancel()
                call.cancel()
            with contextlib.suppress(BaseException):  # the read reported the call's error
                await sender

"""Cryption on both wire APIs: Layotto's ``CryptionService`` (Encrypt, Decrypt) and Dapr's
``EncryptAlpha1``/``DecryptAlpha1`` streams and ``Subtle*Alpha1`` RPCs.

Both speak Dapr's scheme v1 (:mod:`layotto.server.runtime.cryption`), so a Layotto ciphertext is
a Dapr one: its header names the key version (``name/version``) that sealed it, and Decrypt
needs no key id. Where daprd requires ``key_wrap_algorithm``, an empty one here picks by the key's
type (A256KW for a symmetric key, RSA-OAEP-256 for RSA), as Layotto's Encrypt does. Streams are
processed one chunk at a time; a response chunk is sent only once its segment verified.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import crypto_pb2 as dapr
from layotto.proto.extension.v1.cryption import cryption_pb2 as layotto
from layotto.server.api.adapter import Context
from layotto.server.components.crypto import KeyStore
from layotto.server.components.crypto.keys import public_jwk, public_pem
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument, KeyNotFound
from layotto.server.runtime import cryption
from layotto.server.runtime.validation import require_text

#: the most bytes one response message carries (segments are 64 KiB)
CHUNK_BYTES = 2 * cryption.SEGMENT_SIZE


def _chunks(data: bytes) -> list[bytes]:
    return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)]


class CryptionApi:
    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    def _store(self, name: str, field: str = "component_name") -> KeyStore:
        store = self._components.find("crypto", name, field)
        assert isinstance(store, KeyStore)  # the crypto registry only holds key stores
        return store

    # Layotto's CryptionService

    async def Encrypt(self, request: layotto.EncryptRequest, context: Context) -> layotto.EncryptResponse:
        key_id = require_text(request.key_id, "key_id")
        ciphertext, key = await cryption.seal(self._store(request.component_name), key_id, request.plain_text)
        return layotto.EncryptResponse(
            cipher_text=ciphertext, key_id=key.name, key_version_id=key.version, request_id=uuid.uuid4().hex
        )

    async def Decrypt(self, request: layotto.DecryptRequest, context: Context) -> layotto.DecryptResponse:
        store = self._store(request.component_name)
        plaintext, key = await cryption.open_sealed(store, request.cipher_text)
        return layotto.DecryptResponse(
            plain_text=plaintext, key_id=key.name, key_version_id=key.version, request_id=uuid.uuid4().hex
        )

    # Dapr's streams

    async def EncryptAlpha1(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        payloads = _payloads(requests)
        first, data = await anext(payloads, (None, b""))
        if first is None:
            raise InvalidArgument("options", "the first message must carry the options")
        options = first.options
        store = self._store(options.component_name, "options.component_name")
        if not options.key_name:
            raise InvalidArgument("options.key_name", "required: the key that seals the data")
        sealing = await cryption.start_sealing(
            store,
            options.key_name,
            algorithm=options.key_wrap_algorithm,
            cipher=options.data_encryption_cipher,
            decryption_key_name=options.decryption_key_name,
            omit_key_name=options.omit_decryption_key_name,
        )
        out = _Responses(dapr.EncryptResponse)
        yield out.message(sealing.header)
        while True:
            for chunk in _chunks(await sealing.segments.feed(data)):
                yield out.message(chunk)
            item = await anext(payloads, None)
            if item is None:
                break
            data = item[1]
        for chunk in _chunks(sealing.segments.finish()):
            yield out.message(chunk)

    async def DecryptAlpha1(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        payloads = _payloads(requests)
        first, data = await anext(payloads, (None, b""))
        if first is None:
            raise InvalidArgument("options", "the first message must carry the options")
        store = self._store(first.options.component_name, "options.component_name")
        header = cryption.HeaderReader("payload")
        rest = header.feed(data)
        while rest is None:
            item = await anext(payloads, None)
            if item is None:
                header.finish()
            else:
                rest = header.feed(item[1])
        opening = await cryption.start_opening(store, header.lines, first.options.key_name)
        out = _Responses(dapr.DecryptResponse)
        data = rest
        while True:
            for chunk in _chunks(await opening.segments.feed(data)):
                yield out.message(chunk)
            item = await anext(payloads, None)
            if item is None:
                break
            data = item[1]
        for chunk in _chunks(opening.segments.finish()):
            yield out.message(chunk)

    # Dapr's subtle RPCs

    async def SubtleGetKeyAlpha1(self, request: dapr.SubtleGetKeyRequest, context: Context) -> Any:
        store = self._store(request.component_name)
        name = require_text(request.name, "name")
        key, public = await store.public_key(name)
        if public is None:  # a symmetric key is never exported
            raise KeyNotFound("name", store.name, name)
        if request.format == dapr.SubtleGetKeyRequest.JSON:
            text = json.dumps(public_jwk(public, key.ref))
        else:
            text = public_pem(public)
        return dapr.SubtleGetKeyResponse(name=key.ref, public_key=text)

    async def SubtleEncryptAlpha1(self, request: dapr.SubtleEncryptRequest, context: Context) -> Any:
        store, name = self._store(request.component_name), require_text(request.key_name, "key_name")
        ciphertext, tag = await store.encrypt(
            name, request.algorithm, request.plaintext, request.nonce, request.associated_data
        )
        return dapr.SubtleEncryptResponse(ciphertext=ciphertext, tag=tag)

    async def SubtleDecryptAlpha1(self, request: dapr.SubtleDecryptRequest, context: Context) -> Any:
        store, name = self._store(request.component_name), require_text(request.key_name, "key_name")
        plaintext = await store.decrypt(
            name,
            request.algorithm,
            request.ciphertext,
            nonce=request.nonce,
            tag=request.tag,
            aad=request.associated_data,
        )
        return dapr.SubtleDecryptResponse(plaintext=plaintext)

    async def SubtleWrapKeyAlpha1(self, request: dapr.SubtleWrapKeyRequest, context: Context) -> Any:
        store, name = self._store(request.component_name), require_text(request.key_name, "key_name")
        _, wrapped = await store.wrap(name, request.algorithm, request.plaintext_key, request.nonce)
        return dapr.SubtleWrapKeyResponse(wrapped_key=wrapped)

    async def SubtleUnwrapKeyAlpha1(self, request: dapr.SubtleUnwrapKeyRequest, context: Context) -> Any:
        store, name = self._store(request.component_name), require_text(request.key_name, "key_name")
        key = await store.unwrap(name, request.algorithm, request.wrapped_key, request.nonce)
        return dapr.SubtleUnwrapKeyResponse(plaintext_key=key)

    async def SubtleSignAlpha1(self, request: dapr.SubtleSignRequest, context: Context) -> Any:
        store, name = self._store(request.component_name), require_text(request.key_name, "key_name")
        return dapr.SubtleSignResponse(signature=await store.sign(name, request.algorithm, request.digest))

    async def SubtleVerifyAlpha1(self, request: dapr.SubtleVerifyRequest, context: Context) -> Any:
        store, name = self._store(request.component_name), require_text(request.key_name, "key_name")
        valid = await store.verify(name, request.algorithm, request.digest, request.signature)
        return dapr.SubtleVerifyResponse(valid=valid)


class _Responses:
    """Numbers the payload chunks of a response stream from 0."""

    def __init__(self, message: Any) -> None:
        self._message = message
        self._seq = 0

    def message(self, data: bytes) -> Any:
        response = self._message(payload=common_pb2.StreamPayload(data=data, seq=self._seq))
        self._seq += 1
        return response


async def _payloads(requests: AsyncIterator[Any]) -> AsyncIterator[tuple[Any, bytes]]:
    """(request, payload bytes) of a Dapr crypto stream: the first message must carry options,
    and payload ``seq`` numbers must count up from 0."""
    expected, first = 0, True
    async for request in requests:
        if first and not request.HasField("options"):
            raise InvalidArgument("options", "the first message must carry the options")
        if request.HasField("payload"):
            if request.payload.seq != expected:
                raise InvalidArgument("payload.seq", f"expected chunk {expected}, got {request.payload.seq}")
            expected += 1
            yield request, request.payload.data
        elif first:
            yield request, b""
        first = False

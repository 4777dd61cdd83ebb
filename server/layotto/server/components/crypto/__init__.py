"""The crypto building block: key stores, whose keys encrypt, wrap and sign.

A key store answers :meth:`KeyStore.key` for a key name, ``name`` (its newest version) or
``name/version`` (that version). Rotation is adding a version: the newest one seals new data,
and every version still opens what it sealed, because ciphertexts record ``name/version``.
The store's keys never leave it, except public halves (:meth:`KeyStore.public_key`).

The operations (``wrap``, ``encrypt``, ``sign``, ...) run here on the key material with the
``cryptography`` package; a store backed by a remote KMS would override them.
"""

from __future__ import annotations

import asyncio
import re
from abc import abstractmethod
from collections.abc import Iterable

from layotto.server.components.base import Component
from layotto.server.components.crypto import subtle
from layotto.server.components.crypto.keys import Key, PublicKey

__all__ = ["Key", "KeyStore", "newest_version"]


def _natural(version: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"(\d+)", version) if part]


def newest_version(versions: Iterable[str]) -> str | None:
    """The newest of ``versions`` in natural order (``v10`` after ``v9``), None when there is none."""
    return max(versions, key=_natural, default=None)


class KeyStore(Component):
    """Keys by name. ``key`` raises :class:`~layotto.server.errors.KeyNotFound` for an unknown
    name or version; the operations raise what :mod:`.subtle` raises."""

    @abstractmethod
    async def key(self, name: str, field: str = "key_name") -> Key:
        """The key ``name`` (its newest version) or ``name/version``; ``field`` names the request
        field for the KeyNotFound error."""

    async def public_key(self, name: str) -> tuple[Key, PublicKey | None]:
        """The key and its public half (None for a symmetric key, which is never exported)."""
        key = await self.key(name)
        return key, key.public()

    async def wrap(self, name: str, algorithm: str, plaintext_key: bytes, nonce: bytes = b"") -> tuple[Key, bytes]:
        """(the key used, ``plaintext_key`` wrapped with it)."""
        key = await self.key(name)
        return key, await asyncio.to_thread(subtle.wrap, key, algorithm, plaintext_key, nonce)

    async def unwrap(self, name: str, algorithm: str, wrapped_key: bytes, nonce: bytes = b"") -> bytes:
        key = await self.key(name)
        return await asyncio.to_thread(subtle.unwrap, key, algorithm, wrapped_key, nonce)

    async def encrypt(
        self, name: str, algorithm: str, plaintext: bytes, nonce: bytes, aad: bytes
    ) -> tuple[bytes, bytes]:
        key = await self.key(name)
        return await asyncio.to_thread(subtle.encrypt, key, algorithm, plaintext, nonce, aad)

    async def decrypt(
        self, name: str, algorithm: str, ciphertext: bytes, *, nonce: bytes, tag: bytes, aad: bytes
    ) -> bytes:
        key = await self.key(name)
        return await asyncio.to_thread(subtle.decrypt, key, algorithm, ciphertext, nonce=nonce, tag=tag, aad=aad)

    async def sign(self, name: str, algorithm: str, digest: bytes) -> bytes:
        key = await self.key(name)
        return await asyncio.to_thread(subtle.sign, key, algorithm, digest)

    async def verify(self, name: str, algorithm: str, digest: bytes, signature: bytes) -> bool:
        key = await self.key(name)
        return await asyncio.to_thread(subtle.verify, key, algorithm, digest, signature)

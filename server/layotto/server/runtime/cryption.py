"""Dapr's encryption scheme v1 (``dapr.io/enc/v1``), streamed, over the crypto building block.

Format (Dapr kit's ``schemes/enc/v1``)::

    dapr.io/enc/v1\\n
    {"k":KEY,"kw":WRAP_ID,"wfk":B64,"cph":CIPHER_ID,"np":B64}\\n      (the manifest, compact JSON)
    BASE64(HMAC-SHA-256(HKDF(file key, info="header"), first two lines))\\n
    segment_0 || segment_1 || ...    each 64 KiB of plaintext sealed with a 16-byte tag

A random 32-byte file key is wrapped by the key store (``A256KW`` = 1, ``A128CBC-NOPAD`` = 2,
``A192CBC-NOPAD`` = 3, ``A256CBC-NOPAD`` = 4, ``RSA-OAEP-256`` = 5). Segments are sealed with
AES-256-GCM (1) or ChaCha20-Poly1305 (2) under ``HKDF(file key, salt=nonce prefix,
info="payload")``, nonce ``prefix(7) || index(4, big-endian) || last(1)``, so truncation,
reordering and tampering all fail authentication. Memory stays bounded: a stream holds at most
one segment beside the chunk being processed.

Failures raise :class:`~layotto.server.errors.DecryptionFailed` (never any plaintext of a segment
that does not verify), :class:`~layotto.server.errors.InvalidArgument` and what the key store raises.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from layotto.server.components.crypto import KeyStore
from layotto.server.components.crypto.keys import Key
from layotto.server.errors import DecryptionFailed, InvalidArgument

SCHEME = b"dapr.io/enc/v1"
SEGMENT_SIZE = 64 * 1024
TAG_SIZE = 16
NONCE_PREFIX_SIZE = 7
FILE_KEY_SIZE = 32
MAX_SEGMENTS = 2**32
#: chunks at least this big are processed on a worker thread, so the event loop keeps serving
OFFLOAD_BYTES = 4 * 1024 * 1024
CIPHERS = {"AES-GCM": 1, "CHACHA20-POLY1305": 2}
WRAP_ALGORITHMS = {"A256KW": 1, "A128CBC-NOPAD": 2, "A192CBC-NOPAD": 3, "A256CBC-NOPAD": 4, "RSA-OAEP-256": 5}
ALIASES = {"AES": "A256KW", "RSA": "RSA-OAEP-256"}
_CIPHER_NAMES = {number: name for name, number in CIPHERS.items()}
_WRAP_NAMES = {number: name for name, number in WRAP_ALGORITHMS.items()}


def wrap_algorithm(name: str, field: str) -> str:
    """The scheme's name of a key wrap algorithm (``AES`` and ``RSA`` are aliases), or InvalidArgument."""
    resolved = ALIASES.get(name.upper(), name.upper())
    if resolved not in WRAP_ALGORITHMS:
        choices = ", ".join([*WRAP_ALGORITHMS, *ALIASES])
        raise InvalidArgument(field, f"key wrap algorithm {name!r} is not supported (supported: {choices})")
    if resolved.endswith("-NOPAD"):  # the scheme carries no IV for them: Dapr cannot use them either
        raise InvalidArgument(field, f"{resolved} needs an IV the scheme does not carry; use A256KW or RSA-OAEP-256")
    return resolved


def cipher_name(name: str, field: str) -> str:
    """The scheme's name of a data cipher ("" means AES-GCM), or InvalidArgument."""
    resolved = name.upper() or "AES-GCM"
    if resolved not in CIPHERS:
        raise InvalidArgument(field, f"cipher {name!r} is not supported (supported: {', '.join(CIPHERS)})")
    return resolved


def default_wrap_algorithm(key: Key) -> str:
    """The algorithm a key wraps file keys with when the caller names none: A256KW or RSA-OAEP-256."""
    return "A256KW" if key.symmetric else "RSA-OAEP-256"


def _hkdf(secret: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


@dataclass(frozen=True)
class Manifest:
    """The header's JSON manifest: the decryption key name ("" when omitted), the wrap algorithm,
    the wrapped file key, the data cipher and the 7-byte nonce prefix."""

    key_name: str
    wrap_algorithm: str
    wrapped_key: bytes
    cipher: str
    nonce_prefix: bytes

    def encode(self) -> bytes:
        document: dict[str, object] = {"k": self.key_name} if self.key_name else {}
        document |= {
            "kw": WRAP_ALGORITHMS[self.wrap_algorithm],
            "wfk": base64.b64encode(self.wrapped_key).decode(),
            "cph": CIPHERS[self.cipher],
            "np": base64.b64encode(self.nonce_prefix).decode(),
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes, field: str) -> Manifest:
        """Raises DecryptionFailed naming ``field`` for a manifest that is not the scheme's."""
        try:
            document = json.loads(raw)
            wrapped = base64.b64decode(document["wfk"], validate=True)
            prefix = base64.b64decode(document["np"], validate=True)
            manifest = cls(
                str(document.get("k") or ""),
                _WRAP_NAMES[document["kw"]],
                wrapped,
                _CIPHER_NAMES[document["cph"]],
                prefix,
            )
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise DecryptionFailed(field, "the header's manifest is not valid") from None
        if not manifest.wrapped_key or len(manifest.nonce_prefix) != NONCE_PREFIX_SIZE:
            raise DecryptionFailed(field, "the header's manifest is not valid")
        return manifest


class FileKey:
    """A message's file key and what is derived from it: the header MAC key and the payload AEAD."""

    def __init__(self, file_key: bytes, nonce_prefix: bytes, cipher: str) -> None:
        self._header_key = _hkdf(file_key, None, b"header")
        payload_key = _hkdf(file_key, nonce_prefix, b"payload")
        self._aead = AESGCM(payload_key) if cipher == "AES-GCM" else ChaCha20Poly1305(payload_key)
        self._prefix = nonce_prefix

    def _mac(self, manifest: bytes) -> hmac.HMAC:
        mac = hmac.HMAC(self._header_key, hashes.SHA256())
        mac.update(SCHEME + b"\n" + manifest + b"\n")
        return mac

    def header(self, manifest: bytes) -> bytes:
        """The three header lines, each ending in a newline."""
        return SCHEME + b"\n" + manifest + b"\n" + base64.b64encode(self._mac(manifest).finalize()) + b"\n"

    def verify_header(self, manifest: bytes, mac_b64: bytes, field: str) -> None:
        try:
            self._mac(manifest).verify(base64.b64decode(mac_b64, validate=True))
        except (InvalidSignature, binascii.Error, ValueError):
            raise DecryptionFailed(field, "the header does not verify: tampered, or not sealed with this key") from None

    def _nonce(self, index: int, last: bool) -> bytes:
        return self._prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")

    def seal(self, segment: bytes, index: int, last: bool) -> bytes:
        return self._aead.encrypt(self._nonce(index, last), segment, None)

    def open(self, segment: bytes, index: int, last: bool, field: str) -> bytes:
        try:
            return self._aead.decrypt(self._nonce(index, last), segment, None)
        except InvalidTag:
            raise DecryptionFailed(
                field, f"segment {index} does not verify: the data was tampered or truncated"
            ) from None


class Segments:
    """Cuts a stream into fixed-size segments and seals (or opens) each one as it completes.

    A segment is processed only once a byte past it arrived (or :meth:`finish` is called), since
    the last segment's nonce differs; so at most ``size`` bytes wait here between chunks.
    """

    def __init__(self, file_key: FileKey, size: int, sealing: bool, field: str) -> None:
        self._key = file_key
        self._size = size
        self._sealing = sealing
        self._field = field
        self._pending = b""
        self._index = 0

    def _process(self, segment: bytes, last: bool) -> bytes:
        if self._index >= MAX_SEGMENTS:
            raise InvalidArgument(self._field, "the stream is over the scheme's limit of 2^32 segments")
        out = (
            self._key.seal(segment, self._index, last)
            if self._sealing
            else self._key.open(segment, self._index, last, self._field)
        )
        self._index += 1
        return out

    def update(self, data: bytes) -> bytes:
        """The processed segments that ``data`` completes (b"" when none)."""
        data = self._pending + data if self._pending else data
        size, done, parts = self._size, 0, []
        while len(data) - done > size:
            parts.append(self._process(data[done : done + size], last=False))
            done += size
        self._pending = data[done:]
        return b"".join(parts)

    async def feed(self, data: bytes) -> bytes:
        """:meth:`update`, on a worker thread for a chunk of :data:`OFFLOAD_BYTES` or more."""
        if len(data) < OFFLOAD_BYTES:
            return self.update(data)
        return await asyncio.to_thread(self.update, data)

    def finish(self) -> bytes:
        """The last segment, processed (b"" for an empty message)."""
        pending, self._pending = self._pending, b""
        if not pending:
            if self._index:  # a stream cut right after a full segment: the last one is missing
                raise DecryptionFailed(self._field, "the data is truncated: its last segment is missing")
            return b""
        if not self._sealing and len(pending) <= TAG_SIZE:
            raise DecryptionFailed(self._field, "the data is truncated: its last segment is too short")
        return self._process(pending, last=True)


@dataclass(frozen=True)
class Sealing:
    """An encryption under way: the header to send first, then what ``segments`` produce."""

    header: bytes
    segments: Segments
    key: Key


async def start_sealing(
    store: KeyStore,
    key_name: str,
    *,
    algorithm: str = "",
    cipher: str = "",
    decryption_key_name: str = "",
    omit_key_name: bool = False,
    field: str = "payload",
) -> Sealing:
    """A new file key wrapped with ``key_name``'s key (newest version when unversioned), and the
    signed header. The manifest names the key as ``name/version`` unless ``decryption_key_name``
    replaces it or ``omit_key_name`` leaves it out. ``algorithm`` "" picks by key type."""
    cipher = cipher_name(cipher, "data_encryption_cipher")
    key = await store.key(key_name, "key_name")
    algorithm = wrap_algorithm(algorithm, "key_wrap_algorithm") if algorithm else default_wrap_algorithm(key)
    secret = os.urandom(FILE_KEY_SIZE + NONCE_PREFIX_SIZE)
    file_key, prefix = secret[:FILE_KEY_SIZE], secret[FILE_KEY_SIZE:]
    key, wrapped = await store.wrap(key.ref, algorithm, file_key)
    name = "" if omit_key_name else (decryption_key_name or key.ref)
    manifest = Manifest(name, algorithm, wrapped, cipher, prefix).encode()
    sealer = FileKey(file_key, prefix, cipher)
    return Sealing(sealer.header(manifest), Segments(sealer, SEGMENT_SIZE, sealing=True, field=field), key)


class HeaderReader:
    """Collects a sealed stream's header lines; :meth:`feed` answers the bytes after it once complete."""

    def __init__(self, field: str) -> None:
        self._field = field
        self._buffer = b""
        self.lines: list[bytes] = []

    def feed(self, data: bytes) -> bytes | None:
        """None while the header is incomplete; then the payload bytes that followed it."""
        self._buffer += data
        while len(self.lines) < 3:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > SEGMENT_SIZE:
                    raise DecryptionFailed(self._field, "no dapr.io/enc/v1 header within the first 64 KiB")
                return None
            line, self._buffer = self._buffer[:end], self._buffer[end + 1 :]
            if not self.lines and line != SCHEME:
                raise DecryptionFailed(self._field, "the data does not start with the dapr.io/enc/v1 header")
            self.lines.append(line)
        rest, self._buffer = self._buffer, b""
        return rest

    def finish(self) -> None:
        if len(self.lines) < 3:
            raise DecryptionFailed(self._field, "the data ends inside its dapr.io/enc/v1 header")


@dataclass(frozen=True)
class Opening:
    """A decryption under way: the key that opened the header, and the segments to feed."""

    key: Key
    segments: Segments


async def start_opening(store: KeyStore, lines: list[bytes], key_name: str = "", field: str = "payload") -> Opening:
    """Unwraps the file key of a header (its three ``lines``) and verifies the header's MAC.

    ``key_name`` overrides the manifest's key name. KeyNotFound when neither names a key the
    store has; DecryptionFailed when the file key does not unwrap or the header does not verify.
    """
    manifest = Manifest.decode(lines[1], field)
    name = key_name or manifest.key_name
    if not name:
        raise InvalidArgument("key_name", "the data's header names no key: the request must name one")
    key = await store.key(name, "key_name" if key_name else field)
    try:
        file_key = await store.unwrap(key.ref, manifest.wrap_algorithm, manifest.wrapped_key)
    except DecryptionFailed:
        raise DecryptionFailed(
            field, f"the file key does not unwrap with key {key.ref!r}: another key sealed it"
        ) from None
    except InvalidArgument as error:  # the key cannot do the header's algorithm: not this key's data
        raise DecryptionFailed(field, f"the data cannot be opened with key {key.ref!r}: {error.message}") from None
    if len(file_key) != FILE_KEY_SIZE:
        raise DecryptionFailed(field, "the unwrapped file key is not 32 bytes")
    opener = FileKey(file_key, manifest.nonce_prefix, manifest.cipher)
    opener.verify_header(lines[1], lines[2], field)
    return Opening(key, Segments(opener, SEGMENT_SIZE + TAG_SIZE, sealing=False, field=field))


async def seal(store: KeyStore, key_name: str, plaintext: bytes) -> tuple[bytes, Key]:
    """A whole message sealed with ``key_name``'s newest key: (ciphertext, the key version used)."""
    sealing = await start_sealing(store, key_name, field="plain_text")
    body = await sealing.segments.feed(plaintext) + sealing.segments.finish()
    return sealing.header + body, sealing.key


async def open_sealed(store: KeyStore, ciphertext: bytes, field: str = "cipher_text") -> tuple[bytes, Key]:
    """The plaintext of a whole sealed message and the key version that opened it."""
    reader = HeaderReader(field)
    rest = reader.feed(ciphertext)
    reader.finish()
    assert rest is not None
    opening = await start_opening(store, reader.lines, field=field)
    return await opening.segments.feed(rest) + opening.segments.finish(), opening.key

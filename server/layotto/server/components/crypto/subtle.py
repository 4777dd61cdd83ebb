"""Low-level operations on one key by JOSE algorithm name, all done by ``cryptography``.

Algorithm names are Dapr's (JWA names plus Dapr's ``-NOPAD`` AES-CBC variants). Bad input
raises :class:`~layotto.server.errors.InvalidArgument` naming the request field
(``algorithm``, ``nonce``, ``tag``); a ciphertext or wrapped key that does not open raises
:class:`~layotto.server.errors.DecryptionFailed`.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, utils
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from layotto.server.components.crypto.keys import Key
from layotto.server.errors import DecryptionFailed, InvalidArgument

_AES_SIZES = {"128": 16, "192": 24, "256": 32}
_RSA_OAEP_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "RSA-OAEP": hashes.SHA1,
    "RSA-OAEP-256": hashes.SHA256,
    "RSA-OAEP-384": hashes.SHA384,
    "RSA-OAEP-512": hashes.SHA512,
}
_SIGNATURE_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


def _symmetric(key: Key, algorithm: str) -> bytes:
    if not isinstance(key.material, bytes):
        raise InvalidArgument("algorithm", f"{algorithm} needs a symmetric key; key {key.ref!r} is not one")
    return key.material


def _aes_key(key: Key, algorithm: str, bits: str) -> bytes:
    secret = _symmetric(key, algorithm)
    if len(secret) != _AES_SIZES[bits]:
        raise InvalidArgument("algorithm", f"{algorithm} needs a {bits}-bit key; key {key.ref!r} has {len(secret) * 8}")
    return secret


def _rsa_public(key: Key, algorithm: str) -> rsa.RSAPublicKey:
    public = key.public()
    if not isinstance(public, rsa.RSAPublicKey):
        raise InvalidArgument("algorithm", f"{algorithm} needs an RSA key; key {key.ref!r} is not one")
    return public


def _rsa_private(key: Key, algorithm: str) -> rsa.RSAPrivateKey:
    if not isinstance(key.material, rsa.RSAPrivateKey):
        raise InvalidArgument("algorithm", f"{algorithm} needs an RSA private key; key {key.ref!r} is not one")
    return key.material


def _oaep(algorithm: str) -> asym_padding.OAEP:
    digest = _RSA_OAEP_HASHES[algorithm]()
    return asym_padding.OAEP(mgf=asym_padding.MGF1(digest), algorithm=digest, label=None)


def _unsupported(algorithm: str, operation: str) -> InvalidArgument:
    return InvalidArgument("algorithm", f"{algorithm!r} is not supported for {operation}")


def _nonce(nonce: bytes, size: int, algorithm: str) -> bytes:
    if len(nonce) != size:
        raise InvalidArgument("nonce", f"{algorithm} needs a {size}-byte nonce, got {len(nonce)} bytes")
    return nonce


def _cbc(key: Key, algorithm: str, nonce: bytes) -> tuple[Cipher[modes.CBC], bool]:
    bits = algorithm[1:4]
    cipher = Cipher(algorithms.AES(_aes_key(key, algorithm, bits)), modes.CBC(_nonce(nonce, 16, algorithm)))
    return cipher, not algorithm.endswith("-NOPAD")


def _is_cbc(algorithm: str) -> bool:
    return algorithm in {f"A{b}CBC" for b in _AES_SIZES} | {f"A{b}CBC-NOPAD" for b in _AES_SIZES}


def encrypt(key: Key, algorithm: str, plaintext: bytes, nonce: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """(ciphertext, tag) of ``plaintext``; the tag is empty for algorithms without one."""
    if algorithm in _RSA_OAEP_HASHES:
        return _rsa_public(key, algorithm).encrypt(plaintext, _oaep(algorithm)), b""
    if algorithm in {f"A{b}GCM" for b in _AES_SIZES}:
        sealed = AESGCM(_aes_key(key, algorithm, algorithm[1:4])).encrypt(_nonce(nonce, 12, algorithm), plaintext, aad)
        return sealed[:-16], sealed[-16:]
    if algorithm == "C20P":
        sealed = ChaCha20Poly1305(_aes_key(key, algorithm, "256")).encrypt(_nonce(nonce, 12, algorithm), plaintext, aad)
        return sealed[:-16], sealed[-16:]
    if algorithm in {f"A{b}KW" for b in _AES_SIZES}:
        return wrap(key, algorithm, plaintext, nonce), b""
    if _is_cbc(algorithm):
        cipher, padded = _cbc(key, algorithm, nonce)
        if padded:
            padder = padding.PKCS7(128).padder()
            plaintext = padder.update(plaintext) + padder.finalize()
        elif len(plaintext) % 16:
            raise InvalidArgument("plaintext", f"{algorithm} needs a multiple of 16 bytes, got {len(plaintext)}")
        encryptor = cipher.encryptor()
        return encryptor.update(plaintext) + encryptor.finalize(), b""
    raise _unsupported(algorithm, "encryption")


def decrypt(key: Key, algorithm: str, ciphertext: bytes, *, nonce: bytes, tag: bytes, aad: bytes) -> bytes:
    """The plaintext of ``ciphertext``; DecryptionFailed when it does not open with this key."""
    try:
        if algorithm in _RSA_OAEP_HASHES:
            return _rsa_private(key, algorithm).decrypt(ciphertext, _oaep(algorithm))
        if algorithm in {f"A{b}GCM" for b in _AES_SIZES}:
            aead = AESGCM(_aes_key(key, algorithm, algorithm[1:4]))
            return aead.decrypt(_nonce(nonce, 12, algorithm), ciphertext + tag, aad)
        if algorithm == "C20P":
            chacha = ChaCha20Poly1305(_aes_key(key, algorithm, "256"))
            return chacha.decrypt(_nonce(nonce, 12, algorithm), ciphertext + tag, aad)
        if algorithm in {f"A{b}KW" for b in _AES_SIZES}:
            return unwrap(key, algorithm, ciphertext, nonce)
        if _is_cbc(algorithm):
            cipher, padded = _cbc(key, algorithm, nonce)
            if len(ciphertext) % 16:
                raise DecryptionFailed("ciphertext", f"{algorithm} ciphertext must be a multiple of 16 bytes")
            decryptor = cipher.decryptor()
            plain = decryptor.update(ciphertext) + decryptor.finalize()
            if not padded:
                return plain
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(plain) + unpadder.finalize()
    except (InvalidTag, ValueError) as error:
        if isinstance(error, InvalidArgument | DecryptionFailed):
            raise
        raise DecryptionFailed("ciphertext", f"does not decrypt with key {key.ref!r} and {algorithm}") from None
    raise _unsupported(algorithm, "decryption")


def wrap(key: Key, algorithm: str, plaintext_key: bytes, nonce: bytes = b"") -> bytes:
    """``plaintext_key`` wrapped with ``key``: AES-KW (A128KW, A192KW, A256KW), RSA-OAEP(-256, -384,
    -512), or AES-CBC-NOPAD with a 16-byte ``nonce``."""
    if algorithm in {f"A{b}KW" for b in _AES_SIZES}:
        if len(plaintext_key) < 16 or len(plaintext_key) % 8:
            raise InvalidArgument("plaintext_key", f"{algorithm} wraps keys of 16 bytes or more, a multiple of 8")
        return aes_key_wrap(_aes_key(key, algorithm, algorithm[1:4]), plaintext_key)
    if algorithm in _RSA_OAEP_HASHES or _is_cbc(algorithm):
        return encrypt(key, algorithm, plaintext_key, nonce, b"")[0]
    raise _unsupported(algorithm, "key wrapping")


def unwrap(key: Key, algorithm: str, wrapped_key: bytes, nonce: bytes = b"") -> bytes:
    """The key ``wrap`` wrapped; DecryptionFailed when it does not unwrap with this key."""
    if algorithm in {f"A{b}KW" for b in _AES_SIZES}:
        try:
            return aes_key_unwrap(_aes_key(key, algorithm, algorithm[1:4]), wrapped_key)
        except (InvalidUnwrap, ValueError):
            raise DecryptionFailed("wrapped_key", f"does not unwrap with key {key.ref!r} and {algorithm}") from None
    if algorithm in _RSA_OAEP_HASHES or _is_cbc(algorithm):
        return decrypt(key, algorithm, wrapped_key, nonce=nonce, tag=b"", aad=b"")
    raise _unsupported(algorithm, "key unwrapping")


def _signature_hash(algorithm: str) -> hashes.HashAlgorithm:
    return _SIGNATURE_HASHES[algorithm[2:]]()


def _ec_key(key: Key, algorithm: str) -> ec.EllipticCurvePublicKey:
    public = key.public()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != _EC_CURVES[algorithm]:
        raise InvalidArgument("algorithm", f"{algorithm} needs an EC {_EC_CURVES[algorithm]} key; {key.ref!r} is not")
    return public


def sign(key: Key, algorithm: str, digest: bytes) -> bytes:
    """The signature of a precomputed ``digest`` (RS*, PS*, ES* as r||s) or, for EdDSA, of the bytes."""
    material = key.material
    if algorithm[:2] in ("RS", "PS") and algorithm[2:] in _SIGNATURE_HASHES:
        pad = _rsa_padding(algorithm)
        return _rsa_private(key, algorithm).sign(digest, pad, utils.Prehashed(_signature_hash(algorithm)))
    if algorithm in _EC_CURVES:
        _ec_key(key, algorithm)
        if not isinstance(material, ec.EllipticCurvePrivateKey):
            raise InvalidArgument("algorithm", f"{algorithm} signing needs a private key; {key.ref!r} is public")
        der = material.sign(digest, ec.ECDSA(utils.Prehashed(_signature_hash(algorithm))))
        r, s = utils.decode_dss_signature(der)
        size = (material.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if algorithm == "EdDSA":
        if not isinstance(material, ed25519.Ed25519PrivateKey):
            raise InvalidArgument("algorithm", f"EdDSA needs an Ed25519 private key; {key.ref!r} is not one")
        return material.sign(digest)
    raise _unsupported(algorithm, "signing")


def _rsa_padding(algorithm: str) -> asym_padding.AsymmetricPadding:
    if algorithm.startswith("PS"):
        return asym_padding.PSS(
            mgf=asym_padding.MGF1(_signature_hash(algorithm)), salt_length=asym_padding.PSS.DIGEST_LENGTH
        )
    return asym_padding.PKCS1v15()


def verify(key: Key, algorithm: str, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s signature of ``digest`` (as :func:`sign` makes them)."""
    try:
        if algorithm[:2] in ("RS", "PS") and algorithm[2:] in _SIGNATURE_HASHES:
            prehashed = utils.Prehashed(_signature_hash(algorithm))
            _rsa_public(key, algorithm).verify(signature, digest, _rsa_padding(algorithm), prehashed)
            return True
        if algorithm in _EC_CURVES:
            public = _ec_key(key, algorithm)
            size = (public.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                return False
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            der = utils.encode_dss_signature(r, s)
            public.verify(der, digest, ec.ECDSA(utils.Prehashed(_signature_hash(algorithm))))
            return True
        if algorithm == "EdDSA":
            public_ed = key.public()
            if not isinstance(public_ed, ed25519.Ed25519PublicKey):
                raise InvalidArgument("algorithm", f"EdDSA needs an Ed25519 key; {key.ref!r} is not one")
            public_ed.verify(signature, digest)
            return True
    except InvalidSignature:
        return False
    raise _unsupported(algorithm, "signature verification")

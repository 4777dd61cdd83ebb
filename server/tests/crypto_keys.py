"""Key files of the crypto tests: a directory for the local store and the same keys as a JWKS."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def oct_jwk(secret: bytes, kid: str = "") -> dict[str, Any]:
    jwk = {"kty": "oct", "k": b64url(secret)}
    return {**jwk, "kid": kid} if kid else jwk


def _uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    numbers = key.private_numbers()
    public = numbers.public_numbers
    return {
        "kty": "RSA",
        "kid": kid,
        "n": _uint(public.n),
        "e": _uint(public.e),
        "d": _uint(numbers.d),
        "p": _uint(numbers.p),
        "q": _uint(numbers.q),
    }


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def write_key_dir(root: Path) -> dict[str, bytes]:
    """aes.json (256-bit), rsa.pem, ec.pem, rotating/v1.json; answers the symmetric secrets by file."""
    root.mkdir(parents=True, exist_ok=True)
    secrets = {"aes.json": os.urandom(32), "rotating/v1.json": os.urandom(32)}
    (root / "rotating").mkdir(exist_ok=True)
    for name, secret in secrets.items():
        (root / name).write_text(json.dumps(oct_jwk(secret)))
    pem = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    (root / "rsa.pem").write_bytes(RSA_KEY.private_bytes(serialization.Encoding.PEM, pem, none))
    (root / "ec.pem").write_bytes(EC_KEY.private_bytes(serialization.Encoding.PEM, pem, none))
    return secrets


def jwks(secrets: dict[str, bytes]) -> str:
    """The JWKS holding aes (the dir's aes.json), rot/1 and rsa."""
    keys = [oct_jwk(secrets["aes.json"], "aes"), oct_jwk(secrets["rotating/v1.json"], "rot/1"), rsa_jwk(RSA_KEY, "rsa")]
    return json.dumps({"keys": keys})

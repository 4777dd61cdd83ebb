"""Keys of the crypto building block: read from PEM or JWK, exported as PEM or JWK.

Only the encoding is handled here; every key object is a ``cryptography`` key (or the raw
bytes of a symmetric key), and the ``cryptography`` package does every operation on it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
#: a symmetric key's bytes, or an asymmetric private or public key
KeyMaterial: TypeAlias = bytes | PrivateKey | PublicKey

_CURVES: dict[str, type[ec.EllipticCurve]] = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class KeyFormatError(ValueError):
    """The bytes are not a key this building block reads (the message says why)."""


@dataclass(frozen=True)
class Key:
    """One version of a named key. ``name`` is what requests use; ``version`` is "" for an
    unversioned key. ``ref`` (``name/version``, or ``name``) finds this very version again."""

    name: str
    version: str
    material: KeyMaterial

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.version}" if self.version else self.name

    @property
    def symmetric(self) -> bool:
        return isinstance(self.material, bytes)

    def public(self) -> PublicKey | None:
        """The public half (the key itself when public), None for a symmetric key."""
        material = self.material
        if isinstance(material, bytes):
            return None
        if isinstance(material, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            return material.public_key()
        return material


def _b64url(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise KeyFormatError(f"JWK member {field!r} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise KeyFormatError(f"JWK member {field!r} is not base64url") from None


def _int(jwk: dict[str, Any], field: str) -> int:
    return int.from_bytes(_b64url(jwk.get(field), field), "big")


def _rsa_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPrivateKey | rsa.RSAPublicKey:
    public = rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n"))
    if "d" not in jwk:
        return public.public_key()
    p, q, d = _int(jwk, "p"), _int(jwk, "q"), _int(jwk, "d")
    private = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    )
    return private.private_key()


def _ec_from_jwk(jwk: dict[str, Any]) -> ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey:
    curve = _CURVES.get(str(jwk.get("crv")))
    if curve is None:
        raise KeyFormatError(f"EC curve {jwk.get('crv')!r} is not supported (supported: {', '.join(_CURVES)})")
    public = ec.EllipticCurvePublicNumbers(_int(jwk, "x"), _int(jwk, "y"), curve())
    if "d" not in jwk:
        return public.public_key()
    return ec.EllipticCurvePrivateNumbers(_int(jwk, "d"), public).private_key()


def _okp_from_jwk(jwk: dict[str, Any]) -> ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey:
    if jwk.get("crv") != "Ed25519":
        raise KeyFormatError(f"OKP curve {jwk.get('crv')!r} is not supported (supported: Ed25519)")
    if "d" in jwk:
        return ed25519.Ed25519PrivateKey.from_private_bytes(_b64url(jwk["d"], "d"))
    return ed25519.Ed25519PublicKey.from_public_bytes(_b64url(jwk.get("x"), "x"))


def key_from_jwk(jwk: Any) -> KeyMaterial:
    """The key of one JWK object (kty ``oct``, ``RSA``, ``EC`` P-256/384/521, ``OKP`` Ed25519).

    Raises :class:`KeyFormatError` naming the member that is missing or wrong.
    """
    if not isinstance(jwk, dict):
        raise KeyFormatError("a JWK must be a JSON object")
    kty = jwk.get("kty")
    try:
        if kty == "oct":
            return _b64url(jwk.get("k"), "k")
        if kty == "RSA":
            return _rsa_from_jwk(jwk)
        if kty == "EC":
            return _ec_from_jwk(jwk)
        if kty == "OKP":
            return _okp_from_jwk(jwk)
    except ValueError as error:  # cryptography refuses inconsistent numbers
        if isinstance(error, KeyFormatError):
            raise
        raise KeyFormatError(f"the {kty} JWK is not a valid key: {error}") from None
    raise KeyFormatError(f"JWK kty {kty!r} is not supported (supported: oct, RSA, EC, OKP)")


def key_from_pem(data: bytes) -> KeyMaterial:
    """The first key of PEM data: a private key (PKCS#1, PKCS#8, SEC1) or a public key
    (SubjectPublicKeyInfo, PKCS#1). Raises :class:`KeyFormatError`."""
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        pass
    else:
        if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise KeyFormatError(f"{type(private).__name__} keys are not supported")
        return private
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFormatError("not a PEM private or public key (encrypted PEM is not supported)") from None
    if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise KeyFormatError(f"{type(public).__name__} keys are not supported")
    return public


def read_key(data: bytes, file_name: str) -> KeyMaterial:
    """A key file's key: ``.json`` is one JWK, ``.pem`` PEM; any other name is tried as PEM, then JWK."""
    lowered = file_name.lower()
    if lowered.endswith(".json"):
        return key_from_jwk(_json(data))
    if lowered.endswith(".pem") or data.lstrip().startswith(b"-----BEGIN"):
        return key_from_pem(data)
    return key_from_jwk(_json(data))


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as error:
        raise KeyFormatError(f"not valid JSON: {error}") from None


def _b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


def _uint(value: int) -> str:
    return _b64url_encode(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def public_jwk(key: PublicKey, kid: str) -> dict[str, str]:
    """The public key as a JWK object (``kid`` set)."""
    if isinstance(key, rsa.RSAPublicKey):
        numbers = key.public_numbers()
        return {"kty": "RSA", "kid": kid, "n": _uint(numbers.n), "e": _uint(numbers.e)}
    if isinstance(key, ec.EllipticCurvePublicKey):
        point = key.public_numbers()
        size = (key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "kid": kid,
            "crv": _CURVE_NAMES[key.curve.name],
            "x": _b64url_encode(point.x.to_bytes(size, "big")),
            "y": _b64url_encode(point.y.to_bytes(size, "big")),
        }
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": _b64url_encode(raw)}


def public_pem(key: PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

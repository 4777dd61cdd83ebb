"""Keys of a JSON Web Key Set (Dapr's ``crypto.dapr.jwks``), given inline or as a file.

``jwks`` is the set itself as JSON (optionally base64-encoded, as Dapr allows) or the path of
a file holding it; a file is read again when it changes. A key is found by its ``kid``. Keys
whose ``kid`` is ``name/version`` are the versions of key ``name``: ``name`` is the newest
(natural order: ``v10`` after ``v9``), ``name/version`` that one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField, read_config_text
from layotto.server.components.crypto import KeyStore, newest_version
from layotto.server.components.crypto.keys import Key, KeyFormatError, key_from_jwk
from layotto.server.errors import KeyNotFound

log = logging.getLogger(__name__)


def parse_jwks(text: str, where: str) -> dict[str, Key]:
    """The keys of a JWKS document by ``kid``; ConfigError starting with ``where`` when it is not one."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{where}: not a JSON Web Key Set: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigError(f"{where}: a JSON Web Key Set is an object with a 'keys' list")
    keys: dict[str, Key] = {}
    for i, jwk in enumerate(document["keys"]):
        kid = jwk.get("kid") if isinstance(jwk, dict) else None
        if not isinstance(kid, str) or not kid:
            raise ConfigError(f"{where}: keys[{i}] has no 'kid'")
        if kid in keys:
            raise ConfigError(f"{where}: keys[{i}]: kid {kid!r} is used twice")
        try:
            material = key_from_jwk(jwk)
        except KeyFormatError as error:
            raise ConfigError(f"{where}: keys[{i}] ({kid}): {error}") from None
        name, _, version = kid.rpartition("/") if "/" in kid else (kid, "", "")
        keys[kid] = Key(name, version, material)
    return keys


def _inline(raw: str) -> str | None:
    """The JWKS text of an inline value (JSON, or JSON in standard base64), None for a path."""
    stripped = raw.strip()
    if stripped.startswith("{"):
        return stripped
    try:
        decoded = base64.b64decode(stripped, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded if decoded.lstrip().startswith("{") else None


class JwksKeyStore(KeyStore):
    spec = ComponentSpec(
        type="jwks",
        building_block="crypto",
        description="Keys of a JSON Web Key Set, inline or in a file (read again when it changes). "
        "Keys are found by kid; kids name/version are versions of key name.",
        metadata=(
            MetadataField(
                "jwks",
                "The JWKS as JSON (optionally base64-encoded), or the path of a file holding it.",
                required=True,
                example="/etc/keys/jwks.json",
            ),
            MetadataField(
                "requestTimeout", "Accepted for Dapr manifests; used with URLs, not supported here.", default="30s"
            ),
            MetadataField(
                "minRefreshInterval", "Accepted for Dapr manifests; used with URLs, not supported here.", default="10m"
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._keys: dict[str, Key] = {}
        self._file: Path | None = None
        self._mtime_ns = 0

    @property
    def _where(self) -> str:
        return f"crypto.{self.name}.metadata.jwks"

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        raw = str(metadata["jwks"])
        if raw.startswith(("http://", "https://")):
            raise ConfigError(
                f"{self._where}: fetching a JWKS from a URL is not supported; give it inline or as a file"
            )
        text = _inline(raw)
        if text is not None:
            self._keys = parse_jwks(text, self._where)
            return
        self._file = Path(raw)
        await asyncio.to_thread(self._reload)

    def _reload(self) -> None:
        assert self._file is not None
        try:
            stat = self._file.expanduser().stat()
            if stat.st_mtime_ns == self._mtime_ns:
                return
        except OSError as error:
            raise ConfigError(f"{self._where}: cannot read {self._file}: {error.strerror}") from None
        text = read_config_text(self._file.expanduser(), self._where)
        self._keys = parse_jwks(text, self._where)
        self._mtime_ns = stat.st_mtime_ns

    async def key(self, name: str, field: str = "key_name") -> Key:
        if self._file is not None:
            try:
                await asyncio.to_thread(self._reload)
            except ConfigError as error:  # a broken edit of the file: keep serving the keys read before
                log.warning("crypto %r keeps its previous keys: %s", self.name, error)
        found = self._keys.get(name)
        if found is not None:
            return found
        version = newest_version(key.version for key in self._keys.values() if key.version and key.name == name)
        if version is None:
            raise KeyNotFound(field, self.name, name)
        return self._keys[f"{name}/{version}"]

"""Keys kept in a secret store of the runtime (like Dapr's ``crypto.dapr.kubernetes.secrets``,
over any configured ``secret_store``).

Key ``name`` is the secret ``name``; each of its fields is a version holding one key as PEM or
as a JWK (JSON), and the newest field (natural order: ``v10`` after ``v9``) encrypts. Key
``name/version`` is that field. Secrets are read on each use, so a field added to the secret
rotates the key. Keys are read by the runtime itself: the app's secret scopes, which govern the
Secrets API, do not apply (no key leaves the runtime).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.crypto import KeyStore, newest_version
from layotto.server.components.crypto.keys import Key, KeyFormatError, key_from_jwk, key_from_pem
from layotto.server.components.secretstore import Secret, SecretStore
from layotto.server.errors import BackendError, KeyNotFound


def _material(value: str) -> Any:
    if value.lstrip().startswith("-----BEGIN"):
        return key_from_pem(value.encode())
    try:
        return key_from_jwk(json.loads(value))
    except ValueError as error:
        if isinstance(error, KeyFormatError):
            raise
        raise KeyFormatError("neither PEM nor a JWK") from None


class SecretStoreKeyStore(KeyStore):
    spec = ComponentSpec(
        type="secretstore",
        building_block="crypto",
        description="Keys in a secret store of the runtime: secret NAME is key NAME, each of its fields a "
        "version (PEM or JWK), the newest encrypting; read on each use, so adding a field rotates the key.",
        metadata=(
            MetadataField(
                "secretStore", "Name of the secret_store component holding the keys.", required=True, example="vault"
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._store: SecretStore | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        if context.peer is None:
            raise ConfigError(f"crypto.{self.name}.metadata.secretStore: the runtime gave no access to secret stores")
        store = context.peer("secret_store", str(metadata["secretStore"]))
        assert isinstance(store, SecretStore)  # the secret_store block only holds secret stores
        self._store = store

    async def _secret(self, name: str) -> Secret | None:
        assert self._store is not None
        return await self._store.get(name)

    async def key(self, name: str, field: str = "key_name") -> Key:
        secret_name, version = name, ""
        secret = await self._secret(name) if name else None
        if secret is None and "/" in name:
            secret_name, _, version = name.rpartition("/")
            secret = await self._secret(secret_name)
        if not secret:
            raise KeyNotFound(field, self.name, name)
        version = version or newest_version(secret) or ""
        value = secret.get(version)
        if value is None:
            raise KeyNotFound(field, self.name, name)
        try:
            material = _material(value)
        except KeyFormatError as error:
            raise BackendError(self.name, f"secret {secret_name!r} field {version!r} is not a key: {error}") from None
        return Key(secret_name, version, material)

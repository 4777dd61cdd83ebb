"""Component metadata taken from a secret store at start-up.

Two spellings reach the same :class:`SecretRef`: Dapr's, a manifest metadata item
``{name: redisPassword, secretKeyRef: {name: redis, key: password}}`` with the manifest's
``auth: {secretStore: vault}``; and Layotto's, a component's
``secret_ref: [{store_name: vault, key: redis, sub_key: password, inject_as: redisPassword}]``.
Secret stores are loaded first; a reference that cannot be resolved stops the runtime with
one line naming the metadata key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from layotto.server.components.base import ConfigError, config_entries
from layotto.server.components.secretstore import SecretStore
from layotto.server.errors import LayottoError

if TYPE_CHECKING:
    from layotto.server.components.loader import ComponentSet


@dataclass(frozen=True)
class SecretRef:
    """Metadata ``metadata_key`` = key ``key`` of secret ``secret`` in secret store ``store``."""

    metadata_key: str
    store: str
    secret: str
    key: str


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: required, a non-empty string")
    return value


def layotto_secret_refs(items: Any, where: str) -> tuple[SecretRef, ...]:
    """Layotto's ``secret_ref`` list; ``sub_key`` defaults to the secret's name, ``inject_as`` to ``sub_key``."""
    refs = []
    for at, item in config_entries(items, where, ("store_name", "key", "sub_key", "inject_as")):
        store, secret = _text(item.get("store_name"), f"{at}.store_name"), _text(item.get("key"), f"{at}.key")
        key = _text(item.get("sub_key", secret), f"{at}.sub_key")
        refs.append(SecretRef(_text(item.get("inject_as", key), f"{at}.inject_as"), store, secret, key))
    return tuple(refs)


def dapr_secret_ref(metadata_key: str, ref: Any, store: Any, where: str) -> SecretRef:
    """Dapr's ``secretKeyRef: {name, key}`` (``key`` defaults to ``name``) with the manifest's ``auth.secretStore``."""
    if not isinstance(ref, dict):
        raise ConfigError(f"{where}.secretKeyRef: expected {{name, key}}")
    if not isinstance(store, str) or not store:
        raise ConfigError(f"{where}.secretKeyRef: needs the manifest's auth.secretStore naming a secret store")
    secret = _text(ref.get("name"), f"{where}.secretKeyRef.name")
    return SecretRef(metadata_key, store, secret, _text(ref.get("key", secret), f"{where}.secretKeyRef.key"))


async def resolve(refs: Sequence[SecretRef], loaded: ComponentSet, where: str) -> dict[str, str]:
    """The metadata the references name, read from the secret stores already in ``loaded``."""
    values = {}
    for ref in refs:
        at = f"{where}.metadata.{ref.metadata_key}"
        try:
            store = loaded.find("secret_store", ref.store, "store_name")
        except LayottoError:
            raise ConfigError(f"{at}: secret store {ref.store!r} is not configured") from None
        assert isinstance(store, SecretStore)
        try:
            secret = await store.get(ref.secret)
        except LayottoError as error:
            raise ConfigError(
                f"{at}: reading secret {ref.secret!r} from {ref.store!r} failed: {error.message}"
            ) from None
        if secret is None:
            raise ConfigError(f"{at}: secret store {ref.store!r} has no secret {ref.secret!r}")
        if ref.key not in secret:
            raise ConfigError(f"{at}: secret {ref.secret!r} of {ref.store!r} has no key {ref.key!r}")
        values[ref.metadata_key] = secret[ref.key]
    return values

"""Which secrets an app may read from each secret store (Dapr's secret scopes).

Per store: ``defaultAccess`` (allow or deny; allow when absent), ``allowedSecrets`` (when not
empty, only these may be read) and ``deniedSecrets`` (never these). A store with no scope lets
every secret be read, as Layotto does. The shape is Dapr's ``spec.secrets.scopes`` of a
Configuration, which the runtime reads from its own file (``secret_scopes:``) and from Dapr
Configuration manifests in the components directory.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from layotto.server.components.base import ConfigError, config_entries

ACCESS = ("allow", "deny")


@dataclass(frozen=True)
class SecretScope:
    store: str
    default_allow: bool = True
    allowed: frozenset[str] = frozenset()
    denied: frozenset[str] = frozenset()

    def allows(self, secret: str) -> bool:
        if self.allowed:
            return secret in self.allowed
        return secret not in self.denied and self.default_allow

    def to_dict(self) -> dict[str, Any]:
        return {
            "storeName": self.store,
            "defaultAccess": "allow" if self.default_allow else "deny",
            "allowedSecrets": sorted(self.allowed),
            "deniedSecrets": sorted(self.denied),
        }


def _names(value: Any, where: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of secret names")
    return frozenset(value)


def parse_scopes(raw: Any, where: str) -> tuple[SecretScope, ...]:
    """Dapr's list of ``{storeName, defaultAccess, allowedSecrets, deniedSecrets}``."""
    scopes: dict[str, SecretScope] = {}
    for at, item in config_entries(raw, where, ("storeName", "defaultAccess", "allowedSecrets", "deniedSecrets")):
        store = item.get("storeName")
        if not isinstance(store, str) or not store:
            raise ConfigError(f"{at}.storeName: required, the name of a secret store")
        if store in scopes:
            raise ConfigError(f"{at}.storeName: {store!r} has a scope already")
        access = str(item.get("defaultAccess", "allow")).lower()
        if access not in ACCESS:
            raise ConfigError(f"{at}.defaultAccess: expected allow or deny, got {item.get('defaultAccess')!r}")
        scopes[store] = SecretScope(
            store,
            access == "allow",
            _names(item.get("allowedSecrets"), f"{at}.allowedSecrets"),
            _names(item.get("deniedSecrets"), f"{at}.deniedSecrets"),
        )
    return tuple(scopes.values())


class SecretPolicy:
    """The scopes of every store, looked up by store name."""

    def __init__(self, scopes: Iterable[SecretScope] = ()) -> None:
        self._scopes: Mapping[str, SecretScope] = {s.store: s for s in scopes}

    def allows(self, store: str, secret: str) -> bool:
        scope = self._scopes.get(store)
        return scope is None or scope.allows(secret)

"""Reading secrets, shared by every front end: find the store, apply the secret scopes, read."""

from __future__ import annotations

from layotto.server.components.loader import ComponentSet
from layotto.server.components.secretstore import SecretStore
from layotto.server.errors import InvalidArgument, SecretAccessDenied, SecretNotFound
from layotto.server.runtime.secret_scopes import SecretPolicy


class SecretService:
    def __init__(self, components: ComponentSet, policy: SecretPolicy) -> None:
        self._components = components
        self._policy = policy

    def _store(self, name: str) -> SecretStore:
        store = self._components.find("secret_store", name, "store_name")
        assert isinstance(store, SecretStore)  # the secret_store registry only holds secret stores
        return store

    async def get(self, store_name: str, key: str) -> dict[str, str]:
        """The secret ``key`` (its name -> value pairs). Raises InvalidArgument (empty name),
        ComponentNotFound, SecretAccessDenied (outside the store's scope), SecretNotFound."""
        if not key:
            raise InvalidArgument("key", "the secret's name is empty")
        store = self._store(store_name)
        if not self._policy.allows(store.name, key):
            raise SecretAccessDenied(store.name, key)
        secret = await store.get(key)
        if secret is None:
            raise SecretNotFound(store.name, key)
        return dict(secret)

    async def bulk_get(self, store_name: str) -> dict[str, dict[str, str]]:
        """Every secret of the store the scope allows (what it hides is left out)."""
        store = self._store(store_name)
        secrets = await store.bulk_get()
        return {name: dict(values) for name, values in secrets.items() if self._policy.allows(store.name, name)}

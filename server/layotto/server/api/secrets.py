"""GetSecret and GetBulkSecret: read secrets from a secret store, on both wire APIs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layotto.server.api.adapter import Context
from layotto.server.components.loader import ComponentSet
from layotto.server.components.secretstore import SecretStore
from layotto.server.errors import InvalidArgument, SecretAccessDenied, SecretNotFound
from layotto.server.runtime.secret_scopes import SecretPolicy


@dataclass(frozen=True)
class SecretMessages:
    """The response classes of one wire API (Layotto's or Dapr's)."""

    get_secret_response: Any
    get_bulk_secret_response: Any
    secret_response: Any


class SecretsApi:
    def __init__(self, components: ComponentSet, messages: SecretMessages, policy: SecretPolicy) -> None:
        self._components = components
        self._messages = messages
        self._policy = policy

    def _store(self, name: str) -> SecretStore:
        store = self._components.find("secret_store", name, "store_name")
        assert isinstance(store, SecretStore)  # the secret_store registry only holds secret stores
        return store

    async def GetSecret(self, request: Any, context: Context) -> Any:
        if not request.key:
            raise InvalidArgument("key", "the secret's name is empty")
        store = self._store(request.store_name)
        if not self._policy.allows(store.name, request.key):
            raise SecretAccessDenied(store.name, request.key)
        secret = await store.get(request.key)
        if secret is None:
            raise SecretNotFound(store.name, request.key)
        return self._messages.get_secret_response(data=secret)

    async def GetBulkSecret(self, request: Any, context: Context) -> Any:
        store = self._store(request.store_name)
        secrets = await store.bulk_get()
        return self._messages.get_bulk_secret_response(
            data={
                name: self._messages.secret_response(secrets=values)
                for name, values in secrets.items()
                if self._policy.allows(store.name, name)  # what the scope hides is left out
            }
        )

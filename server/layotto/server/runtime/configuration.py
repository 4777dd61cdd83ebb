"""Reading configuration, shared by every front end: find the store, check the keys, read."""

from __future__ import annotations

from collections.abc import Sequence

from layotto.server.components.configuration import ConfigItem, ConfigurationStore, Scope
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.validation import require_count, require_key


def require_keys(keys: Sequence[str], field: str, *, at_least_one: bool) -> list[str]:
    if at_least_one and not keys:
        raise InvalidArgument(field, "name at least one key")
    require_count(keys, field)
    return [require_key(key, f"{field}[{i}]") for i, key in enumerate(keys)]


class ConfigurationService:
    def __init__(self, components: ComponentSet, app_id: str) -> None:
        self._components = components
        self.app_id = app_id

    def find(self, name: str) -> ConfigurationStore:
        store = self._components.find("config_store", name, "store_name")
        assert isinstance(store, ConfigurationStore)  # the config_store registry only holds these
        return store

    async def get(self, store_name: str, keys: Sequence[str], scope: Scope | None = None) -> list[ConfigItem]:
        """The items of ``keys`` (every item of the scope when there are none) in ``scope``
        (the runtime's app, default group and label when None)."""
        store = self.find(store_name)
        return await store.get(scope or Scope(self.app_id), require_keys(keys, "keys", at_least_one=False))

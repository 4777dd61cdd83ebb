"""The in-memory configuration store: the reference implementation, one runtime's memory."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from layotto.server.components.base import ComponentSpec
from layotto.server.components.configuration import (
    ChangeFeed,
    ConfigChange,
    ConfigItem,
    ConfigurationStore,
    Scope,
    Watch,
)


class InMemoryConfigurationStore(ConfigurationStore):
    spec = ComponentSpec(
        type="in-memory",
        building_block="config_store",
        description="Keeps configuration items in the runtime's memory (lost on restart; one runtime only).",
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._items: dict[tuple[Scope, str], ConfigItem] = {}
        self._versions = itertools.count(1)
        self._feed = ChangeFeed()

    async def get(self, scope: Scope, keys: Sequence[str]) -> list[ConfigItem]:
        if not keys:
            return [item for (s, _), item in sorted(self._items.items(), key=lambda e: e[0][1]) if s == scope]
        return [self._items[(scope, key)] for key in keys if (scope, key) in self._items]

    async def save(self, items: Sequence[ConfigItem]) -> None:
        for item in items:
            stored = ConfigItem(item.scope, item.key, item.content, dict(item.tags), str(next(self._versions)))
            self._items[(item.scope, item.key)] = stored
            self._feed.publish(ConfigChange(stored))

    async def delete(self, scope: Scope, keys: Sequence[str]) -> None:
        for key in keys:
            if self._items.pop((scope, key), None) is not None:
                self._feed.publish(ConfigChange(ConfigItem(scope, key, ""), deleted=True))

    def watch_scope(self, scope: Scope) -> Watch:
        return self._feed.watch(scope)

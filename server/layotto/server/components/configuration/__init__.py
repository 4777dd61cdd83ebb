"""The Configuration building block: items an app reads and watches, kept in a shared store.

An item lives at (app id, group, label, key), as in Layotto; Dapr's API, which has no group or
label, uses the runtime's app id and the group and label ``default``. Every write gives the item a
new ``version`` issued by the store. ``watch`` reports the changes after it is established, until
its context ends: a changed item, or a deleted one (``deleted=True``, content empty).
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from layotto.server.components.base import Component

DEFAULT_GROUP = "default"
DEFAULT_LABEL = "default"


@dataclass(frozen=True)
class Scope:
    """Where items live: one app's group and label."""

    app_id: str
    group: str = DEFAULT_GROUP
    label: str = DEFAULT_LABEL


@dataclass(frozen=True)
class ConfigItem:
    scope: Scope
    key: str
    content: str
    tags: Mapping[str, str] = field(default_factory=dict)
    version: str = ""


@dataclass(frozen=True)
class ConfigChange:
    item: ConfigItem
    deleted: bool = False


Watch = AbstractAsyncContextManager[AsyncIterator[ConfigChange]]


class ConfigurationStore(Component):
    @abstractmethod
    async def get(self, scope: Scope, keys: Sequence[str]) -> list[ConfigItem]:
        """The items of ``keys`` that exist (every item of the scope when ``keys`` is empty)."""

    @abstractmethod
    async def save(self, items: Sequence[ConfigItem]) -> None:
        """Create or replace the items (their versions are ignored: the store issues new ones)."""

    @abstractmethod
    async def delete(self, scope: Scope, keys: Sequence[str]) -> None:
        """Delete the items of ``keys``; missing ones are no error."""

    @abstractmethod
    def watch_scope(self, scope: Scope) -> Watch:
        """Every change in ``scope`` from the moment the context is entered."""

    @asynccontextmanager
    async def watch(self, scope: Scope, keys: Sequence[str]) -> AsyncIterator[AsyncIterator[ConfigChange]]:
        """Changes to ``keys`` (every key of the scope when empty) from the moment the context is entered."""
        wanted = frozenset(keys)
        async with self.watch_scope(scope) as changes:
            yield (change async for change in changes if not wanted or change.item.key in wanted)


class ChangeFeed:
    """In-process fan-out of changes to the watches of each scope (the in-memory store's)."""

    def __init__(self) -> None:
        self._watchers: set[tuple[Scope, asyncio.Queue[ConfigChange]]] = set()

    def publish(self, change: ConfigChange) -> None:
        for scope, queue in self._watchers:
            if change.item.scope == scope:
                queue.put_nowait(change)

    @asynccontextmanager
    async def watch(self, scope: Scope) -> AsyncIterator[AsyncIterator[ConfigChange]]:
        queue: asyncio.Queue[ConfigChange] = asyncio.Queue()
        entry = (scope, queue)
        self._watchers.add(entry)

        async def changes() -> AsyncIterator[ConfigChange]:
            while True:
                yield await queue.get()

        try:
            yield changes()
        finally:
            self._watchers.discard(entry)

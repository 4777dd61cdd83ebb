"""Reading and watching configuration, shared by every front end: find the store, check the keys,
read; and Dapr's subscriptions (an id, the changes until unsubscribed), which a subscription made
over gRPC or HTTP shares: either front unsubscribes it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from layotto.server.components.configuration import ConfigChange, ConfigItem, ConfigurationStore, Scope
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.validation import require_count, require_key

#: what a feed puts on its queue: (store name, app id, changes), or the error that ended it
Report = tuple[str, str, list[ConfigChange]] | Exception


def require_keys(keys: Sequence[str], field: str, *, at_least_one: bool) -> list[str]:
    if at_least_one and not keys:
        raise InvalidArgument(field, "name at least one key")
    require_count(keys, field)
    return [require_key(key, f"{field}[{i}]") for i, key in enumerate(keys)]


async def report_changes(
    store: ConfigurationStore, scope: Scope, keys: list[str], out: asyncio.Queue[Any], *, current: bool
) -> None:
    """Put (store name, app id, changes) on ``out``: once the watch is established, the current items
    (none unless ``current``: the first batch also says the watch is in place), then every change;
    an error ends the feed and is put there too."""
    try:
        async with store.watch(scope, keys) as changes:
            items = await store.get(scope, keys) if current else []
            await out.put((store.name, scope.app_id, [ConfigChange(i) for i in items]))
            async for change in changes:
                await out.put((store.name, scope.app_id, [change]))
    except Exception as error:  # handed to the consumer, which ends with it
        await out.put(error)


class DaprSubscription:
    """One of Dapr's subscriptions: its ``id``, then :meth:`changes` until it is unsubscribed."""

    def __init__(self, store_name: str, feed: asyncio.Task[None], out: asyncio.Queue[Any]) -> None:
        self.id = uuid.uuid4().hex
        self.store_name = store_name
        self._feed = feed
        self._out = out
        self._ended = asyncio.Event()

    async def changes(self) -> AsyncIterator[list[ConfigChange]]:
        """Each batch of changes until :meth:`end`; raises the error that ended the watch."""
        ended = asyncio.ensure_future(self._ended.wait())
        got: asyncio.Future[Any] | None = None
        try:
            while True:
                got = asyncio.ensure_future(self._out.get())
                await asyncio.wait({got, ended}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    return
                result = got.result()
                if isinstance(result, Exception):
                    raise result
                yield result[2]
        finally:
            ended.cancel()
            if got is not None:
                got.cancel()  # no-op when done; a consumer cancelled in the wait (client gone) left it pending

    def end(self) -> None:
        """Stop the watch: :meth:`changes` returns."""
        self._ended.set()
        self._feed.cancel()


class ConfigurationService:
    def __init__(self, components: ComponentSet, app_id: str) -> None:
        self._components = components
        self.app_id = app_id
        self._subscriptions: dict[tuple[str, str], DaprSubscription] = {}

    def find(self, name: str) -> ConfigurationStore:
        store = self._components.find("config_store", name, "store_name")
        assert isinstance(store, ConfigurationStore)  # the config_store registry only holds these
        return store

    async def get(self, store_name: str, keys: Sequence[str], scope: Scope | None = None) -> list[ConfigItem]:
        """The items of ``keys`` (every item of the scope when there are none) in ``scope``
        (the runtime's app, default group and label when None)."""
        store = self.find(store_name)
        return await store.get(scope or Scope(self.app_id), require_keys(keys, "keys", at_least_one=False))

    async def subscribe(self, store_name: str, keys: Sequence[str]) -> DaprSubscription:
        """A Dapr subscription to the changes of ``keys`` (every key when none) of the runtime's app,
        returned once its watch is established (no later change is missed). Raises what finding the
        store, checking the keys or establishing the watch raises. End it with :meth:`unsubscribe`
        (or its ``end``)."""
        store = self.find(store_name)
        checked = require_keys(keys, "keys", at_least_one=False)
        out: asyncio.Queue[Any] = asyncio.Queue()
        feed = asyncio.ensure_future(report_changes(store, Scope(self.app_id), checked, out, current=False))
        established = await out.get()
        if isinstance(established, Exception):
            raise established
        subscription = DaprSubscription(store_name, feed, out)
        self._subscriptions[(store_name, subscription.id)] = subscription
        return subscription

    def unsubscribe(self, store_name: str, subscription_id: str) -> bool:
        """End the subscription ``subscription_id`` of ``store_name``; False when there is none."""
        subscription = self._subscriptions.pop((store_name, subscription_id), None)
        if subscription is None:
            return False
        subscription.end()
        return True

    def forget(self, subscription: DaprSubscription) -> None:
        """End ``subscription`` and drop it (its consumer is gone)."""
        self.unsubscribe(subscription.store_name, subscription.id)
        subscription.end()

    def close(self) -> None:
        """End every subscription (the runtime is stopping)."""
        for subscription in list(self._subscriptions.values()):
            self.forget(subscription)

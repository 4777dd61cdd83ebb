"""The Configuration API: Layotto's Get/Save/Delete/SubscribeConfiguration and Dapr's
Get/Subscribe/UnsubscribeConfiguration (and their Alpha1 names) over one set of stores.

A subscription answers once its watch is established, so no change after the answer is missed:
Layotto's stream with the current items (even none), Dapr's with a message carrying only the
subscription id, as its SDKs expect. Then every change follows; a deleted item is reported
with empty content and the metadata ``deleted: "true"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from google.protobuf import empty_pb2

from layotto.proto.dapr.common.v1 import common_pb2 as dapr_common
from layotto.proto.dapr.runtime.v1 import configuration_pb2 as dapr_pb
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.api.adapter import Context
from layotto.server.components.configuration import (
    DEFAULT_GROUP,
    DEFAULT_LABEL,
    ConfigChange,
    ConfigItem,
    Scope,
)
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.configuration import ConfigurationService, report_changes, require_keys
from layotto.server.runtime.validation import require_count, require_key

DELETED = {"deleted": "true"}

# -- conversions: small pure functions -------------------------------------------------


def path_part(value: str, field: str, default: str) -> str:
    """An app id, group or label: blank means the default; '/' separates them in stores, so it is refused."""
    value = value.strip() or default
    if "/" in value:
        raise InvalidArgument(field, f"must not contain '/', got {value!r}")
    return value


def layotto_item(change: ConfigChange) -> pb.ConfigurationItem:
    item = change.item
    return pb.ConfigurationItem(
        key=item.key,
        content=item.content,
        group=item.scope.group,
        label=item.scope.label,
        tags=dict(item.tags),
        metadata=DELETED if change.deleted else {},
    )


def dapr_items(changes: Sequence[ConfigChange]) -> dict[str, dapr_common.ConfigurationItem]:
    return {
        c.item.key: dapr_common.ConfigurationItem(
            value=c.item.content, version=c.item.version, metadata=DELETED if c.deleted else {}
        )
        for c in changes
    }


class _Stores:
    def __init__(self, configuration: ConfigurationService) -> None:
        self.find = configuration.find
        self.app_id = configuration.app_id

    def scope(self, request: Any) -> Scope:
        """The scope of a Layotto request: its app id (the runtime's when blank), group and label."""
        return Scope(
            path_part(request.app_id, "app_id", self.app_id),
            path_part(request.group, "group", DEFAULT_GROUP),
            path_part(request.label, "label", DEFAULT_LABEL),
        )


class LayottoConfigurationApi:
    def __init__(self, configuration: ConfigurationService) -> None:
        self._configuration = configuration
        self._stores = _Stores(configuration)

    async def GetConfiguration(self, request: pb.GetConfigurationRequest, context: Context) -> Any:
        self._configuration.find(request.store_name)  # an unknown store is reported before a bad scope
        items = await self._configuration.get(request.store_name, request.keys, self._stores.scope(request))
        return pb.GetConfigurationResponse(items=[layotto_item(ConfigChange(i)) for i in items])

    async def SaveConfiguration(self, request: pb.SaveConfigurationRequest, context: Context) -> Any:
        store = self._stores.find(request.store_name)
        app_id = path_part(request.app_id, "app_id", self._stores.app_id)
        require_count(request.items, "items")
        items = []
        for i, item in enumerate(request.items):
            key = require_key(item.key, f"items[{i}].key")
            scope = Scope(
                app_id,
                path_part(item.group, f"items[{i}].group", DEFAULT_GROUP),
                path_part(item.label, f"items[{i}].label", DEFAULT_LABEL),
            )
            items.append(ConfigItem(scope, key, item.content, dict(item.tags)))
        await store.save(items)
        return empty_pb2.Empty()

    async def DeleteConfiguration(self, request: pb.DeleteConfigurationRequest, context: Context) -> Any:
        store = self._stores.find(request.store_name)
        await store.delete(self._stores.scope(request), require_keys(request.keys, "keys", at_least_one=True))
        return empty_pb2.Empty()

    async def SubscribeConfiguration(self, requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
        """Each request the client sends adds a subscription to this one stream."""
        out: asyncio.Queue[Any] = asyncio.Queue()
        feeds: list[asyncio.Task[None]] = []

        async def subscribe() -> None:
            try:
                async for request in requests:
                    store = self._stores.find(request.store_name)
                    scope = self._stores.scope(request)
                    keys = require_keys(request.keys, "keys", at_least_one=False)
                    feeds.append(asyncio.ensure_future(report_changes(store, scope, keys, out, current=True)))
            except Exception as error:
                await out.put(error)

        reader = asyncio.ensure_future(subscribe())
        try:
            while True:
                got = await out.get()
                if isinstance(got, Exception):
                    raise got
                store_name, app_id, changes = got
                yield pb.SubscribeConfigurationResponse(
                    store_name=store_name, app_id=app_id, items=[layotto_item(c) for c in changes]
                )
        finally:
            for task in (reader, *feeds):
                task.cancel()


class DaprConfigurationApi:
    def __init__(self, configuration: ConfigurationService) -> None:
        self._configuration = configuration
        self._stores = _Stores(configuration)

    async def GetConfiguration(self, request: dapr_pb.GetConfigurationRequest, context: Context) -> Any:
        items = await self._configuration.get(request.store_name, request.keys)
        return dapr_pb.GetConfigurationResponse(items=dapr_items([ConfigChange(i) for i in items]))

    async def SubscribeConfiguration(
        self, request: dapr_pb.SubscribeConfigurationRequest, context: Context
    ) -> AsyncIterator[Any]:
        """First a message carrying only the subscription id, then every change until unsubscribed."""
        subscription = await self._configuration.subscribe(request.store_name, request.keys)
        try:
            yield dapr_pb.SubscribeConfigurationResponse(id=subscription.id)
            async for changes in subscription.changes():
                yield dapr_pb.SubscribeConfigurationResponse(id=subscription.id, items=dapr_items(changes))
        finally:
            self._configuration.forget(subscription)

    async def UnsubscribeConfiguration(self, request: dapr_pb.UnsubscribeConfigurationRequest, context: Context) -> Any:
        if not self._configuration.unsubscribe(request.store_name, request.id):
            return dapr_pb.UnsubscribeConfigurationResponse(
                ok=False, message=f"id: no subscription {request.id!r} on configuration store {request.store_name!r}"
            )
        return dapr_pb.UnsubscribeConfigurationResponse(ok=True)

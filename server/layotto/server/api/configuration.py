"""The Configuration API: Layotto's Get/Save/Delete/SubscribeConfiguration and Dapr's
Get/Subscribe/UnsubscribeConfiguration (and their Alpha1 names) over one set of stores.

A subscription answers once its watch is established, so no change after the answer is missed:
Layotto's stream with the current items (even none), Dapr's with a message carrying only the
subscription id, as its SDKs expect. Then every change follows; a deleted item is reported
with empty content and the metadata ``deleted: "true"``.
"""

from __future__ import annotations

import asyncio
import uuid
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
    ConfigurationStore,
    Scope,
)
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.configuration import ConfigurationService, require_keys
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


async def _report(
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
    except Exception as error:  # handed to the stream, which ends with its status
        await out.put(error)


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
                    feeds.append(asyncio.ensure_future(_report(store, scope, keys, out, current=True)))
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
        self._unsubscribed: dict[tuple[str, str], asyncio.Event] = {}

    async def GetConfiguration(self, request: dapr_pb.GetConfigurationRequest, context: Context) -> Any:
        items = await self._configuration.get(request.store_name, request.keys)
        return dapr_pb.GetConfigurationResponse(items=dapr_items([ConfigChange(i) for i in items]))

    async def SubscribeConfiguration(
        self, request: dapr_pb.SubscribeConfigurationRequest, context: Context
    ) -> AsyncIterator[Any]:
        """First a message carrying only the subscription id, then every change until unsubscribed."""
        store = self._stores.find(request.store_name)
        keys = require_keys(request.keys, "keys", at_least_one=False)
        subscription = uuid.uuid4().hex
        done = self._unsubscribed[(request.store_name, subscription)] = asyncio.Event()
        out: asyncio.Queue[Any] = asyncio.Queue()
        feed = asyncio.ensure_future(_report(store, Scope(self._stores.app_id), keys, out, current=False))
        ended = asyncio.ensure_future(done.wait())
        try:
            established = await out.get()  # the id goes out once changes can no longer be missed
            if isinstance(established, Exception):
                raise established
            yield dapr_pb.SubscribeConfigurationResponse(id=subscription)
            while True:
                got = asyncio.ensure_future(out.get())
                await asyncio.wait({got, ended}, return_when=asyncio.FIRST_COMPLETED)
                if not got.done():
                    got.cancel()
                    return
                result = got.result()
                if isinstance(result, Exception):
                    raise result
                yield dapr_pb.SubscribeConfigurationResponse(id=subscription, items=dapr_items(result[2]))
        finally:
            feed.cancel()
            ended.cancel()
            self._unsubscribed.pop((request.store_name, subscription), None)

    async def UnsubscribeConfiguration(self, request: dapr_pb.UnsubscribeConfigurationRequest, context: Context) -> Any:
        done = self._unsubscribed.get((request.store_name, request.id))
        if done is None:
            return dapr_pb.UnsubscribeConfigurationResponse(
                ok=False, message=f"id: no subscription {request.id!r} on configuration store {request.store_name!r}"
            )
        done.set()
        return dapr_pb.UnsubscribeConfigurationResponse(ok=True)

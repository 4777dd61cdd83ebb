"""The etcd configuration store: items at ``<keyPrefixPath>/<app id>/<group>/<label>/<key>`` (Layotto's
layout), shared by every runtime on the cluster, watched with etcd's own watch streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
from aetcd import rpc

from layotto.server.components.base import ComponentContext, ComponentSpec, MetadataField
from layotto.server.components.configuration import ConfigChange, ConfigItem, ConfigurationStore, Scope
from layotto.server.components.etcd_client import ETCD_METADATA, EtcdConnection
from layotto.server.errors import BackendUnavailable

EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # what read() answers at the stream's end


def encode(item: ConfigItem) -> bytes:
    return json.dumps({"content": item.content, "tags": dict(item.tags)}).encode()


def decode(scope: Scope, key: str, kv: Any) -> ConfigItem:
    """An item from its etcd key-value; a value not written by a runtime is taken as the content."""
    raw = bytes(kv.value).decode("utf-8", errors="replace")
    try:
        envelope = json.loads(raw)
    except ValueError:
        envelope = None
    if isinstance(envelope, dict) and isinstance(envelope.get("content"), str):
        tags = envelope["tags"] if isinstance(envelope.get("tags"), dict) else {}
        return ConfigItem(
            scope, key, envelope["content"], {str(k): str(v) for k, v in tags.items()}, str(kv.mod_revision)
        )
    return ConfigItem(scope, key, raw, {}, str(kv.mod_revision))


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EtcdConfigurationStore(ConfigurationStore):
    spec = ComponentSpec(
        type="etcd",
        building_block="config_store",
        description="Keeps configuration items in etcd v3; every runtime on the cluster sees and watches them.",
        metadata=(
            *ETCD_METADATA,
            MetadataField(
                "keyPrefixPath", "Prefix of every key, e.g. /config (keys become /config/APP/GROUP/...).", default=""
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._etcd = self.connect(EtcdConnection(name))
        self._prefix = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        await self._etcd.open(metadata)
        self._prefix = str(metadata["keyPrefixPath"]).rstrip("/")

    def _scope_prefix(self, scope: Scope) -> bytes:
        return f"{self._prefix}/{scope.app_id}/{scope.group}/{scope.label}/".encode()

    async def get(self, scope: Scope, keys: Sequence[str]) -> list[ConfigItem]:
        prefix = self._scope_prefix(scope)
        kv, timeout = self._etcd.kv, self._etcd.timeout
        async with self._etcd.errors("Range"):
            if not keys:
                found = await kv.Range(rpc.RangeRequest(key=prefix, range_end=prefix_end(prefix)), timeout=timeout)
                return [decode(scope, bytes(k.key)[len(prefix) :].decode(), k) for k in found.kvs]
            ranges = [rpc.RequestOp(request_range=rpc.RangeRequest(key=prefix + key.encode())) for key in keys]
            found = await kv.Txn(rpc.TxnRequest(success=ranges), timeout=timeout)  # one round trip, one revision
        return [
            decode(scope, key, r.response_range.kvs[0])
            for key, r in zip(keys, found.responses, strict=True)
            if r.response_range.kvs
        ]

    async def save(self, items: Sequence[ConfigItem]) -> None:
        puts = [
            rpc.RequestOp(request_put=rpc.PutRequest(key=self._scope_prefix(i.scope) + i.key.encode(), value=encode(i)))
            for i in items
        ]
        async with self._etcd.errors("Txn put"):
            await self._etcd.kv.Txn(rpc.TxnRequest(success=puts), timeout=self._etcd.timeout)

    async def delete(self, scope: Scope, keys: Sequence[str]) -> None:
        prefix = self._scope_prefix(scope)
        deletes = [rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=prefix + k.encode())) for k in keys]
        async with self._etcd.errors("Txn delete"):
            await self._etcd.kv.Txn(rpc.TxnRequest(success=deletes), timeout=self._etcd.timeout)

    @asynccontextmanager
    async def watch_scope(self, scope: Scope) -> AsyncIterator[AsyncIterator[ConfigChange]]:
        prefix = self._scope_prefix(scope)
        create = rpc.WatchRequest(create_request=rpc.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix)))
        stream = self._etcd.watch.Watch(iter([create]))
        try:
            async with self._etcd.errors("Watch"):
                created = await asyncio.wait_for(stream.read(), self._etcd.timeout)
            if created is EOF or not created.created:
                raise BackendUnavailable(self.name, "etcd did not create the watch")
            yield self._changes(stream, scope, prefix)
        finally:
            stream.cancel()

    async def _changes(self, stream: Any, scope: Scope, prefix: bytes) -> AsyncIterator[ConfigChange]:
        while True:
            async with self._etcd.errors("Watch"):
                response = await stream.read()
            if response is EOF or response.canceled:
                raise BackendUnavailable(self.name, "etcd ended the watch")
            for event in response.events:
                key = bytes(event.kv.key)[len(prefix) :].decode()
                if event.type == rpc.Event.EventType.DELETE:
                    yield ConfigChange(ConfigItem(scope, key, "", {}, str(event.kv.mod_revision)), deleted=True)
                else:
                    yield ConfigChange(decode(scope, key, event.kv))

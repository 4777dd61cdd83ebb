"""A registry of sidecars in etcd.

Each runtime writes ``<keyPrefix>/<app id>/<address>`` (its gRPC address) under a lease of
``ttlSeconds`` and renews the lease every third of it; it revokes the lease when it stops, so
the entry goes at once, and a runtime that dies without stopping drops out when the lease
expires. Every runtime reads the whole prefix once, then follows it with one etcd watch, and
answers ``resolve`` from that cache (no etcd round trip per call). A watch or renewal that
fails is retried every second; a lease found expired is granted again and the entry rewritten.

etcd rather than Redis: leases and watches are etcd's own primitives (a key that dies with
its lease, change events in revision order), where Redis would need keyspace notifications
enabled on the server and polling to see expiries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from aetcd import rpc

from layotto.server.aio import stop_task
from layotto.server.components.base import ConfigError, MetadataField
from layotto.server.components.etcd_client import ETCD_METADATA, EtcdConnection
from layotto.server.components.nameresolution import NameResolver, parse_metadata, sidecar_address
from layotto.server.errors import LayottoError

log = logging.getLogger(__name__)

EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
RETRY_SECONDS = 1.0
METADATA = (
    *ETCD_METADATA,
    MetadataField("keyPrefix", "Prefix of the registry's keys.", default="/layotto/apps"),
    MetadataField(
        "ttlSeconds",
        "Lease of a runtime's entry: how long a dead runtime stays listed.",
        type=int,
        default=10,
        minimum=2,
        maximum=86400,
    ),
    MetadataField("advertiseAddress", "HOST:PORT other runtimes call; default: the bound gRPC address.", default=""),
)


class EtcdRegistry(NameResolver):
    def __init__(self, metadata: Mapping[str, str]) -> None:
        self._metadata = parse_metadata(METADATA, metadata)
        if self._metadata["advertiseAddress"]:
            sidecar_address(self._metadata["advertiseAddress"], "name_resolution.metadata.advertiseAddress")
        self._prefix = str(self._metadata["keyPrefix"]).rstrip("/") + "/"
        self._ttl = int(self._metadata["ttlSeconds"])
        self._etcd = EtcdConnection("etcd")
        self._apps: dict[str, list[str]] = {}
        self._entry = b""
        self._lease = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def resolve(self, app_id: str) -> Sequence[str]:
        return self._apps.get(app_id, ())

    async def start(self, app_id: str, address: str) -> None:
        """Register ``app_id`` at ``address`` (or advertiseAddress) and load the registry.

        Raises BackendUnavailable when etcd cannot be reached."""
        await self._etcd.open(self._metadata)
        self._entry = f"{self._prefix}{app_id}/{self._metadata['advertiseAddress'] or address}".encode()
        await self._register()
        revision = await self._load()
        self._tasks = [
            asyncio.create_task(self._keep_alive(), name="registry keep-alive"),
            asyncio.create_task(self._follow(revision), name="registry watch"),
        ]
        log.info("registered %s in etcd (lease %d s)", self._entry.decode(), self._ttl)

    async def _register(self) -> None:
        self._lease = await self._etcd.grant(self._ttl)
        put = rpc.PutRequest(key=self._entry, value=self._entry[len(self._prefix) :], lease=self._lease)
        async with self._etcd.errors("Put"):
            await self._etcd.kv.Put(put, timeout=self._etcd.timeout)

    async def _load(self) -> int:
        """Read every entry; the revision to watch from."""
        end = self._prefix[:-1] + chr(ord(self._prefix[-1]) + 1)
        async with self._etcd.errors("Range"):
            found = await self._etcd.kv.Range(
                rpc.RangeRequest(key=self._prefix.encode(), range_end=end.encode()), timeout=self._etcd.timeout
            )
        apps: dict[str, list[str]] = {}
        for kv in found.kvs:
            entry = self._parse(bytes(kv.key))
            if entry is not None:
                apps.setdefault(entry[0], []).append(entry[1])
        self._apps = apps
        return int(found.header.revision)

    def _parse(self, key: bytes) -> tuple[str, str] | None:
        """(app id, address) of a registry key; None for a key that is not an entry, or whose
        address no sidecar can have (``127.0.0.1:99999`` was dialled as port 34463)."""
        app_id, sep, address = key[len(self._prefix) :].decode(errors="replace").partition("/")
        if not (sep and app_id and address):
            return None
        try:
            sidecar_address(address, f"registry entry {key.decode(errors='replace')!r}")
        except ConfigError as error:
            log.warning("ignored: %s", error)
            return None
        return app_id, address

    async def _keep_alive(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                if not await self._renew():
                    log.warning("registry lease of %s expired: registering again", self._entry.decode())
                    await self._register()
            except (LayottoError, grpc.aio.AioRpcError, TimeoutError) as error:
                level = logging.DEBUG if failing else logging.WARNING  # once per outage
                log.log(level, "registry lease of %s not renewed: %r", self._entry.decode(), error)
                failing = True
                continue
            if failing:
                log.info("registry lease of %s renewed again", self._entry.decode())
            failing = False

    async def _renew(self) -> bool:
        stream = self._etcd.lease.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=self._lease)]))
        try:
            async with self._etcd.errors("LeaseKeepAlive"):
                answer = await asyncio.wait_for(stream.read(), self._etcd.timeout)
        finally:
            stream.cancel()
        return answer is not EOF and int(answer.TTL) > 0

    async def _follow(self, revision: int) -> None:
        failing = False
        while True:
            try:
                await self._watch(revision)
            except (LayottoError, grpc.aio.AioRpcError, TimeoutError) as error:
                level = logging.DEBUG if failing else logging.WARNING  # once per outage
                log.log(
                    level, "registry watch failed (%s): reading the registry again every %g s", error, RETRY_SECONDS
                )
                failing = True
            await asyncio.sleep(RETRY_SECONDS)
            try:
                revision = await self._load()
            except LayottoError as error:
                log.debug("registry not readable: %s", error)
                continue
            if failing:
                log.info("registry read again; following it")
            failing = False

    async def _watch(self, revision: int) -> None:
        end = self._prefix[:-1] + chr(ord(self._prefix[-1]) + 1)
        create = rpc.WatchCreateRequest(key=self._prefix.encode(), range_end=end.encode(), start_revision=revision + 1)
        stream = self._etcd.watch.Watch(iter([rpc.WatchRequest(create_request=create)]))
        try:
            while True:
                async with self._etcd.errors("Watch"):
                    response = await stream.read()
                if response is EOF or response.canceled:
                    return
                for event in response.events:
                    self._apply(event)
        finally:
            stream.cancel()

    def _apply(self, event: Any) -> None:
        entry = self._parse(bytes(event.kv.key))
        if entry is None:
            return
        app_id, address = entry
        addresses = [a for a in self._apps.get(app_id, []) if a != address]
        if event.type != rpc.Event.EventType.DELETE:
            addresses.append(address)
        self._apps = {**self._apps, app_id: addresses}
        log.debug("registry: %s now at %s", app_id, addresses)

    async def aclose(self) -> None:
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        if self._lease:
            try:
                await self._etcd.revoke(self._lease)
            except LayottoError as error:
                log.warning("registry entry %s not withdrawn (expires with its lease): %s", self._entry.decode(), error)
        await self._etcd.close()

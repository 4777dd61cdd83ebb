"""The ZooKeeper connection shared by the ZooKeeper components (kazoo, run off the event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionClosedError, ConnectionLoss, KazooException, SessionExpiredError
from kazoo.handlers.threading import KazooTimeoutError

from layotto.server.components.base import Health, MetadataField
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span

T = TypeVar("T")

ZOOKEEPER_METADATA = (
    MetadataField(
        "zookeeperHosts", "Comma-separated HOST:PORT of the ensemble.", required=True, example="127.0.0.1:2181"
    ),
    MetadataField("zookeeperPassword", "Digest auth as user:password (empty: none).", default="", secret=True),
    MetadataField(
        "sessionTimeout", "ZooKeeper session timeout in seconds.", type=float, default=10.0, minimum=1, maximum=3600
    ),
    MetadataField("basePath", "Parent znode of everything this component stores.", default="/layotto"),
)
_UNREACHABLE = (ConnectionLoss, ConnectionClosedError, SessionExpiredError, KazooTimeoutError)


def node_name(key: str) -> str:
    """A znode name for any key (keys may hold '/', '|' and anything else)."""
    return quote(key, safe="") or "%00"


class ZookeeperConnection:
    def __init__(self, component: str) -> None:
        self.component = component
        self.base = "/layotto"
        self._zk: KazooClient | None = None

    @property
    def zk(self) -> KazooClient:
        assert self._zk is not None, "open() first"
        return self._zk

    async def open(self, metadata: Mapping[str, Any], folder: str) -> None:
        self._hosts = str(metadata["zookeeperHosts"])
        self.base = f"{str(metadata['basePath']).rstrip('/')}/{folder}"
        auth = [("digest", str(metadata["zookeeperPassword"]))] if metadata["zookeeperPassword"] else None
        self._zk = KazooClient(hosts=self._hosts, timeout=float(metadata["sessionTimeout"]), auth_data=auth)
        await self.run(lambda zk: zk.start(timeout=float(metadata["sessionTimeout"])))
        await self.run(lambda zk: zk.ensure_path(self.base))

    async def close(self) -> None:
        if self._zk is not None:
            zk = self._zk
            await asyncio.to_thread(zk.stop)
            await asyncio.to_thread(zk.close)

    async def run(self, call: Callable[[KazooClient], T], operation: str = "request") -> T:
        """Run a kazoo call on a worker thread, mapping failures to the runtime's errors, in a
        backend span named after ``operation``."""
        zk = self.zk

        def guarded() -> T:
            try:
                return call(zk)
            except _UNREACHABLE as error:
                raise BackendUnavailable(self.component, f"{type(error).__name__}: {error}") from error

        try:
            with backend_span("zookeeper", operation, peer=self._hosts):
                return await asyncio.to_thread(guarded)
        except (BackendUnavailable, BackendError):
            raise
        except KazooException:
            raise
        except Exception as error:
            raise BackendError(self.component, str(error)) from error

    def path(self, key: str) -> str:
        return f"{self.base}/{node_name(key)}"

    async def health(self) -> Health:
        if self._zk is None or not self._zk.connected:
            return Health(up=False, details={"error": "not connected to ZooKeeper"})
        return Health(up=True)

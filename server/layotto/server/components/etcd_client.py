"""The etcd v3 connection shared by the etcd components (etcd's own gRPC API, via aetcd's stubs)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
from aetcd import rpc

from layotto.server.components.base import Health, MetadataField
from layotto.server.errors import BackendError, BackendUnavailable
from layotto.tracing import backend_span

ETCD_METADATA = (
    MetadataField("endpoints", "Comma-separated HOST:PORT of etcd members.", required=True, example="127.0.0.1:2379"),
    MetadataField(
        "timeoutInSeconds", "Deadline of each etcd request.", type=float, default=5.0, minimum=0.1, maximum=3600
    ),
)
_UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def grpc_target(endpoints: str) -> str:
    """A gRPC target for a comma-separated endpoint list (IPs are balanced, names use the first)."""
    hosts = [e.strip().removeprefix("http://").removeprefix("https://") for e in endpoints.split(",") if e.strip()]
    if len(hosts) > 1 and all(h.split(":")[0].replace(".", "").isdigit() for h in hosts):
        return "ipv4:" + ",".join(hosts)
    return hosts[0]


class EtcdConnection:
    def __init__(self, component: str) -> None:
        self.component = component
        self.timeout = 5.0
        self.target = ""
        self._channel: grpc.aio.Channel | None = None

    async def open(self, metadata: Mapping[str, Any]) -> None:
        self.timeout = float(metadata["timeoutInSeconds"])
        self.target = grpc_target(str(metadata["endpoints"]))
        self._channel = grpc.aio.insecure_channel(self.target)
        self.kv = rpc.KVStub(self._channel)
        self.watch = rpc.WatchStub(self._channel)
        self.lease = rpc.LeaseStub(self._channel)
        async with self.errors():
            await self.kv.Range(rpc.RangeRequest(key=b"\0", limit=1), timeout=self.timeout)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)

    @asynccontextmanager
    async def errors(self, operation: str = "Range") -> AsyncIterator[None]:
        """Map gRPC errors to the runtime's, in a backend span named after ``operation``."""
        try:
            with backend_span("etcd", operation, peer=self.target):
                yield
        except grpc.aio.AioRpcError as error:
            if error.code() in _UNREACHABLE:
                raise BackendUnavailable(self.component, error.details() or error.code().name) from error
            raise BackendError(self.component, f"{error.code().name}: {error.details()}") from error

    async def grant(self, ttl_seconds: int) -> int:
        async with self.errors("LeaseGrant"):
            lease = await self.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=ttl_seconds), timeout=self.timeout)
        return int(lease.ID)

    async def revoke(self, lease_id: int) -> None:
        async with self.errors("LeaseRevoke"):
            try:
                await self.lease.LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease_id), timeout=self.timeout)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:  # already expired
                    raise

    async def health(self) -> Health:
        try:
            async with self.errors():
                await self.kv.Range(rpc.RangeRequest(key=b"\0", limit=1), timeout=self.timeout)
        except (BackendUnavailable, BackendError) as error:
            return Health(up=False, details={"error": error.message})
        return Health(up=True)

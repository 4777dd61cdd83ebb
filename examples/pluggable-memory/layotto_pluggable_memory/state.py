"""A pluggable state store written in Python: Dapr's ``dapr.proto.components.v1.StateStore`` (and
``TransactionalStateStore``) over an in-memory dict, served with gRPC reflection on a Unix socket, as
a component in any language would be. Etags are version numbers; a stale etag answers FAILED_PRECONDITION
and one that is not a number INVALID_ARGUMENT (Dapr's codes for the pluggable state protocol)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from layotto.proto.components.v1 import common_pb2, state_pb2, state_pb2_grpc

STATE = state_pb2.DESCRIPTOR.services_by_name["StateStore"].full_name
TRANSACTIONAL = state_pb2.DESCRIPTOR.services_by_name["TransactionalStateStore"].full_name
FIRST_WRITE = state_pb2.StateOptions.CONCURRENCY_FIRST_WRITE


class MemoryStateComponent(state_pb2_grpc.StateStoreServicer, state_pb2_grpc.TransactionalStateStoreServicer):
    def __init__(self, features: Sequence[str]) -> None:
        self.features = list(features)
        self.data: dict[str, tuple[bytes, int]] = {}
        self.version = 0
        self.inits: list[tuple[dict[str, str], str]] = []  # (metadata properties, x-component-instance)
        self.calls: list[str] = []

    async def Init(self, request: Any, context: Any) -> Any:
        instance = dict(context.invocation_metadata()).get("x-component-instance", "")
        self.inits.append((dict(request.metadata.properties), instance))
        return state_pb2.InitResponse()

    async def Features(self, request: Any, context: Any) -> Any:
        return common_pb2.FeaturesResponse(features=self.features)

    async def Ping(self, request: Any, context: Any) -> Any:
        return common_pb2.PingResponse()

    async def Get(self, request: Any, context: Any) -> Any:
        self.calls.append(f"Get {request.key}")
        found = self.data.get(request.key)
        if found is None:
            return state_pb2.GetResponse()
        return state_pb2.GetResponse(data=found[0], etag=state_pb2.Etag(value=str(found[1])))

    async def _check(self, request: Any, context: Any) -> None:
        current = self.data.get(request.key)
        if request.HasField("etag"):
            if not request.etag.value.isdigit():
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"etag {request.etag.value!r} is not mine")
            if current is None or str(current[1]) != request.etag.value:
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "etag mismatch")
        elif request.options.concurrency == FIRST_WRITE and current is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "first write: the key exists")

    async def Set(self, request: Any, context: Any) -> Any:
        self.calls.append(f"Set {request.key}")
        await self._check(request, context)
        self.version += 1
        self.data[request.key] = (request.value, self.version)
        return state_pb2.SetResponse()

    async def Delete(self, request: Any, context: Any) -> Any:
        self.calls.append(f"Delete {request.key}")
        await self._check(request, context)
        self.data.pop(request.key, None)
        return state_pb2.DeleteResponse()

    async def BulkGet(self, request: Any, context: Any) -> Any:
        items = []
        for item in request.items:
            found = self.data.get(item.key)
            if found is None:
                items.append(state_pb2.BulkStateItem(key=item.key))
            else:
                items.append(
                    state_pb2.BulkStateItem(key=item.key, data=found[0], etag=state_pb2.Etag(value=str(found[1])))
                )
        return state_pb2.BulkGetResponse(items=items)

    async def BulkSet(self, request: Any, context: Any) -> Any:
        for item in request.items:
            await self.Set(item, context)
        return state_pb2.BulkSetResponse()

    async def BulkDelete(self, request: Any, context: Any) -> Any:
        for item in request.items:
            await self.Delete(item, context)
        return state_pb2.BulkDeleteResponse()

    async def Transact(self, request: Any, context: Any) -> Any:
        self.calls.append(f"Transact {len(request.operations)}")
        for operation in request.operations:  # all checked before any applies: atomic
            await self._check(getattr(operation, operation.WhichOneof("request")), context)
        for operation in request.operations:
            if operation.HasField("set"):
                self.version += 1
                self.data[operation.set.key] = (operation.set.value, self.version)
            else:
                self.data.pop(operation.delete.key, None)
        return state_pb2.TransactionalStateResponse()


@asynccontextmanager
async def serve_state(socket: Path, component: MemoryStateComponent) -> AsyncIterator[grpc.aio.Server]:
    """Serve ``component`` on ``socket`` (reflection listing its services) until the block exits."""
    server = grpc.aio.server()
    state_pb2_grpc.add_StateStoreServicer_to_server(component, server)
    services = [STATE, reflection.SERVICE_NAME]
    if "TRANSACTIONAL" in component.features:
        state_pb2_grpc.add_TransactionalStateStoreServicer_to_server(component, server)
        services.append(TRANSACTIONAL)
    reflection.enable_server_reflection(services, server)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(None)

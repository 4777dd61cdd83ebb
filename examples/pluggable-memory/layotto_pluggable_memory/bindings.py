"""A pluggable binding written in Python: an in-memory queue serving Dapr's
``dapr.proto.components.v1.OutputBinding`` and ``InputBinding`` on a Unix socket, with gRPC
reflection. The output operation ``create`` queues its data (answering the item's id in the
``id`` metadata); ``Read`` streams hand the queued items out, and an item answered with
``response_error`` is queued again."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection

from layotto.proto.components.v1 import bindings_pb2, bindings_pb2_grpc, common_pb2

INPUT = bindings_pb2.DESCRIPTOR.services_by_name["InputBinding"].full_name
OUTPUT = bindings_pb2.DESCRIPTOR.services_by_name["OutputBinding"].full_name


class MemoryQueueBinding:
    """The queue and what it was told; served by the two services below."""

    def __init__(self) -> None:
        self.inits: list[tuple[str, dict[str, str]]] = []  # (which service, metadata properties)
        self.answers: list[tuple[str, str]] = []  # (message id, response error or "")
        self._queue: asyncio.Queue[bindings_pb2.ReadResponse] = asyncio.Queue()
        self._ids = itertools.count(1)

    def record_init(self, service: str, request: Any) -> None:
        self.inits.append((service, dict(request.metadata.properties)))

    async def ListOperations(self, request: Any, context: Any) -> Any:
        return bindings_pb2.ListOperationsResponse(operations=["create"])

    async def Invoke(self, request: Any, context: Any) -> Any:
        if request.operation != "create":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"unknown operation {request.operation!r}")
        item_id = f"q{next(self._ids)}"
        self._queue.put_nowait(
            bindings_pb2.ReadResponse(data=request.data, metadata=request.metadata, message_id=item_id)
        )
        return bindings_pb2.InvokeResponse(metadata={"id": item_id})

    async def Read(self, requests: Any, context: Any) -> AsyncIterator[Any]:
        pending: dict[str, bindings_pb2.ReadResponse] = {}

        async def read_answers() -> None:
            async for answer in requests:
                item = pending.pop(answer.message_id, None)
                error = answer.response_error.message if answer.HasField("response_error") else ""
                self.answers.append((answer.message_id, error))
                if error and item is not None:
                    self._queue.put_nowait(item)

        reader = asyncio.create_task(read_answers())
        try:
            while True:
                item = await self._queue.get()
                pending[item.message_id] = item
                yield item
        finally:
            for item in pending.values():  # handed out, never answered: queued again
                self._queue.put_nowait(item)
            reader.cancel()
            with suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await reader


class _InputInit(bindings_pb2_grpc.InputBindingServicer):
    """The queue's InputBinding service: its own Init, the rest shared."""

    def __init__(self, queue: MemoryQueueBinding) -> None:
        self._queue = queue

    async def Init(self, request: Any, context: Any) -> Any:
        self._queue.record_init("input", request)
        return bindings_pb2.InputBindingInitResponse()

    async def Read(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        async for item in self._queue.Read(request_iterator, context):
            yield item

    async def Ping(self, request: Any, context: Any) -> Any:
        return common_pb2.PingResponse()


class _OutputInit(bindings_pb2_grpc.OutputBindingServicer):
    """The queue's OutputBinding service: its own Init, the rest shared."""

    def __init__(self, queue: MemoryQueueBinding) -> None:
        self._queue = queue

    async def Init(self, request: Any, context: Any) -> Any:
        self._queue.record_init("output", request)
        return bindings_pb2.OutputBindingInitResponse()

    async def Invoke(self, request: Any, context: Any) -> Any:
        return await self._queue.Invoke(request, context)

    async def ListOperations(self, request: Any, context: Any) -> Any:
        return await self._queue.ListOperations(request, context)

    async def Ping(self, request: Any, context: Any) -> Any:
        return common_pb2.PingResponse()


@asynccontextmanager
async def serve_binding(socket: Path, component: MemoryQueueBinding) -> AsyncIterator[grpc.aio.Server]:
    """Serve ``component`` on ``socket`` (reflection listing both services) until the block exits."""
    server = grpc.aio.server()
    bindings_pb2_grpc.add_InputBindingServicer_to_server(_InputInit(component), server)
    bindings_pb2_grpc.add_OutputBindingServicer_to_server(_OutputInit(component), server)
    reflection.enable_server_reflection([INPUT, OUTPUT, reflection.SERVICE_NAME], server)
    server.add_insecure_port(f"unix:{socket}")
    await server.start()
    try:
        yield server
    finally:
        await server.stop(None)

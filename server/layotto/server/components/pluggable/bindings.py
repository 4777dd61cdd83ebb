"""A binding served by a pluggable component (``dapr.proto.components.v1.InputBinding`` and/or
``OutputBinding``).

An output binding's operations are those its ``ListOperations`` answered at discovery; the runtime
refuses any other before the component is asked. An input binding is one ``Read`` stream: each event
the component sends is handed to the app, then answered on the stream with its ``message_id`` (with
``response_error`` when the app did not take it, so the component may offer it again, as Dapr does).
A stream that breaks is opened again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

from layotto.proto.components.v1 import bindings_pb2, bindings_pb2_grpc, common_pb2
from layotto.server.components.base import ComponentContext, ConfigError, Feature, Health
from layotto.server.components.bindings import (
    BindingEvent,
    BindingRequest,
    BindingResponse,
    EventHandler,
    InputBinding,
    OutputBinding,
)
from layotto.server.components.pluggable import (
    CALL_TIMEOUT,
    INPUT_BINDING,
    OUTPUT_BINDING,
    REOPEN_SECONDS,
    OpenSpec,
    backend_error,
    instance_metadata,
)
from layotto.server.errors import LayottoError

if TYPE_CHECKING:
    from layotto.server.components.pluggable import Discovered

log = logging.getLogger(__name__)


def pluggable_binding(type_name: str, found: Discovered) -> type[PluggableBinding]:
    """A binding class of type ``type_name`` talking to the socket ``found`` describes: an input
    binding when it serves ``InputBinding``, an output binding (with its listed operations) when it
    serves ``OutputBinding``."""
    features = set()
    if INPUT_BINDING in found.services:
        features.add(Feature.INPUT_BINDING)
    if OUTPUT_BINDING in found.services:
        features.add(Feature.OUTPUT_BINDING)
    spec = OpenSpec(
        type=type_name,
        building_block="bindings",
        description=f"Pluggable binding on {found.socket}",
        features=frozenset(features),
        operations=found.operations if OUTPUT_BINDING in found.services else (),
    )
    return type(f"PluggableBinding_{type_name}", (PluggableBinding,), {"spec": spec, "socket": str(found.socket)})


class PluggableBinding(OutputBinding, InputBinding):
    """Invokes with ``Invoke`` and reads with ``Read``; gRPC errors become BackendUnavailable
    (UNAVAILABLE, DEADLINE_EXCEEDED) or BackendError."""

    socket: ClassVar[str]

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._channel: grpc.aio.Channel | None = None
        self._output: bindings_pb2_grpc.OutputBindingAsyncStub | None = None
        self._input: bindings_pb2_grpc.InputBindingAsyncStub | None = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._channel = grpc.aio.insecure_channel(f"unix:{self.socket}")
        properties = common_pb2.MetadataRequest(properties=dict(metadata))
        try:
            if self.supports(Feature.OUTPUT_BINDING):
                self._output = bindings_pb2_grpc.OutputBindingStub(self._channel)
                request = bindings_pb2.OutputBindingInitRequest(metadata=properties)
                await self._output.Init(request, timeout=CALL_TIMEOUT, metadata=self._metadata())
            if self.supports(Feature.INPUT_BINDING):
                self._input = bindings_pb2_grpc.InputBindingStub(self._channel)
                init = bindings_pb2.InputBindingInitRequest(metadata=properties)
                await self._input.Init(init, timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise ConfigError(f"bindings.{self.name}: pluggable component refused Init: {error.details()}") from None

    def _metadata(self) -> tuple[tuple[str, str]]:
        return instance_metadata(self.name)

    def _error(self, error: grpc.aio.AioRpcError) -> LayottoError:
        return backend_error(self.name, error)

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        assert self._output is not None, "an output binding (the runtime checks the operations first)"
        wire = bindings_pb2.InvokeRequest(
            data=request.data, metadata=dict(request.metadata), operation=request.operation
        )
        try:
            answer = await self._output.Invoke(wire, timeout=CALL_TIMEOUT, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            raise self._error(error) from None
        return BindingResponse(data=answer.data, metadata=dict(answer.metadata))

    async def read(self, handler: EventHandler) -> None:
        assert self._input is not None, "an input binding (the runtime reads only those)"
        while True:
            answers: asyncio.Queue[bindings_pb2.ReadRequest | None] = asyncio.Queue()
            call = self._input.Read(_requests(answers), metadata=self._metadata())
            try:
                async for event in call:
                    answers.put_nowait(await _handle(event, handler))
                log.warning("binding %r: the component ended the Read stream; reopening it", self.name)
            except grpc.aio.AioRpcError as error:
                log.warning(
                    "binding %r: Read failed (%s: %s); reopening it", self.name, error.code().name, error.details()
                )
            finally:
                answers.put_nowait(None)
                call.cancel()
            await asyncio.sleep(REOPEN_SECONDS)

    async def health(self) -> Health:
        stub: Any = self._output or self._input
        if stub is None:
            return Health(up=True)
        try:
            await stub.Ping(common_pb2.PingRequest(), timeout=5, metadata=self._metadata())
        except grpc.aio.AioRpcError as error:
            return Health(up=False, details={"error": f"{error.code().name}: {error.details()}"})
        return Health(up=True)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(grace=None)
            self._channel = None


async def _handle(event: bindings_pb2.ReadResponse, handler: EventHandler) -> bindings_pb2.ReadRequest:
    """Hand one event to the app; the stream's answer, with ``response_error`` when it failed."""
    try:
        await handler(BindingEvent(data=event.data, metadata=dict(event.metadata)))
    except Exception as error:  # the app did not take it: the component decides whether it comes again
        text = f"{type(error).__name__}: {error}"
        return bindings_pb2.ReadRequest(
            message_id=event.message_id, response_error=bindings_pb2.AckResponseError(message=text)
        )
    return bindings_pb2.ReadRequest(message_id=event.message_id)


async def _requests(
    answers: asyncio.Queue[bindings_pb2.ReadRequest | None],
) -> AsyncIterator[bindings_pb2.ReadRequest]:
    while (request := await answers.get()) is not None:
        yield request

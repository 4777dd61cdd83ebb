"""Input bindings delivered to the application through Dapr's AppCallback.

The runtime asks the app's ``ListInputBindings`` when it starts and again every
``subscriptions_refresh_seconds`` (an app that is not reachable is asked again after 1 s,
doubling up to 10 s; an app answering UNIMPLEMENTED reads no bindings), reads the input
bindings it lists, and calls ``OnBindingEvent`` for each event. The reply's ``states`` are
saved to its ``store_name`` as Dapr's SaveState would (a failure fails the event, so a source
that can redeliver does), then its ``data`` is sent to each output binding of its ``to`` (with
the ``create`` operation), one after another or all at once as its ``concurrency`` says.
Layotto's AppCallback has no binding RPCs, so Dapr's is asked whatever
``app_callback_protocol`` says: an app may serve both on its callback address.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import grpc
from google.protobuf import empty_pb2

from layotto.proto.dapr.runtime.v1 import appcallback_pb2 as dapr_appcallback_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc as dapr_appcallback_grpc
from layotto.server.aio import stop_task
from layotto.server.api.state import to_set_request
from layotto.server.api_token import sending_token
from layotto.server.components.bindings import BindingEvent
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import BackendUnavailable
from layotto.server.runtime.bindings import EventReply, InputBindingReaders, forward_reply
from layotto.server.runtime.resiliency import Resiliency, inbound_call
from layotto.server.runtime.state import StateService

if TYPE_CHECKING:
    from layotto.tracing import Tracing

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
UNREACHABLE_RETRY_SECONDS = 1.0
UNREACHABLE_MAX_RETRY_SECONDS = 10.0
_PARALLEL = dapr_appcallback_pb2.BindingEventResponse.BindingEventConcurrency.PARALLEL


class AppBindings:
    """Keeps the runtime reading the input bindings the app's ListInputBindings names."""

    def __init__(
        self,
        components: ComponentSet,
        state: StateService,
        *,
        address: str,
        refresh_seconds: float,
        tracing: Tracing | None = None,
        app_api_token: str = "",
        resiliency: Resiliency | None = None,
    ) -> None:
        self._components = components
        self._resiliency = resiliency
        self._address = address
        self._refresh_seconds = refresh_seconds
        interceptors = tracing.client_interceptors(address) if tracing is not None else None
        # every callback carries APP_API_TOKEN as dapr-api-token when it is set
        self._channel = grpc.aio.insecure_channel(address, interceptors=sending_token(app_api_token, interceptors))
        self._stub = dapr_appcallback_grpc.AppCallbackStub(self._channel)
        self.readers = InputBindingReaders(components, self._deliver)
        self._state = state
        self._task: asyncio.Task[None] | None = None
        self.listed = asyncio.Event()  # set after the first answer of ListInputBindings

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listed())

    async def _list(self) -> list[str]:
        try:
            response = await self._stub.ListInputBindings(empty_pb2.Empty(), timeout=5.0)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return []
            raise
        return list(response.bindings)

    async def _keep_listed(self) -> None:
        retry = UNREACHABLE_RETRY_SECONDS
        while True:
            try:
                names = await self._list()
            except grpc.aio.AioRpcError as error:
                log.debug("app callback at %s: ListInputBindings failed (%s)", self._address, error.code().name)
                await asyncio.sleep(retry)
                retry = min(retry * 2, UNREACHABLE_MAX_RETRY_SECONDS)
                continue
            retry = UNREACHABLE_RETRY_SECONDS
            await self.readers.apply(names)
            self.listed.set()
            await asyncio.sleep(self._refresh_seconds)

    async def _deliver(self, name: str, event: BindingEvent) -> None:
        request = dapr_appcallback_pb2.BindingEventRequest(name=name, data=event.data, metadata=dict(event.metadata))
        policy = self._resiliency.inbound(name) if self._resiliency is not None else None
        try:
            response = await inbound_call(
                policy, lambda seconds: self._stub.OnBindingEvent(request, timeout=seconds), CALL_TIMEOUT_SECONDS
            )
        except grpc.aio.AioRpcError as error:
            detail = f"OnBindingEvent({name}): {error.details()}"
            raise BackendUnavailable(f"app callback {self._address}", detail) from error
        if response.states:  # saved as Dapr's SaveState would: the same checks, errors and etags
            fields = [f"states[{i}]" for i in range(len(response.states))]
            writes = [to_set_request(item, field) for item, field in zip(response.states, fields, strict=True)]
            await self._state.write(response.store_name, writes, fields)
        if response.to:
            reply = EventReply(to=tuple(response.to), data=response.data, parallel=response.concurrency == _PARALLEL)
            await forward_reply(self._components, reply)

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        await self.readers.aclose()
        await self._channel.close(None)

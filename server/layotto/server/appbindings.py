"""Input bindings delivered to the application, whichever protocol it speaks.

:class:`InputBindingsKeeper` asks the app which input bindings it wants when it starts and again
every ``subscriptions_refresh_seconds`` (an app that is not reachable is asked again after 1 s,
doubling up to 10 s), reads those bindings, hands each event to the app and does what the app
answered (:func:`~layotto.server.runtime.bindings.apply_reply`): the reply's states are saved to
its store as Dapr's SaveState would (a failure fails the event, so a source that can redeliver
does), then its data is sent to each output binding of its ``to`` (with the ``create`` operation),
one after another or all at once as its concurrency says. Each call to the app runs under the
binding's inbound resiliency policy. Subclasses say how the app is asked and called:

* :class:`AppBindings`, a gRPC app: Dapr's AppCallback ``ListInputBindings`` (UNIMPLEMENTED: no
  binding) and ``OnBindingEvent``. Layotto's AppCallback has no binding RPCs, so Dapr's is asked
  whatever ``app_callback_protocol`` says: an app may serve both on its callback address.
* :class:`~layotto.server.http_appbindings.HttpAppBindings`, an HTTP app (``app_protocol: http``).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from typing import TYPE_CHECKING, Generic, TypeVar

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
from layotto.server.runtime.bindings import EventReply, InputBindingReaders, apply_reply
from layotto.server.runtime.resiliency import Policy, Resiliency, inbound_call
from layotto.server.runtime.state import StateService
from layotto.server.subscription_keeper import AppUnreachable

if TYPE_CHECKING:
    from layotto.tracing import Tracing

log = logging.getLogger(__name__)

CALL_TIMEOUT_SECONDS = 30.0
UNREACHABLE_RETRY_SECONDS = 1.0
UNREACHABLE_MAX_RETRY_SECONDS = 10.0
_PARALLEL = dapr_appcallback_pb2.BindingEventResponse.BindingEventConcurrency.PARALLEL

Answer = TypeVar("Answer")  # what the app answers an event with, as its protocol carries it


class InputBindingsKeeper(abc.ABC, Generic[Answer]):
    """Keeps the runtime reading the input bindings the app wants and delivering their events (see the module)."""

    def __init__(
        self,
        components: ComponentSet,
        state: StateService,
        *,
        address: str,
        refresh_seconds: float,
        resiliency: Resiliency | None = None,
    ) -> None:
        self._components = components
        self._state = state
        self._resiliency = resiliency
        self.address = address
        self._refresh_seconds = refresh_seconds
        self.readers = InputBindingReaders(components, self._deliver)
        self._task: asyncio.Task[None] | None = None
        self.listed = asyncio.Event()  # set after the app's first answer

    @abc.abstractmethod
    async def wanted(self) -> tuple[list[str], bool]:
        """The input bindings the app wants, and whether it answered for all of them (False: asked
        again soon, after 1 s doubling to 10 s). Raises AppUnreachable when it answered nothing."""

    @abc.abstractmethod
    async def call_app(self, name: str, event: BindingEvent, seconds: float) -> Answer:
        """Hand one event of binding ``name`` to the app within ``seconds``; what it answered.
        Raises (any LayottoError) when the app did not take the event."""

    @abc.abstractmethod
    def reply_of(self, answer: Answer) -> EventReply | None:
        """What to do with the app's answer (None: it is a plain acknowledgement). Raises
        InvalidArgument naming the field of a reply that cannot be done (the event fails)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_listed())

    async def _keep_listed(self) -> None:
        retry = UNREACHABLE_RETRY_SECONDS
        while True:
            try:
                names, complete = await self.wanted()
            except AppUnreachable as error:
                log.debug("app at %s: could not ask for its input bindings (%s)", self.address, error)
                complete = False
            else:
                await self.readers.apply(names)
                self.listed.set()
            if complete:
                retry = UNREACHABLE_RETRY_SECONDS
                await asyncio.sleep(self._refresh_seconds)
            else:
                await asyncio.sleep(retry)
                retry = min(retry * 2, UNREACHABLE_MAX_RETRY_SECONDS)

    async def _deliver(self, name: str, event: BindingEvent) -> None:
        policy: Policy | None = self._resiliency.inbound(name) if self._resiliency is not None else None
        answer = await inbound_call(policy, lambda seconds: self.call_app(name, event, seconds), CALL_TIMEOUT_SECONDS)
        reply = self.reply_of(answer)
        if reply is not None:
            await apply_reply(self._components, self._state, reply)

    async def aclose(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        await self.readers.aclose()


class AppBindings(InputBindingsKeeper[dapr_appcallback_pb2.BindingEventResponse]):
    """Input bindings of a gRPC app: its ListInputBindings names them, OnBindingEvent takes each event."""

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
        super().__init__(components, state, address=address, refresh_seconds=refresh_seconds, resiliency=resiliency)
        interceptors = tracing.client_interceptors(address) if tracing is not None else None
        # every callback carries APP_API_TOKEN as dapr-api-token when it is set
        self._channel = grpc.aio.insecure_channel(address, interceptors=sending_token(app_api_token, interceptors))
        self._stub = dapr_appcallback_grpc.AppCallbackStub(self._channel)

    async def wanted(self) -> tuple[list[str], bool]:
        try:
            response = await self._stub.ListInputBindings(empty_pb2.Empty(), timeout=5.0)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                return [], True
            raise AppUnreachable(f"ListInputBindings failed ({error.code().name})") from None
        return list(response.bindings), True

    async def call_app(
        self, name: str, event: BindingEvent, seconds: float
    ) -> dapr_appcallback_pb2.BindingEventResponse:
        request = dapr_appcallback_pb2.BindingEventRequest(name=name, data=event.data, metadata=dict(event.metadata))
        try:
            response = await self._stub.OnBindingEvent(request, timeout=seconds)
        except grpc.aio.AioRpcError as error:
            detail = f"OnBindingEvent({name}): {error.details()}"
            raise BackendUnavailable(f"app callback {self.address}", detail) from error
        return response

    def reply_of(self, answer: dapr_appcallback_pb2.BindingEventResponse) -> EventReply:
        response = answer
        fields = tuple(f"states[{i}]" for i in range(len(response.states)))
        return EventReply(  # the states as Dapr's SaveState takes them: the same checks, errors and etags
            store_name=response.store_name,
            states=tuple(to_set_request(item, field) for item, field in zip(response.states, fields, strict=True)),
            fields=fields,
            to=tuple(response.to),
            data=response.data,
            parallel=response.concurrency == _PARALLEL,
        )

    async def aclose(self) -> None:
        await super().aclose()
        await self._channel.close(None)

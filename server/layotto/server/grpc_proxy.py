"""Dapr's gRPC proxying: an app calls any gRPC service of another app through its sidecar.

The app sends the target service's own call (``/helloworld.Greeter/SayHello``) to its sidecar's
gRPC port with ``dapr-app-id: <target>`` metadata. :class:`GrpcProxy` is a generic handler the
server asks for every method it has not registered: without ``dapr-app-id`` it declines (the call
is UNIMPLEMENTED, as before); with it, it serves the call as a bidirectional stream of raw bytes
(nothing is deserialized, so unary, server-, client- and bidi-streaming calls all pass), and relays
it over one of the runtime's channels:

* to the sidecar of the target app (found by name resolution, round-robin; a sidecar that does not
  connect is skipped), with the hop headers of service invocation (``layotto-invoke-hop``, the
  caller's app id, the deployment's invoke token) and the runtime's API token;
* or, when the target is this runtime's own app, to the app's gRPC port (``app_protocol: grpc``),
  with ``dapr-caller-app-id`` / ``dapr-callee-app-id`` and the app's API token.

The caller's metadata passes on, but for gRPC's own, the hop's, ``dapr-app-id`` (kept on the hop
to route it), ``dapr-stream`` and ``dapr-api-token``. The app's initial metadata, messages, status,
message and trailing metadata (``grpc-status-details-bin`` included) come back as they are. The
call's deadline goes on as the time that remains; a cancelled call cancels the next hop. Flow
control (per method and per target app) and access control (on the callee, verb NONE, the method
path as operation) apply as to ``InvokeService``, and so does its metadata limit (7,680 bytes,
PAYLOAD_TOO_LARGE naming ``metadata``, checked before the call goes on); errors of the sidecars themselves carry their
reason (APP_NOT_FOUND, APP_UNAVAILABLE, ACCESS_DENIED, ...).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, TypeAlias

import grpc

from layotto.server.api.invoke import HOP_HEADERS, RESERVED_HEADERS, TRACE_HEADERS, time_remaining
from layotto.server.api.status import to_status
from layotto.server.api_token import TOKEN_HEADER as API_TOKEN_HEADER
from layotto.server.errors import AppUnavailable, LayottoError, PayloadTooLarge
from layotto.server.invoke_channels import (
    CONNECT_GRACE_SECONDS,
    GrpcAppChannel,
    GrpcSidecarForwarder,
    grpc_timeout,
    require_sendable_metadata,
    until_ready,
)
from layotto.server.runtime.invocation import CALLER_APP_ID_HEADER, HOP_HEADER, TOKEN_HEADER, Invoker, ProxyRoute
from layotto.server.runtime.resiliency.policy import Policy

APP_ID_HEADER = "dapr-app-id"
"""The metadata naming the target app of a proxied call."""
STREAM_HEADER = "dapr-stream"
"""Older Dapr versions' mark of a streaming call: accepted and dropped (every call is relayed as a stream)."""
CALLER_HEADER = "dapr-caller-app-id"
CALLEE_HEADER = "dapr-callee-app-id"
#: never relayed as they came: the sidecars set them
DROPPED_HEADERS = HOP_HEADERS | {APP_ID_HEADER, STREAM_HEADER, CALLEE_HEADER}
#: what grpc answers a method nobody serves
UNKNOWN_METHOD = "Method not found!"
_KEEP_TRAILER = "grpc-status-details-bin"
#: grpc.aio's status of a call whose message was written as the callee's status arrived
WRITE_RACE_DETAILS = "Internal error from Core"
WRITE_RACE_POLLS = 200
WRITE_RACE_POLL_SECONDS = 0.005  # the callee's status follows within a loop turn or two

Metadata: TypeAlias = "tuple[tuple[str, str | bytes], ...]"


def relayed_metadata(metadata: Iterable[tuple[str, str | bytes]], strip_trace: bool = False) -> Metadata:
    """The caller's metadata a proxied call passes on: not gRPC's or HTTP/2's own, not the sidecars'
    (:data:`DROPPED_HEADERS`), nor the trace headers when the runtime traces (it sends its own)."""
    kept = []
    for name, value in metadata:
        key = name.lower()
        if key.startswith((":", "grpc-")) or key in RESERVED_HEADERS or key in DROPPED_HEADERS:
            continue
        if strip_trace and key in TRACE_HEADERS:
            continue
        kept.append((key, value))
    return tuple(kept)


def returned_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    """An answer's initial or trailing metadata as it goes back: gRPC's own keys are gRPC's to set,
    but for the rich status details."""
    return tuple(
        (key, value)
        for key, value in metadata or ()
        if key == _KEEP_TRAILER or not (key.startswith((":", "grpc-")) or key in RESERVED_HEADERS)
    )


def _first(metadata: Iterable[tuple[str, str | bytes]], key: str) -> str | None:
    for name, value in metadata:
        if name == key and isinstance(value, str):
            return value
    return None


async def _pump(requests: AsyncIterator[bytes], call: Any) -> None:
    """The caller's messages to the callee, then the end of them (until the callee's call ends)."""
    try:
        async for message in requests:
            await call.write(message)
        await call.done_writing()
    except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
        return  # the callee's call ended: its status goes back to the caller


Status: TypeAlias = "tuple[grpc.StatusCode, str, Metadata]"


def _at_once(awaitable: Any) -> Any:
    """The result of a call's status accessor that needs no waiting (the call is done); None else."""
    try:
        awaitable.send(None)
    except StopIteration as done:
        return done.value
    except Exception:  # called from grpc's own callback: nothing may escape
        return None
    awaitable.close()
    return None


class _EndOfCall:
    """How the callee ended a call: its status, message and trailers.

    grpc.aio overwrites a call's status with INTERNAL "Internal error from Core" when a message
    written as the callee's status arrives fails (grpc/grpc#36066), which happens whenever a callee
    answers before reading the caller's stream (any gRPC server may). The first status a call ends
    with is kept here the moment it is set; when that first one is the overwrite, the callee's own
    follows a moment later and replaces it in the call, where it is waited for.
    """

    def __init__(self, call: Any) -> None:
        self._call = call
        self._first: Status | None = None
        call.add_done_callback(self._keep)

    def _keep(self, call: Any) -> None:
        code, details = _at_once(call.code()), _at_once(call.details())
        self._first = (code, details or "", tuple(_at_once(call.trailing_metadata()) or ()))

    async def status(self) -> Status:
        first = self._first
        if first is not None and first[0] is not None and not _overwritten(first[0], first[1]):
            return first
        code, details = await self._call.code(), await self._call.details()
        for _ in range(WRITE_RACE_POLLS):
            if not _overwritten(code, details):
                break
            await asyncio.sleep(WRITE_RACE_POLL_SECONDS)
            code, details = await self._call.code(), await self._call.details()
        return code, details or "", tuple(await self._call.trailing_metadata() or ())


def _overwritten(code: grpc.StatusCode, details: str) -> bool:
    return code is grpc.StatusCode.INTERNAL and details == WRITE_RACE_DETAILS


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "y", "on")


def _call_timeout(timeout: float | None, policy: Policy | None, *, streaming: bool) -> float | None:
    """The call's deadline (seconds), cut by the target's resiliency timeout but for a call marked
    ``dapr-stream`` (a stream may last: as in Dapr, no timeout of the policy's)."""
    limit = None if policy is None or streaming else policy.spec.timeout
    if limit is None:
        return timeout
    return limit if timeout is None else min(timeout, limit)


class _Breaker:
    """The target's circuit breaker around one proxied call (none: every method a no-op): admits
    it (raising CircuitOpen when open), then counts its outcome once, or gives its place back."""

    def __init__(self, policy: Policy | None) -> None:
        self._breaker = policy.breaker if policy is not None else None
        self._generation = self._breaker.before() if self._breaker is not None else 0
        self._open = self._breaker is not None

    def count(self, *, success: bool) -> None:
        if self._breaker is not None and self._open:
            self._breaker.after(self._generation, success)
            self._open = False

    def abandon(self) -> None:
        if self._breaker is not None and self._open:
            self._breaker.abandon(self._generation)
            self._open = False


class GrpcProxy(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """The handler of every unregistered method called with ``dapr-app-id`` (see the module).

    ``forwarder`` holds the channels to the other sidecars; ``app_channel`` the channel to the own
    app (None when it has no gRPC app); ``hop_token`` is the deployment's invoke token;
    ``strip_trace``: the runtime traces, so the caller's trace headers are replaced by its own.
    """

    def __init__(
        self,
        invoker: Invoker,
        forwarder: GrpcSidecarForwarder,
        app_channel: GrpcAppChannel | None,
        *,
        hop_token: str = "",
        strip_trace: bool = False,
    ) -> None:
        self._invoker = invoker
        self._forwarder = forwarder
        self._app_channel = app_channel
        self._hop_token = hop_token
        self._strip_trace = strip_trace

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        """A raw bidi-stream handler for a call with ``dapr-app-id``; None (UNIMPLEMENTED) without."""
        metadata = handler_call_details.invocation_metadata or ()
        if _first(metadata, APP_ID_HEADER) is None:
            return None
        method = handler_call_details.method

        async def relay(
            requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[bytes]:  # an async generator, as the tracing and metrics interceptors expect
            async for message in self._relay(method, requests, context):
                yield message

        return grpc.stream_stream_rpc_method_handler(relay)  # no (de)serializers: bytes in, bytes out

    async def _relay(
        self, method: str, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        metadata: Metadata = tuple(context.invocation_metadata() or ())
        app_id = _first(metadata, APP_ID_HEADER)
        if app_id is None:  # a tracing interceptor may hand a cached handler to a call without it
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, UNKNOWN_METHOD)
        assert app_id is not None
        timeout = time_remaining(context)
        try:
            route = await self._invoker.route_proxied(
                app_id,
                method,
                hop=_first(metadata, HOP_HEADER) is not None,
                caller_app_id=_first(metadata, CALLER_APP_ID_HEADER) or "",
                hop_token=_first(metadata, TOKEN_HEADER) or "",
            )
            timeout = _call_timeout(timeout, route.policy, streaming=_truthy(_first(metadata, STREAM_HEADER)))
            grace = CONNECT_GRACE_SECONDS if timeout is None else min(timeout, CONNECT_GRACE_SECONDS)
            breaker = _Breaker(route.policy)
            try:
                channel, outgoing = await self._target(route, relayed_metadata(metadata, self._strip_trace), grace)
            except LayottoError:
                breaker.count(success=False)
                raise
            try:  # as InvokeService: the next server would refuse it (431), or take it by chance
                require_sendable_metadata(outgoing)
            except PayloadTooLarge:
                breaker.abandon()  # the caller's fault: not the target's
                raise
        except LayottoError as error:
            code, message, trailers = to_status(error)
            await context.abort(code, message, trailing_metadata=trailers)
        call = channel.stream_stream(method, None, None)(None, timeout=grpc_timeout(timeout), metadata=outgoing)
        end = _EndOfCall(call)
        pump = asyncio.create_task(_pump(requests, call))
        failed = False
        try:
            headers = returned_metadata(await call.initial_metadata())
            if headers:
                await context.send_initial_metadata(headers)
            async for message in call:
                yield message
        except grpc.aio.AioRpcError:
            failed = True
        except (asyncio.CancelledError, GeneratorExit):
            breaker.abandon()  # the caller went away: the call has no outcome
            raise
        finally:  # the next hop and the pump end before the status goes back (or the caller is gone)
            call.cancel()  # a no-op once it ended; else (cancelled, failed) the next hop stops too
            pump.cancel()  # the caller's rest is not read once the callee answered
            await asyncio.gather(pump, return_exceptions=True)
        code, details, callee_trailers = await end.status()
        breaker.count(success=code is grpc.StatusCode.OK)
        if failed and code is not grpc.StatusCode.OK:
            await context.abort(code, details, trailing_metadata=returned_metadata(callee_trailers))
        context.set_trailing_metadata(returned_metadata(callee_trailers))

    async def _target(self, route: ProxyRoute, metadata: Metadata, grace: float) -> tuple[grpc.aio.Channel, Metadata]:
        """The connected channel the call goes on and the metadata it carries; an app coming up is
        waited for up to ``grace`` seconds, a sidecar that fails to connect is passed over.

        Raises AppUnavailable when the app, or every sidecar of it, does not connect."""
        if route.local:
            app = self._app_channel
            if app is None:
                raise AppUnavailable(route.app_id, "its runtime has no gRPC app (set app_protocol: grpc and app_port)")
            if not await until_ready(app.channel, grace):
                raise AppUnavailable(route.app_id, f"its app at {app.address} does not answer")
            extra: Metadata = ((CALLER_HEADER, route.caller_app_id), (CALLEE_HEADER, route.app_id))
            if app.app_api_token:
                extra += ((API_TOKEN_HEADER, app.app_api_token),)
            return app.channel, metadata + extra
        failures = []
        for address in route.addresses:
            channel = self._forwarder.channel(address)
            if await until_ready(channel, grace, fail_fast=True):
                return channel, metadata + self._hop_metadata(route)
            failures.append(f"its sidecar at {address} does not connect")
            await self._forwarder.drop(address)
        raise AppUnavailable(route.app_id, "; ".join(failures))

    def _hop_metadata(self, route: ProxyRoute) -> Metadata:
        hop: Metadata = ((APP_ID_HEADER, route.app_id), (HOP_HEADER, "1"), (CALLER_APP_ID_HEADER, route.caller_app_id))
        if self._hop_token:
            hop += ((TOKEN_HEADER, self._hop_token),)
        if self._forwarder.api_token:
            hop += ((API_TOKEN_HEADER, self._forwarder.api_token),)
        return hop


def build_grpc_proxy(invoker: Invoker, *, hop_token: str = "", strip_trace: bool = False) -> GrpcProxy | None:
    """The proxy of a runtime whose invoker has gRPC channels (None for another invoker)."""
    forwarder, app_channel = invoker.forwarder, invoker.app_channel
    if not isinstance(forwarder, GrpcSidecarForwarder):
        return None
    grpc_app = app_channel if isinstance(app_channel, GrpcAppChannel) else None
    return GrpcProxy(invoker, forwarder, grpc_app, hop_token=hop_token, strip_trace=strip_trace)

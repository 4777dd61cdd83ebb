"""The channels of service invocation: to this runtime's app (gRPC ``OnInvoke`` or HTTP) and to
other runtimes' sidecars (Dapr's ``InvokeService`` as the hop).

* :class:`GrpcAppChannel` calls ``dapr.proto.runtime.v1.AppCallback/OnInvoke`` at the app's
  callback address (Layotto's AppCallback has no OnInvoke; one app server can serve both
  services). The call's headers become its metadata, the app's initial metadata the headers.
* :class:`HttpAppChannel` sends ``VERB http://HOST:PORT/<method>?<querystring>`` (NONE is POST)
  with the headers and body; the app's status comes back as ``dapr-http-status``; a non-2xx
  status is an :class:`AppError` whose code is mapped from it, as Dapr's gRPC API does.
* :class:`GrpcSidecarForwarder` keeps one channel per callee sidecar and calls its Dapr
  ``InvokeService`` with the hop headers; headers text metadata cannot carry go, and come back, in
  one binary entry (:func:`~layotto.server.api.invoke.hop_metadata`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import aiohttp
import grpc
import yarl
from google.rpc import error_details_pb2, status_pb2
from multidict import CIMultiDict

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.dapr.runtime.v1 import appcallback_pb2_grpc as dapr_appcallback_grpc
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc, invoke_pb2
from layotto.proto.reasons import ERROR_DOMAIN
from layotto.server.api.invoke import (
    CARRIED_HEADERS_KEY,
    NO_DEADLINE_BEYOND_SECONDS,
    carried_headers,
    fill_invoke_message,
    grpc_app_metadata,
    hop_metadata,
)
from layotto.server.api_token import TOKEN_HEADER as API_TOKEN_HEADER
from layotto.server.api_token import sending_token
from layotto.server.config import RuntimeConfig
from layotto.server.errors import (
    AppError,
    AppUnavailable,
    DeadlineExceeded,
    InvalidArgument,
    PayloadTooLarge,
    RelayedError,
)
from layotto.server.runtime.invocation import (
    CALLER_APP_ID_HEADER,
    HOP_HEADER,
    HTTP_STATUS_HEADER,
    RAW_HTTP_STATUS_HEADER,
    TOKEN_HEADER,
    AppChannel,
    Invoker,
    InvokeRequest,
    InvokeResponse,
    Resolver,
    SidecarUnreachable,
)
from layotto.server.runtime.resiliency import Resiliency
from layotto.tracing import current_traceparent

if TYPE_CHECKING:  # the tracer loads OpenTelemetry's SDK: only when tracing is configured
    from layotto.tracing import Tracing

log = logging.getLogger(__name__)

#: response headers of an HTTP app that describe the connection, not the answer
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "date", "server"})
#: request headers the app gets from the caller or not at all (aiohttp would set its own
#: Accept-Encoding: the app could compress an answer the caller cannot read; the answer's body and
#: Content-Encoding pass as they are, the session does not decompress)
CALLERS_OWN_HEADERS = ("Accept-Encoding",)
#: what a query string may hold as it is (RFC 3986 query characters and escapes); anything else is escaped
QUERY_SAFE = "!$&'()*+,;=:@/?%"
#: how long a call waits for an app that refused the connection to come up (seconds)
CONNECT_GRACE_SECONDS = 2.0
#: an app or sidecar that went away is tried again within a second of coming back
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def grpc_timeout(seconds: float | None) -> float | None:
    """``seconds`` as a gRPC call's timeout: beyond :data:`NO_DEADLINE_BEYOND_SECONDS` none (grpc's
    deadline overflows near 9.2e9 s, and a call with it failed at once with DEADLINE_EXCEEDED)."""
    return None if seconds is None or seconds > NO_DEADLINE_BEYOND_SECONDS else seconds


def require_sendable(message: Any, max_message_bytes: int) -> None:
    """PayloadTooLarge (field ``message``) when the call's message is over the channel's limit: a
    body the API took whole made, with its method and headers, a message grpc refused to send (the
    caller was told the app was unavailable, or that the app had answered RESOURCE_EXHAUSTED)."""
    size = message.ByteSize()
    if size > max_message_bytes:
        raise PayloadTooLarge("message", size, max_message_bytes)


#: the call's own metadata a gRPC hop or app may carry (bytes as HTTP/2 counts them: name, value and
#: 32 per entry): gRPC servers refuse headers over 8 KiB (431), and gRPC's own take the rest
METADATA_LIMIT_BYTES = 8192 - 512


def metadata_bytes(metadata: Sequence[tuple[str, str | bytes]]) -> int:
    """The size of ``metadata`` as HTTP/2 counts it: each entry's name, value (a binary one
    base64-encoded, as gRPC sends it) and 32."""
    return sum(
        len(key) + (-(-len(value) * 4 // 3) if isinstance(value, bytes) else len(value.encode())) + 32
        for key, value in metadata
    )


def require_sendable_metadata(metadata: Sequence[tuple[str, str | bytes]]) -> None:
    """PayloadTooLarge (field ``metadata``) when ``metadata`` is over :data:`METADATA_LIMIT_BYTES`:
    HTTP headers the API took (8 KiB each) went on as a hop's metadata the callee's gRPC server
    refused with 431, and the caller was told the app was unavailable."""
    size = metadata_bytes(metadata)
    if size > METADATA_LIMIT_BYTES:
        raise PayloadTooLarge("metadata", size, METADATA_LIMIT_BYTES)


def _message_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *RECONNECT_OPTIONS,
    ]


def _refused(error: grpc.aio.AioRpcError) -> bool:
    """No connection was made: the call did not start."""
    return error.code() is grpc.StatusCode.UNAVAILABLE and "failed to connect" in (error.details() or "").lower()


async def until_ready(channel: grpc.aio.Channel, seconds: float, *, fail_fast: bool = False) -> bool:
    """Whether ``channel`` is READY within ``seconds``; ``fail_fast``: False at the first failure."""
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + seconds
    state = channel.get_state(try_to_connect=True)
    while state is not grpc.ChannelConnectivity.READY:
        remaining = ends_at - loop.time()
        if remaining <= 0 or (fail_fast and state is grpc.ChannelConnectivity.TRANSIENT_FAILURE):
            return False
        try:
            await asyncio.wait_for(channel.wait_for_state_change(state), remaining)
        except TimeoutError:
            return False
        state = channel.get_state(try_to_connect=True)
    return True


def _text_metadata(metadata: Any) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in (metadata or ()) if isinstance(v, str))


class GrpcAppChannel:
    """The app's ``dapr.proto.runtime.v1.AppCallback/OnInvoke`` at ``address`` (HOST:PORT)."""

    def __init__(
        self,
        app_id: str,
        address: str,
        *,
        max_message_bytes: int,
        tracing: Tracing | None = None,
        app_api_token: str = "",
    ) -> None:
        self._app_id = app_id
        self._address = address
        interceptors = tracing.client_interceptors(address) if tracing is not None else None
        self._channel = grpc.aio.insecure_channel(
            address,
            options=_message_options(max_message_bytes),
            interceptors=sending_token(app_api_token, interceptors),
        )
        self._stub = dapr_appcallback_grpc.AppCallbackStub(self._channel)
        self._max_message_bytes = max_message_bytes
        self.app_api_token = app_api_token  # streaming calls on the channel add it themselves

    @property
    def address(self) -> str:
        """The app's gRPC address (HOST:PORT)."""
        return self._address

    @property
    def channel(self) -> grpc.aio.Channel:
        """The one channel to the app (gRPC proxying calls on it too)."""
        return self._channel

    async def invoke(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        message = common_pb2.InvokeRequest()
        fill_invoke_message(message, request)
        require_sendable(message, self._max_message_bytes)
        metadata = [*grpc_app_metadata(request.headers)]
        if request.caller_app_id:
            metadata.append(("dapr-caller-app-id", request.caller_app_id))
        require_sendable_metadata(metadata)
        loop = asyncio.get_running_loop()
        ends_at = None if timeout is None else loop.time() + timeout
        try:
            answer, headers = await self._call(message, timeout, metadata)
        except grpc.aio.AioRpcError as error:
            remaining = None if ends_at is None else ends_at - loop.time()
            grace = CONNECT_GRACE_SECONDS if remaining is None else min(remaining, CONNECT_GRACE_SECONDS)
            if not _refused(error) or not await until_ready(self._channel, grace):
                raise self._error(error) from None
            try:  # the app came up: the first attempt never reached it
                answer, headers = await self._call(
                    message, None if ends_at is None else ends_at - loop.time(), metadata
                )
            except grpc.aio.AioRpcError as again:
                raise self._error(again) from None
        return InvokeResponse(answer.data.value, answer.content_type, headers, 200, answer.data.type_url)

    async def _call(
        self, message: Any, timeout: float | None, metadata: list[tuple[str, str]]
    ) -> tuple[Any, tuple[tuple[str, str], ...]]:
        call = self._stub.OnInvoke(message, timeout=grpc_timeout(timeout), metadata=metadata)
        answer = await call
        headers = _text_metadata(await call.initial_metadata())
        # the status header is an HTTP app's, set by its channel: a gRPC app's own would make the
        # caller's HTTP answer take it (abc: 500 with a traceback, 99999: no answer at all)
        return answer, tuple((key, value) for key, value in headers if key != HTTP_STATUS_HEADER)

    def _error(self, error: grpc.aio.AioRpcError) -> Exception:
        code = error.code()
        if code is grpc.StatusCode.UNAVAILABLE:
            return AppUnavailable(self._app_id, f"its app at {self._address} does not answer: {error.details()}")
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"app {self._app_id!r}")
        return AppError(self._app_id, f"{code.name}: {error.details()}", status=code.name)

    async def aclose(self) -> None:
        await self._channel.close(None)


class HttpAppChannel:
    """The app's HTTP server at ``base_url`` (``http://127.0.0.1:PORT``)."""

    def __init__(self, app_id: str, base_url: str, *, app_api_token: str = "") -> None:
        self._app_id = app_id
        self._base_url = base_url.rstrip("/")
        self._app_api_token = app_api_token  # sent as the dapr-api-token header when set
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False)
        return self._session

    def url(self, method: str, querystring: str) -> yarl.URL:
        """The app's URL for ``method`` (a path, escapes kept as the caller wrote them; dot segments
        removed, as :func:`~layotto.server.runtime.access_control.operation_path` reads it) and
        ``querystring``, sent as they are. A query in the method comes first; a fragment is dropped."""
        path, _, _fragment = method.lstrip("/").partition("#")
        path, _, own_query = path.partition("?")
        url = yarl.URL(f"{self._base_url}/{path}")
        query = "&".join(part for part in (own_query, querystring.lstrip("?")) if part)
        return yarl.URL.build(
            scheme=url.scheme,
            host=url.raw_host or "",
            port=url.explicit_port,
            path=url.raw_path,
            query_string=quote(query, safe=QUERY_SAFE),
            encoded=True,
        )

    async def invoke(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        verb = "POST" if request.verb == "NONE" else request.verb
        try:
            url = self.url(request.method, request.querystring)
        except ValueError:
            raise InvalidArgument("message.method", f"{request.method!r} does not make a URL path") from None
        headers = CIMultiDict(request.headers)
        if request.content_type:
            headers["Content-Type"] = request.content_type
        if request.caller_app_id:
            headers["dapr-caller-app-id"] = request.caller_app_id
        if self._app_api_token:
            headers[API_TOKEN_HEADER] = self._app_api_token
        traceparent = current_traceparent()  # this call's server span, when tracing is on
        if traceparent:
            headers["traceparent"] = traceparent
        try:
            async with self._client().request(
                verb,
                url,
                data=request.data or None,
                headers=headers,
                skip_auto_headers=CALLERS_OWN_HEADERS,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:  # no body: no Content-Type of aiohttp's own
                body = await response.read()
        except TimeoutError:
            raise DeadlineExceeded(f"app {self._app_id!r}") from None
        except aiohttp.InvalidURL:
            raise InvalidArgument("message.method", f"{request.method!r} does not make a URL path") from None
        except aiohttp.ClientError as error:
            raise AppUnavailable(self._app_id, f"its app at {self._base_url} does not answer: {error}") from None
        except ValueError as error:  # a header aiohttp refuses to send (a newline in a value, ...)
            raise InvalidArgument("metadata", f"not sendable as an HTTP request: {error}") from None
        if not 200 <= response.status < 300 and not request.raw_http_status:
            raise AppError.from_http(self._app_id, response.status, body)
        # a HEAD's Content-Length is the GET's body's: the answer's own, not its connection's
        hop_by_hop = HOP_BY_HOP - {"content-length"} if verb == "HEAD" else HOP_BY_HOP
        kept = [(k.lower(), v) for k, v in response.headers.items() if k.lower() not in hop_by_hop]
        kept.append((HTTP_STATUS_HEADER, str(response.status)))
        content_type = response.headers.get("Content-Type", "") if body else ""  # with its charset, boundary, ...
        return InvokeResponse(body, content_type, tuple(kept), response.status)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _answer_headers(metadata: Any) -> tuple[tuple[str, str], ...]:
    """A callee sidecar's answer headers: its text metadata and the headers it carried
    (:data:`~layotto.server.api.invoke.CARRIED_HEADERS_KEY`)."""
    headers = list(_text_metadata(metadata))
    for key, value in metadata or ():
        if key == CARRIED_HEADERS_KEY and isinstance(value, bytes):
            headers.extend((name, text) for name, text in carried_headers(value) if not name.startswith(":"))
    return tuple(headers)


def _http_status(headers: Sequence[tuple[str, str]]) -> int:
    """The HTTP app's status a callee sidecar reported (its last ``dapr-http-status``); 200 when
    none is, or it is no HTTP status (100-599)."""
    reported = [value for key, value in headers if key == HTTP_STATUS_HEADER]
    status = reported[-1].strip() if reported else ""
    return int(status) if status.isascii() and status.isdigit() and 100 <= int(status) <= 599 else 200


def _error_info(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]] | None:
    """The reason and metadata a runtime sent with ``error``, if it is one of ours."""
    trailers = cast("Sequence[tuple[str, str | bytes]]", error.trailing_metadata() or ())
    for key, value in trailers:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                    return info.reason, dict(info.metadata)
    return None


class GrpcSidecarForwarder:
    """Calls other sidecars' Dapr ``InvokeService``, one cached channel per address."""

    def __init__(self, *, max_message_bytes: int, tracing: Tracing | None = None, api_token: str = "") -> None:
        """``api_token``: the runtime's own, presented to the other sidecars (they share it)."""
        self._options = _message_options(max_message_bytes)
        self._max_message_bytes = max_message_bytes
        self._tracing = tracing
        self._api_token = api_token
        self._stubs: dict[str, tuple[grpc.aio.Channel, Any]] = {}

    def _stub(self, address: str) -> Any:
        """The Dapr stub of the sidecar at ``address`` (grpc.aio calls, typed Any)."""
        known = self._stubs.get(address)
        if known is not None:
            return known[1]
        interceptors = self._tracing.client_interceptors(address) if self._tracing is not None else None
        channel = grpc.aio.insecure_channel(
            address, options=self._options, interceptors=sending_token(self._api_token, interceptors)
        )
        self._stubs[address] = (channel, dapr_pb2_grpc.DaprStub(channel))
        return self._stubs[address][1]

    def channel(self, address: str) -> grpc.aio.Channel:
        """The one channel to the sidecar at ``address`` (gRPC proxying calls on it too). Its unary
        calls carry the runtime's token; a streaming call must add it (:attr:`api_token`)."""
        self._stub(address)
        return self._stubs[address][0]

    @property
    def api_token(self) -> str:
        """The runtime's own token, presented to the other sidecars ("" for none)."""
        return self._api_token

    async def forward(self, address: str, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        message = invoke_pb2.InvokeServiceRequest(id=request.app_id)
        fill_invoke_message(message.message, request)
        require_sendable(message, self._max_message_bytes)
        metadata = [*hop_metadata(request.headers), (HOP_HEADER, "1"), (CALLER_APP_ID_HEADER, request.caller_app_id)]
        if request.raw_http_status:
            metadata.append((RAW_HTTP_STATUS_HEADER, "1"))
        if request.hop_token:
            metadata.append((TOKEN_HEADER, request.hop_token))
        require_sendable_metadata(metadata)
        call = self._stub(address).InvokeService(message, timeout=grpc_timeout(timeout), metadata=metadata)
        try:
            answer = await call
            headers = _answer_headers(await call.initial_metadata())
        except grpc.aio.AioRpcError as error:
            failure = self._error(address, request.app_id, error)
            if isinstance(failure, SidecarUnreachable):  # gone, perhaps for good (a registry's old entry)
                await self._drop(address)
            raise failure from None
        status = _http_status(headers)
        return InvokeResponse(answer.data.value, answer.content_type, headers, status, answer.data.type_url)

    @staticmethod
    def _error(address: str, app_id: str, error: grpc.aio.AioRpcError) -> Exception:
        code, details = error.code(), error.details() or ""
        info = _error_info(error)
        if info is not None:
            return RelayedError(code.name, info[0], details, info[1])
        if _refused(error):
            return SidecarUnreachable(address, details)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return DeadlineExceeded(f"app {app_id!r}")
        return AppUnavailable(app_id, f"its sidecar at {address} failed: {code.name}: {details}")

    async def drop(self, address: str) -> None:
        """Close the channel to ``address`` (a sidecar that refused to connect): the next call opens a new one."""
        await self._drop(address)

    async def _drop(self, address: str) -> None:
        channel, _ = self._stubs.pop(address, (None, None))
        if channel is not None:
            await channel.close(None)

    async def aclose(self) -> None:
        channels = [channel for channel, _ in self._stubs.values()]
        self._stubs.clear()
        await asyncio.gather(*(channel.close(None) for channel in channels))


def build_invoker(
    config: RuntimeConfig,
    resolver: Resolver,
    tracing: Tracing | None,
    *,
    api_token: str = "",
    app_api_token: str = "",
    resiliency: Resiliency | None = None,
) -> Invoker:
    """The invoker of a runtime: its app channel per ``app_protocol`` (presenting ``app_api_token`` to the
    app), and the sidecar hop (presenting ``api_token``, the runtime's own, to the other sidecars)."""
    app_channel: AppChannel | None = None
    if config.app_protocol == "http" and config.app_port:
        app_channel = HttpAppChannel(config.app_id, f"http://127.0.0.1:{config.app_port}", app_api_token=app_api_token)
    elif config.app_protocol == "grpc" and (config.app_callback_address or config.app_port):
        address = config.app_callback_address or f"127.0.0.1:{config.app_port}"
        app_channel = GrpcAppChannel(
            config.app_id,
            address,
            max_message_bytes=config.max_message_bytes,
            tracing=tracing,
            app_api_token=app_api_token,
        )
    forwarder = GrpcSidecarForwarder(max_message_bytes=config.max_message_bytes, tracing=tracing, api_token=api_token)
    return Invoker(
        config.app_id,
        resolver,
        forwarder,
        app_channel,
        access=config.access_control,
        hop_token=config.invoke_token,
        flow=config.flow_control,
        resiliency=resiliency,
    )

"""Service invocation: which app answers a call, and how it is reached.

A call names a target app id and a method. The runtime whose own app id it is calls its app
through the app channel; any other runtime resolves the id to the addresses of the sidecars
serving it (name resolution), picks one round-robin, and forwards the call there as a
*hop*. A runtime never forwards a hop again, so a misrouted call ends at the first sidecar
(APP_NOT_FOUND) instead of looping. Deadlines are the caller's, passed on as the time that
remains; a cancelled call cancels the hop and the app call, since each awaits the next.

No gRPC here: the API layer converts its messages to :class:`InvokeRequest` and back, and
the channels (``AppChannel``, ``SidecarForwarder``) are given by the runtime.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from layotto.server.errors import AccessDenied, AppNotFound, AppUnavailable, InvalidArgument, LayottoError
from layotto.server.runtime.access_control import HTTP_VERBS, AccessControl
from layotto.server.runtime.flow_control import FlowControl
from layotto.server.runtime.resiliency import Policy, Resiliency, Verdict, matches
from layotto.server.runtime.validation import has_control_characters, require_name

#: the HTTP verbs of HTTPExtension.Verb (NONE means POST to an HTTP app, as in Dapr)
VERBS = ("NONE", *HTTP_VERBS)
#: headers that carry the hop's own facts: set by the forwarding sidecar, never passed to an app
CALLER_APP_ID_HEADER = "layotto-caller-app-id"
HOP_HEADER = "layotto-invoke-hop"
#: on a hop: the caller wants an HTTP app's error status as an answer, not an error (Dapr's HTTP API)
RAW_HTTP_STATUS_HEADER = "layotto-raw-http-status"
#: on a hop: the deployment's shared invoke token, proving the hop comes from one of its sidecars
TOKEN_HEADER = "layotto-invoke-token"
#: the response header carrying an HTTP app's status code (as Dapr names it)
HTTP_STATUS_HEADER = "dapr-http-status"


@dataclass(frozen=True)
class InvokeRequest:
    """One call of ``method`` on app ``app_id``; ``data`` is the body (``data_type_url`` the type
    of a protobuf Any, "" for plain bytes); ``headers`` are the caller's metadata, lower-case."""

    app_id: str
    method: str
    data: bytes = b""
    content_type: str = ""
    verb: str = "NONE"
    querystring: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    data_type_url: str = ""
    caller_app_id: str = ""  # set by the forwarding sidecar
    hop: bool = False  # True when another sidecar forwarded this call here
    #: an HTTP app's non-2xx answer is returned as an InvokeResponse with its status (Dapr's
    #: HTTP invoke passes it through) instead of raising AppError (the gRPC APIs)
    raw_http_status: bool = False
    hop_token: str = field(default="", repr=False)  # the token a hop came with (never logged)

    def as_hop(self, caller_app_id: str, hop_token: str) -> InvokeRequest:
        """This call as forwarded to another sidecar by the runtime of ``caller_app_id`` with the
        deployment's ``hop_token`` (``dataclasses.replace`` without its per-call field walk)."""
        return InvokeRequest(
            app_id=self.app_id,
            method=self.method,
            data=self.data,
            content_type=self.content_type,
            verb=self.verb,
            querystring=self.querystring,
            headers=self.headers,
            data_type_url=self.data_type_url,
            caller_app_id=caller_app_id,
            hop=True,
            raw_http_status=self.raw_http_status,
            hop_token=hop_token,
        )

    def validate(self) -> None:
        """Raise InvalidArgument naming the field (Layotto's and Dapr's field names)."""
        if not self.app_id:
            raise InvalidArgument("id", "required: the target app id")
        require_app_id(self.app_id, "id")
        if not self.method:
            raise InvalidArgument("message.method", "required: the method to invoke")
        if has_control_characters(self.method):  # an HTTP app gets it as its request path
            raise InvalidArgument("message.method", "a method holds no control characters")
        if self.verb not in VERBS:
            raise InvalidArgument(
                "message.http_extension.verb", f"unknown verb {self.verb!r} (known: {', '.join(VERBS)})"
            )
        if has_control_characters(self.querystring):
            raise InvalidArgument("message.http_extension.querystring", "a query string holds no control characters")
        if has_control_characters(self.content_type):  # it travels as a header
            raise InvalidArgument("message.content_type", "a content type holds no control characters")


def require_app_id(app_id: str, field: str) -> str:
    """An app id within the name limit and without control characters (no resolver can hold one:
    a DNS name, a registry key or a config entry), else InvalidArgument naming ``field``."""
    require_name(app_id, field)
    if has_control_characters(app_id):
        raise InvalidArgument(field, "an app id holds no control characters")
    return app_id


@dataclass(frozen=True)
class InvokeResponse:
    """The app's answer; ``status`` is an HTTP app's status code (200 for a gRPC app)."""

    data: bytes = b""
    content_type: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    status: int = 200
    data_type_url: str = ""


@dataclass(frozen=True)
class ProxyRoute:
    """Where a proxied gRPC call of ``app_id`` goes: this runtime's own app when ``addresses`` is
    empty, else one of the sidecars at ``addresses`` (HOST:PORT), in the order to try them.
    ``caller_app_id`` is the app that made the call, as the callee app is told."""

    app_id: str
    caller_app_id: str
    addresses: tuple[str, ...] = ()
    policy: Policy | None = None  # the target's resiliency policy (the calling side only, as in Dapr)

    @property
    def local(self) -> bool:
        """Whether the call goes to this runtime's own app."""
        return not self.addresses


class AppChannel(Protocol):
    """The way to this runtime's own app (gRPC AppCallback OnInvoke, or HTTP)."""

    async def invoke(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        """The app's answer; raises AppUnavailable, AppError or DeadlineExceeded."""
        ...

    async def aclose(self) -> None: ...


class SidecarForwarder(Protocol):
    """The way to another runtime: one hop to the sidecar at ``address``."""

    async def forward(self, address: str, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        """The callee sidecar's answer. Raises ``SidecarUnreachable`` when no connection was
        made (the call surely did not start), else the error the callee reported."""
        ...

    async def aclose(self) -> None: ...


class SidecarUnreachable(Exception):
    """No connection to the sidecar at ``address``: the call did not start there."""

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(f"sidecar at {address} unreachable: {detail}")
        self.address = address
        self.detail = detail


class Resolver(Protocol):
    async def resolve(self, app_id: str) -> Sequence[str]:
        """The sidecar addresses (HOST:PORT) serving ``app_id``, possibly none; raises
        BackendUnavailable when the resolver's backend (a DNS server) cannot answer."""
        ...


class LocalFunctions(Protocol):
    """Functions this runtime serves itself (WebAssembly): app id = function id."""

    def serves(self, app_id: str) -> bool: ...

    async def invoke(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse: ...


class InvocationObserver(Protocol):
    """Measures each invocation (``layotto.server.metrics_ops.InvocationMetrics``)."""

    async def measure(
        self, request: InvokeRequest, call: Callable[[], Awaitable[InvokeResponse]]
    ) -> InvokeResponse: ...


class Invoker:
    """Routes invocations: to a local function, to the own app, or one hop to a sidecar of the target app."""

    def __init__(
        self,
        app_id: str,
        resolver: Resolver,
        forwarder: SidecarForwarder,
        app_channel: AppChannel | None,
        *,
        access: AccessControl | None = None,
        hop_token: str = "",
        flow: FlowControl | None = None,
        resiliency: Resiliency | None = None,
    ) -> None:
        """``access``: the policies hops to the own app are held to (None: every caller may call).
        ``hop_token``: the deployment's shared secret; sent on every hop, and when set, a hop
        without it is refused (its caller id cannot be trusted). ``flow``: the rate limits of
        invoked app ids, taken by the calls this runtime's clients make (not by hops).
        ``resiliency``: the timeout, retry and circuit breaker policies of target apps, applied
        to the calls this runtime's clients make (the calling side, as in Dapr; not to hops)."""
        self.app_id = app_id
        self._access = access
        self._hop_token = hop_token
        self._flow = flow
        self._resiliency = resiliency
        self._resolver = resolver
        self._forwarder = forwarder
        self._app_channel = app_channel
        self._turn = itertools.count()
        self.functions: LocalFunctions | None = None  # set by the runtime when it serves functions
        self.metrics: InvocationObserver | None = None  # set by the runtime when metrics are on

    @property
    def forwarder(self) -> SidecarForwarder:
        """The way to the other sidecars."""
        return self._forwarder

    @property
    def app_channel(self) -> AppChannel | None:
        """The way to this runtime's own app (None: it has none)."""
        return self._app_channel

    async def invoke(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        """Answer ``request`` within ``timeout`` seconds (None: no deadline of ours).

        Raises InvalidArgument, AccessDenied, RateLimited, AppNotFound, AppUnavailable, AppError,
        DeadlineExceeded, CircuitOpen (the target's breaker is open), BackendUnavailable (name
        resolution's DNS server), or an error relayed from the callee sidecar."""
        request.validate()
        if self.metrics is not None:
            return await self.metrics.measure(request, lambda: self._admitted(request, timeout))
        return await self._admitted(request, timeout)

    async def _admitted(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        """A valid request's answer: the hop checked, or the flow limit taken; under the target's policy."""
        if request.hop:
            self._check_hop(request)
        elif self._flow is not None:
            self._flow.admit_app(request.app_id)
        policy = None if request.hop or self._resiliency is None else self._resiliency.app(request.app_id)
        if policy is not None:
            return await self._under_policy(policy, request, timeout)
        return await self._route(request, timeout)

    async def _under_policy(self, policy: Policy, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        """The call under the target's policy: every attempt re-sends the request, all within
        ``timeout``. Retried, as Dapr does: failures to reach the app, and the app's error
        answers (an HTTP status outside 200-399, a gRPC error) unless the retry's ``matching``
        leaves their code out."""
        retry = policy.spec.retry

        def judge_error(error: Exception) -> Verdict:
            code = app_answer_code(error)
            if code is not None and not matches(retry, code[0], http=code[1]):
                return Verdict.FINAL
            return Verdict.RETRY

        def judge_answer(answer: InvokeResponse) -> Verdict:
            if not request.raw_http_status or 200 <= answer.status <= 399:
                return Verdict.SUCCESS
            return Verdict.RETRY if matches(retry, answer.status, http=True) else Verdict.FINAL

        return await policy.run(
            lambda seconds: self._route(request, seconds),
            judge_error=judge_error,
            judge_answer=judge_answer,
            timeout=timeout,
        )

    async def _route(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        if self.functions is not None and self.functions.serves(request.app_id):
            return await self.functions.invoke(request, timeout)
        if request.app_id == self.app_id:
            return await self._call_own_app(request, timeout)
        if request.hop:
            raise AppNotFound(request.app_id, f"forwarded to the sidecar of app {self.app_id!r} by mistake")
        return await self._forward(request, timeout)

    async def route_proxied(
        self, app_id: str, method: str, *, hop: bool, caller_app_id: str = "", hop_token: str = ""
    ) -> ProxyRoute:
        """Where a proxied gRPC call (Dapr's gRPC proxying) of ``method`` (``/package.Service/Method``)
        on app ``app_id`` goes; ``hop``: another sidecar forwarded it here, for ``caller_app_id``,
        with ``hop_token``. The same policies as :meth:`invoke`: a hop is held to the token and to
        the access control (verb NONE, the method path as operation); a client's call to the rate
        limit of ``app_id``; a hop is never forwarded again.

        Raises InvalidArgument (field ``dapr-app-id``), AccessDenied, RateLimited, AppNotFound,
        BackendUnavailable (name resolution's DNS server)."""
        if not app_id:
            raise InvalidArgument("dapr-app-id", "required: the target app id")
        require_app_id(app_id, "dapr-app-id")
        if hop:
            self._check_hop(InvokeRequest(app_id, method, caller_app_id=caller_app_id, hop=True, hop_token=hop_token))
        elif self._flow is not None:
            self._flow.admit_app(app_id)
        policy = None if hop or self._resiliency is None else self._resiliency.app(app_id)
        if app_id == self.app_id:
            return ProxyRoute(app_id, caller_app_id if hop else self.app_id, policy=policy)
        if hop:
            raise AppNotFound(app_id, f"forwarded to the sidecar of app {self.app_id!r} by mistake")
        addresses = list(await self._resolver.resolve(app_id))
        if not addresses:
            raise AppNotFound(app_id)
        start = next(self._turn) % len(addresses)
        return ProxyRoute(app_id, self.app_id, tuple(addresses[start:] + addresses[:start]), policy)

    def _check_hop(self, request: InvokeRequest) -> None:
        """Raise AccessDenied for a hop without the deployment's token, or one the policies refuse."""
        operation = f"{request.verb} /{request.method.lstrip('/')}"
        if self._hop_token and not hmac.compare_digest(request.hop_token.encode(), self._hop_token.encode()):
            raise AccessDenied(
                request.caller_app_id, operation, "the hop does not carry this deployment's invoke token"
            )
        refused = self._access is not None and not self._access.allows(
            request.caller_app_id, request.method, request.verb
        )
        if refused and request.app_id == self.app_id:
            raise AccessDenied(request.caller_app_id, operation, "refused by the app's access control")

    async def _call_own_app(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        if self._app_channel is None:
            raise AppUnavailable(
                request.app_id, "its runtime has no app channel (set app_callback_address or app_port)"
            )
        return await self._app_channel.invoke(request, timeout)

    async def _forward(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        addresses = await self._resolver.resolve(request.app_id)
        if not addresses:
            raise AppNotFound(request.app_id)
        hop = request.as_hop(self.app_id, self._hop_token)
        if len(addresses) == 1:  # the common case: one sidecar, no turn to take
            try:
                return await self._forwarder.forward(addresses[0], hop, timeout)
            except SidecarUnreachable as error:
                raise AppUnavailable(request.app_id, str(error)) from None
        addresses = list(addresses)
        start = next(self._turn) % len(addresses)
        loop = asyncio.get_running_loop()
        ends_at = None if timeout is None else loop.time() + timeout
        failures = []
        for address in addresses[start:] + addresses[:start]:  # the next one only if a sidecar refused to connect
            remaining = None if ends_at is None else max(0.0, ends_at - loop.time())
            try:
                return await self._forwarder.forward(address, hop, remaining)
            except SidecarUnreachable as error:
                failures.append(str(error))
        raise AppUnavailable(request.app_id, "; ".join(failures))

    async def aclose(self) -> None:
        await self._forwarder.aclose()
        if self._app_channel is not None:
            await self._app_channel.aclose()


#: gRPC status code numbers by name (Dapr's ``matching.gRPCStatusCodes`` are numbers)
GRPC_CODE_NUMBERS = {
    name: number
    for number, name in enumerate(
        [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ]
    )
}


def app_answer_code(error: Exception) -> tuple[int, bool] | None:
    """(status code, is it HTTP) of an app's error answer (AppError, here or relayed from the
    callee sidecar); None for any other failure."""
    if not isinstance(error, LayottoError) or error.reason != "APP_ERROR":
        return None
    http_status = error.metadata.get("http_status", "")
    if http_status.isdigit():
        return int(http_status), True
    return GRPC_CODE_NUMBERS.get(str(getattr(error, "status", "UNKNOWN")), 2), False

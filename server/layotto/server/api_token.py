"""Dapr's API token: the runtime serves only callers that present it, and presents the app's to the app.

* ``DAPR_API_TOKEN`` (else the config key ``api_token``): every gRPC call, unary or streaming, of
  every served service must carry it as ``dapr-api-token`` metadata, and every HTTP call as the
  ``dapr-api-token`` header; otherwise UNAUTHENTICATED (reason ``UNAUTHENTICATED``) / 401. Health
  checks are exempt, as Dapr's are: gRPC ``grpc.health.v1.Health``, ``/actuator/health/*`` and
  ``/v1.0/healthz*``, and so is ``/metrics`` (Dapr serves it on a port without a token). Tokens
  are compared in constant time (:func:`hmac.compare_digest`).
* ``APP_API_TOKEN``: sent to the app as ``dapr-api-token`` metadata or header on every callback
  (pub/sub deliveries, input bindings, invocations).

Unset or empty variables switch the check (or the sending) off.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from aiohttp import web

from layotto.server.errors import Unauthenticated
from layotto.server.shutdown_gate import refusing_handler

TOKEN_HEADER = "dapr-api-token"
"""The metadata key (gRPC) and header (HTTP) a token travels in."""
API_TOKEN_ENV = "DAPR_API_TOKEN"
APP_API_TOKEN_ENV = "APP_API_TOKEN"

#: gRPC methods served without a token (prefixes)
EXEMPT_METHODS = ("/grpc.health.v1.Health/",)
#: HTTP paths served without a token (prefixes)
EXEMPT_PATHS = ("/actuator/health/", "/v1.0/healthz", "/metrics")


def runtime_token(configured: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """The token callers must present: ``DAPR_API_TOKEN`` when set, else ``configured``; "" for none."""
    return environ.get(API_TOKEN_ENV) or configured or ""


def app_token(environ: Mapping[str, str] = os.environ) -> str:
    """The token the runtime presents to the app (``APP_API_TOKEN``); "" for none."""
    return environ.get(APP_API_TOKEN_ENV, "")


def app_token_metadata(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying ``token`` to the app; empty when there is none."""
    return ((TOKEN_HEADER, token),) if token else ()


def token_matches(expected: str, presented: str | bytes | None) -> bool:
    """Whether ``presented`` is ``expected``, compared in constant time (None or "" never is)."""
    if not presented:
        return False
    given = presented.encode() if isinstance(presented, str) else presented
    return hmac.compare_digest(expected.encode(), given)


def _presented(metadata: Any) -> str | bytes | None:
    for key, value in metadata or ():
        if key == TOKEN_HEADER:
            return value  # type: ignore[no-any-return]
    return None


class ApiTokenGuard(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Answers UNAUTHENTICATED to every call (but health checks) without the token (see the module)."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("ApiTokenGuard: the token is empty")
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:  # a handler, or None for an unknown method
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(EXEMPT_METHODS):
            return handler
        presented = _presented(handler_call_details.invocation_metadata)
        if token_matches(self._token, presented):
            return handler
        detail = "wrong dapr-api-token metadata" if presented else "missing dapr-api-token metadata"
        return refusing_handler(handler, Unauthenticated(method.lstrip("/"), detail))


def http_refusal(token: str, request: web.BaseRequest) -> Unauthenticated | None:
    """Why ``request`` is refused for lack of ``token`` (its ``dapr-api-token`` header); None when it
    may go on: the token matches, the path is a health check, or no token is required."""
    if not token or request.path.startswith(EXEMPT_PATHS):
        return None
    presented = request.headers.get(TOKEN_HEADER)
    if token_matches(token, presented):
        return None
    detail = "wrong dapr-api-token header" if presented else "missing dapr-api-token header"
    return Unauthenticated(f"{request.method} {request.path}", detail)


class TokenSender(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Adds ``dapr-api-token: token`` to every unary call of a channel (the app callbacks are unary)."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        details = client_call_details
        metadata = [*(details.metadata or ()), (TOKEN_HEADER, self._token)]
        with_token = grpc.aio.ClientCallDetails(
            details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
        )
        return await continuation(with_token, request)


def sending_token(token: str, interceptors: Sequence[grpc.aio.ClientInterceptor] | None) -> list[Any] | None:
    """``interceptors`` plus a :class:`TokenSender` of ``token`` (first, so tracing sees it); the same
    list when ``token`` is empty (None stays None)."""
    if not token:
        return None if interceptors is None else list(interceptors)
    return [TokenSender(token), *(interceptors or ())]

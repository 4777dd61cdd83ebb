"""``InvokeService`` of both APIs: Layotto's ``Runtime/InvokeService`` (InvokeServiceRequest with a
CommonInvokeRequest) and Dapr's ``Dapr/InvokeService`` (InvokeServiceRequest with an InvokeRequest).

The two requests have the same shape (id; message: method, data Any, content_type,
http_extension verb + querystring), so one handler serves both: it turns the message and the
call's metadata into a runtime :class:`InvokeRequest`, lets the :class:`Invoker` answer within
the call's remaining deadline, sends the app's headers back as the response's initial metadata
(``dapr-http-status`` among them for an HTTP app) and answers with ``data`` as an Any.

Dapr's ``InvokeService`` is also the hop between sidecars: a call carrying the hop header
(``layotto-invoke-hop``) came from another sidecar and is never forwarded again. Headers gRPC's text
metadata cannot carry as they are (non-ASCII or tab-holding values, names ending ``-bin``, names
gRPC reserves) cross the hop, both ways, JSON-encoded in one ``layotto-headers-bin`` entry
(:func:`hop_metadata`, :func:`carried_headers`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import grpc

from layotto.server.errors import InvalidArgument
from layotto.server.runtime.invocation import (
    CALLER_APP_ID_HEADER,
    HOP_HEADER,
    RAW_HTTP_STATUS_HEADER,
    TOKEN_HEADER,
    VERBS,
    Invoker,
    InvokeRequest,
)

#: metadata gRPC or HTTP sets for itself: never passed to the app as a header. HTTP/1's
#: connection-specific headers (RFC 9110 7.6.1) among them: an HTTP caller's ``Transfer-Encoding:
#: chunked`` sent on beside the body's Content-Length made the app's server refuse the request, and
#: on a hop HTTP/2 refuses them (the callee sidecar reset the stream)
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "te",
        "host",
        "content-length",
        "connection",
        "accept-encoding",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "trailer",
        "upgrade",
        "expect",
    }
)
#: set by the runtimes themselves: a caller's own values are dropped
#: (the caller's dapr-api-token too: the app gets APP_API_TOKEN, never the runtime's token)
HOP_HEADERS = frozenset(
    {HOP_HEADER, CALLER_APP_ID_HEADER, RAW_HTTP_STATUS_HEADER, TOKEN_HEADER, "dapr-caller-app-id", "dapr-api-token"}
)
TRACE_HEADERS = frozenset({"traceparent", "tracestate", "sw8", "sw8-correlation", "sw8-x"})


def _grpc_own(key: str, passed: frozenset[str] = frozenset()) -> bool:
    """Whether ``key`` (lower-case) is a pseudo-header, gRPC's own or reserved (unless in ``passed``)."""
    return key.startswith((":", "grpc-")) or (key in RESERVED_HEADERS and key not in passed)


def app_headers(
    metadata: Iterable[tuple[str, str | bytes]], *, strip_trace: bool = False, passed: frozenset[str] = frozenset()
) -> tuple[tuple[str, str], ...]:
    """The caller's metadata worth passing to the app: text keys, not gRPC's own (but those named in
    ``passed``), not the hop's."""
    out = []
    for name, value in metadata:
        key = name.lower()
        if isinstance(value, bytes) or _grpc_own(key, passed):
            continue
        if key in HOP_HEADERS or (strip_trace and key in TRACE_HEADERS):
            continue
        out.append((key, value))
    return tuple(out)


def _text_metadata_key(key: str) -> bool:
    """Whether ``key`` (lower-case) is a gRPC text metadata key: ASCII letters, digits, ``-_.``, no ``-bin``."""
    return bool(key) and all(c.isascii() and (c.isalnum() or c in "-_.") for c in key) and not key.endswith("-bin")


def _text_metadata_value(value: str) -> bool:
    """Whether ``value`` is a gRPC text metadata value: printable ASCII (no tab, no UTF-8)."""
    return value.isascii() and value.isprintable()


def grpc_headers(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Headers that are valid gRPC metadata: lower-case, printable, not gRPC's own."""
    out = []
    for name, value in headers:
        key = name.lower()
        if not _grpc_own(key) and _text_metadata_key(key) and _text_metadata_value(value):
            out.append((key, value))
    return tuple(out)


def grpc_app_metadata(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """:func:`grpc_headers` for a gRPC app: a header text metadata cannot carry (a non-ASCII or
    tab-holding value, a name ending ``-bin``, ...) is refused, not dropped (as daprd's grpc-go
    refuses it). gRPC's own and the reserved headers are dropped as ever.

    Raises InvalidArgument (field ``metadata``) naming the header."""
    out = []
    for name, value in headers:
        key = name.lower()
        if _grpc_own(key):
            continue
        if not _text_metadata_key(key):
            raise InvalidArgument(
                "metadata", f"header {key!r}: a gRPC app's metadata names are of a-z 0-9 -_. (not -bin)"
            )
        if not _text_metadata_value(value):
            raise InvalidArgument("metadata", f"header {key!r}: a gRPC app's metadata values are printable ASCII")
        out.append((key, value))
    return tuple(out)


#: the hop's one binary metadata entry for the headers text metadata cannot carry as they are: a
#: JSON list of ``[name, value]`` (ASCII-escaped, so bytes an HTTP server decoded with
#: surrogateescape come back as they were)
CARRIED_HEADERS_KEY = "layotto-headers-bin"
#: headers gRPC reserves that still go from an HTTP caller to an HTTP app (Dapr passes them on)
PASSED_RESERVED_HEADERS = frozenset({"accept-encoding"})


def hop_metadata(headers: Iterable[tuple[str, str]]) -> tuple[tuple[str, str | bytes], ...]:
    """``headers`` as a hop's metadata, none lost: those valid as text metadata as they are, and the
    rest (but gRPC's own) in one :data:`CARRIED_HEADERS_KEY` entry, which :func:`carried_headers`
    reads back. A header is never dropped silently: gRPC text metadata is printable ASCII only."""
    out: list[tuple[str, str | bytes]] = []
    carried = []
    for name, value in headers:
        key = name.lower()
        if key.startswith((":", "grpc-")):
            continue
        if key not in RESERVED_HEADERS and _text_metadata_key(key) and _text_metadata_value(value):
            out.append((key, value))
        else:
            carried.append([key, value])
    if carried:
        out.append((CARRIED_HEADERS_KEY, json.dumps(carried).encode()))
    return tuple(out)


def carried_headers(value: bytes) -> list[tuple[str, str]]:
    """The headers a :data:`CARRIED_HEADERS_KEY` entry carries (as :func:`hop_metadata` wrote them).

    Raises InvalidArgument (field ``metadata``) when it is not a JSON list of [name, value] strings."""
    try:
        pairs = json.loads(value)
    except ValueError:
        pairs = None
    if not isinstance(pairs, list) or not all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(part, str) for part in pair) for pair in pairs
    ):
        raise InvalidArgument("metadata", f"{CARRIED_HEADERS_KEY} is not a JSON list of [name, value] strings")
    return [(name.lower(), text) for name, text in pairs]


def verb_name(number: int) -> str:
    """The name of an HTTPExtension.Verb number; an unknown number gives "VERB_<n>" (refused later)."""
    return VERBS[number] if 0 <= number < len(VERBS) else f"VERB_{number}"


def to_invoke_request(message: Any, metadata: Iterable[tuple[str, str | bytes]], *, strip_trace: bool) -> InvokeRequest:
    """An InvokeServiceRequest of either API, and the call's metadata, as a runtime request.

    One pass over the metadata: the hop's own headers are read, the rest filtered as
    :func:`app_headers` does."""
    headers = []
    hop_facts: dict[str, str] = {}
    for name, value in metadata:
        key = name.lower()
        if isinstance(value, bytes):
            if key == CARRIED_HEADERS_KEY:
                headers.extend(_carried_request_headers(value, strip_trace=strip_trace))
            continue
        if key in HOP_HEADERS:
            hop_facts[key] = value
        elif not (_grpc_own(key) or (strip_trace and key in TRACE_HEADERS)):
            headers.append((key, value))
    body = message.message
    hop = HOP_HEADER in hop_facts
    return InvokeRequest(
        app_id=message.id,
        method=body.method,
        data=body.data.value,
        data_type_url=body.data.type_url,
        content_type=body.content_type,
        verb=verb_name(body.http_extension.verb),
        querystring=body.http_extension.querystring,
        headers=tuple(headers),
        caller_app_id=hop_facts.get(CALLER_APP_ID_HEADER, "") if hop else "",
        hop=hop,
        raw_http_status=hop and RAW_HTTP_STATUS_HEADER in hop_facts,
        hop_token=hop_facts.get(TOKEN_HEADER, ""),
    )


def _carried_request_headers(value: bytes, *, strip_trace: bool) -> list[tuple[str, str]]:
    """The carried headers of a request worth passing to the app (as :func:`app_headers` filters)."""
    return [
        (key, text)
        for key, text in carried_headers(value)
        if not (_grpc_own(key, PASSED_RESERVED_HEADERS) or key in HOP_HEADERS or (strip_trace and key in TRACE_HEADERS))
    ]


def fill_invoke_message(target: Any, request: InvokeRequest) -> None:
    """Write ``request`` into an InvokeRequest / CommonInvokeRequest message of either API."""
    target.method = request.method
    target.data.type_url, target.data.value = request.data_type_url, request.data  # Dapr's Any is another pool's
    target.content_type = request.content_type
    if request.verb != "NONE" or request.querystring:
        target.http_extension.verb = VERBS.index(request.verb)
        target.http_extension.querystring = request.querystring


#: a remaining time beyond this is no deadline (pygrpc-native answers ~9.2e18 s for none, grpc.aio None)
NO_DEADLINE_BEYOND_SECONDS = 10**9


def time_remaining(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    """The seconds left of the call's deadline, None when it has none (on either transport)."""
    remaining = context.time_remaining()
    return None if remaining is None or remaining > NO_DEADLINE_BEYOND_SECONDS else float(remaining)


class InvokeApi:
    """``InvokeService`` of one API; ``response_cls`` is its InvokeResponse message."""

    def __init__(self, invoker: Invoker, response_cls: Any, *, strip_trace: bool = False) -> None:
        self._invoker = invoker
        self._response_cls = response_cls
        self._strip_trace = strip_trace

    async def InvokeService(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        invoke = to_invoke_request(request, context.invocation_metadata() or (), strip_trace=self._strip_trace)
        answer = await self._invoker.invoke(invoke, time_remaining(context))
        headers = hop_metadata(answer.headers) if invoke.hop else grpc_headers(answer.headers)
        if headers:  # none to send: the response carries the (empty) initial metadata itself
            await context.send_initial_metadata(headers)
        response = self._response_cls(content_type=answer.content_type)
        response.data.type_url, response.data.value = answer.data_type_url, answer.data
        return response

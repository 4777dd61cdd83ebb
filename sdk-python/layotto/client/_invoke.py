"""Service invocation: ``client.invoke`` (the caller) and the types an app's methods see.

::

    reply = await client.invoke("checkout", "orders", {"id": 7}, verb="POST", timeout=2)
    reply.status, reply.json()

The runtime finds a sidecar of app ``checkout`` (name resolution), which calls its app's
``orders`` method (gRPC ``OnInvoke``, or HTTP ``POST /orders``). Errors:
:class:`AppNotFound` (no such app id), :class:`AppUnavailable` (the app or its sidecars do
not answer), :class:`AppError` (the app answered with an error), :class:`DeadlineExceeded`,
:class:`InvalidArgument` (empty app id or method, unknown verb).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from google.protobuf import any_pb2

from layotto.client._pubsub import content_type_for
from layotto.client._transport import Transport
from layotto.client._values import Value, encode, invalid, string_map
from layotto.proto.runtime.v1 import runtime_pb2 as pb

__all__ = ["Invocation", "InvokeResponse", "VERBS"]

#: the verbs of the wire's HTTPExtension.Verb ("NONE": the app's default, POST for an HTTP app)
VERBS = ("NONE", "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
HTTP_STATUS_HEADER = "dapr-http-status"
#: the characters of a gRPC metadata key (lower-cased first)
_HEADER_KEY = re.compile(r"[0-9a-z_.\-]+")


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class InvokeResponse:
    """What the invoked app answered: body, its content type, the response headers (lower-case
    names) and its status (an HTTP app's status code; 200 from a gRPC app). An app's method may
    also return one to set its content type and headers."""

    data: bytes = b""
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=_frozen)
    status: int = 200

    def text(self) -> str:
        return self.data.decode()

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass(frozen=True)
class Invocation:
    """A call an app's method answers: the method name, the body and its content type, the
    verb and querystring the caller gave, the caller's headers and app id (when a sidecar
    forwarded it)."""

    method: str
    data: bytes
    content_type: str = ""
    verb: str = "NONE"
    querystring: str = ""
    headers: Mapping[str, str] = field(default_factory=_frozen)
    caller_app_id: str = ""

    def text(self) -> str:
        return self.data.decode()

    def json(self) -> Any:
        return json.loads(self.data)


def invoke_request(
    app_id: str, method: str, data: Value, verb: str, content_type: str | None
) -> pb.InvokeServiceRequest:
    """The wire request; raises InvalidArgument (``field`` "verb") for a verb the wire does not have."""
    verb = verb.upper()
    if verb not in VERBS:
        raise invalid("verb", f"expected one of {', '.join(VERBS)}, got {verb!r}")
    message = pb.CommonInvokeRequest(
        method=method,
        data=any_pb2.Any(value=encode(data) if data is not None else b""),
        content_type=content_type or (content_type_for(data) if data is not None else ""),
    )
    if verb != "NONE":
        message.http_extension.verb = VERBS.index(verb)  # type: ignore[assignment]
    return pb.InvokeServiceRequest(id=app_id, message=message)


def header_metadata(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``headers`` as gRPC metadata, keys lower-cased; InvalidArgument (``field`` "headers") for one
    gRPC cannot carry: a key of other characters than ``0-9 a-z _ . -`` (a space, ``:``, non-ASCII),
    gRPC's own (``grpc-*``), a binary one (``-bin``), or a value that is not printable ASCII."""
    metadata = tuple((k.lower(), v) for k, v in string_map(headers, "headers").items())
    for key, value in metadata:
        if not _HEADER_KEY.fullmatch(key) or key.startswith("grpc-") or key.endswith("-bin"):
            raise invalid("headers", f"{key!r} is not a header name gRPC carries (0-9 a-z _ . -, not grpc-* or *-bin)")
        if not (value.isascii() and value.isprintable()):
            raise invalid("headers", f"{key!r}: {value!r} is not a header value gRPC carries (printable ASCII)")
    return metadata


async def invoke(
    transport: Transport,
    app_id: str,
    method: str,
    data: Value,
    *,
    verb: str,
    querystring: str,
    content_type: str | None,
    headers: Mapping[str, str] | None,
    timeout: float | None,
) -> InvokeResponse:
    request = invoke_request(app_id, method, data, verb, content_type)
    if querystring:
        request.message.http_extension.querystring = querystring.lstrip("?")
    metadata = header_metadata(headers)
    response, answered = await transport.unary_with_headers("InvokeService", request, timeout, metadata)
    found = dict(answered)
    status = found.get(HTTP_STATUS_HEADER, "200")
    return InvokeResponse(
        data=bytes(response.data.value),
        content_type=response.content_type,
        headers=_frozen(found),
        status=int(status) if status.isdigit() else 200,
    )

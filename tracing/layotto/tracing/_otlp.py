"""OTLP/gRPC export of finished spans, encoded straight to protobuf wire bytes.

Building ``opentelemetry.proto`` message objects field by field costs more per span than
the span itself. A sidecar's spans repeat the same names and attribute pairs (method,
service, db.system, peer) on every request, so each name and each key/value pair is
encoded once and its bytes reused; a span is then a handful of byte strings joined.
The request goes out as those bytes (``TraceService/Export``), so no message object is
ever built. Wire format: opentelemetry/proto/trace/v1/trace.proto.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from layotto.tracing._batch import ExportError

log = logging.getLogger(__name__)

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_CACHE_LIMIT = 4096
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200


def varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 as protobuf encodes negatives: two's complement, 10 bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field_bytes(number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def any_value(value: Any) -> bytes:  # noqa: PLR0911  # one return per value type
    """An ``AnyValue`` message body."""
    if isinstance(value, str):
        return field_bytes(1, value.encode())
    if isinstance(value, bool):
        return b"\x10" + (b"\x01" if value else b"\x00")
    if isinstance(value, int):
        return b"\x18" + varint(value)
    if isinstance(value, float):
        return b"\x21" + _pack_double(value)
    if isinstance(value, bytes):
        return field_bytes(7, value)
    if isinstance(value, Sequence):
        return field_bytes(5, b"".join(field_bytes(1, any_value(v)) for v in value))
    return field_bytes(1, str(value).encode())


class _Cache:
    """Encoded bytes of recurring strings and attributes, bounded (cleared when full)."""

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, type, Any], bytes] = {}
        self.names: dict[str, bytes] = {}

    def attribute(self, key: str, value: Any) -> bytes:
        """One ``attributes`` entry (a KeyValue field)."""
        try:
            cache_key = (key, type(value), value)
            encoded = self.pairs.get(cache_key)
        except TypeError:  # an unhashable value (a list): encode it every time
            return field_bytes(9, field_bytes(1, key.encode()) + field_bytes(2, any_value(value)))
        if encoded is None:
            if len(self.pairs) >= _CACHE_LIMIT:
                self.pairs.clear()
            encoded = self.pairs[cache_key] = field_bytes(
                9, field_bytes(1, key.encode()) + field_bytes(2, any_value(value))
            )
        return encoded

    def name(self, name: str) -> bytes:
        encoded = self.names.get(name)
        if encoded is None:
            if len(self.names) >= _CACHE_LIMIT:
                self.names.clear()
            encoded = self.names[name] = field_bytes(5, name.encode())
        return encoded


def _attributes(attributes: Mapping[str, Any] | None, number: int) -> bytes:
    """Attributes as repeated KeyValue field ``number`` (not cached: events and links)."""
    if not attributes:
        return b""
    return b"".join(
        field_bytes(number, field_bytes(1, k.encode()) + field_bytes(2, any_value(v))) for k, v in attributes.items()
    )


def _status(status: Any) -> bytes:
    code = status.status_code.value
    if not code:
        return b""
    body = (field_bytes(2, status.description.encode()) if status.description else b"") + b"\x18" + varint(code)
    return field_bytes(15, body)


def _event(event: Any) -> bytes:
    body = b"\x09" + _pack_fixed64(event.timestamp) + field_bytes(2, event.name.encode())
    return field_bytes(11, body + _attributes(event.attributes, 3))


def _link(link: Any) -> bytes:
    context = link.context
    body = field_bytes(1, context.trace_id.to_bytes(16, "big")) + field_bytes(2, context.span_id.to_bytes(8, "big"))
    if context.trace_state:
        body += field_bytes(3, context.trace_state.to_header().encode())
    body += _attributes(link.attributes, 4)
    return field_bytes(13, body)


class SpanEncoder:
    """Encodes batches of finished spans into ``ExportTraceServiceRequest`` bytes."""

    def __init__(self, resource: Mapping[str, Any], scope: str = "layotto") -> None:
        self._cache = _Cache()
        self._statics: dict[tuple[Any, ...], bytes] = {}
        resource_body = b"".join(
            field_bytes(1, field_bytes(1, k.encode()) + field_bytes(2, any_value(v))) for k, v in resource.items()
        )
        self._resource = field_bytes(1, resource_body)
        self._scope = field_bytes(1, field_bytes(1, scope.encode()))

    def _static(self, span: Any) -> bytes:
        """Name, kind and attributes: the same on most spans of one endpoint, encoded once."""
        attributes = span.attributes
        try:
            # value types too: 1, 1.0 and True are equal keys but encode differently
            key = (span.name, span.kind, *attributes.items(), *map(type, attributes.values()))
            encoded = self._statics.get(key)
        except TypeError:  # an unhashable attribute value (a list)
            key, encoded = None, None
        if encoded is None:
            attribute = self._cache.attribute
            encoded = b"".join(
                [self._cache.name(span.name), b"\x30", _KINDS[span.kind.value]]
                + [attribute(k, v) for k, v in attributes.items()]
            )
            if key is not None:
                if len(self._statics) >= _CACHE_LIMIT:
                    self._statics.clear()
                self._statics[key] = encoded
        return encoded

    def span(self, span: Any) -> bytes:
        context = span.context
        parent = span.parent
        flags = _HAS_IS_REMOTE | int(context.trace_flags)
        parts = [b"\x0a\x10", context.trace_id.to_bytes(16, "big"), b"\x12\x08", context.span_id.to_bytes(8, "big")]
        if context.trace_state:
            parts.append(field_bytes(3, context.trace_state.to_header().encode()))
        if parent is not None:
            parts += (b"\x22\x08", parent.span_id.to_bytes(8, "big"))
            if parent.is_remote:
                flags |= _IS_REMOTE
        parts += (
            self._static(span),
            b"\x39",
            _pack_fixed64(span.start_time),
            b"\x41",
            _pack_fixed64(span.end_time),
        )
        if span.events:
            parts += [_event(e) for e in span.events]
        if span.links:
            parts += [_link(li) for li in span.links]
        parts += (_status(span.status), b"\x85\x01", _pack_fixed32(flags))
        body = b"".join(parts)
        return b"\x12" + varint(len(body)) + body  # ScopeSpans.spans (2)

    def request(self, spans: Sequence[Any]) -> bytes:
        scope_spans = self._scope + b"".join([self.span(s) for s in spans])
        resource_spans = self._resource + field_bytes(2, scope_spans)
        return field_bytes(1, resource_spans)


_KINDS = {kind: varint(kind + 1) for kind in range(5)}  # API SpanKind value -> OTLP's (UNSPECIFIED is 0)


class OtlpExporter:
    """Sends batches of spans to an OTLP/gRPC collector (``http://`` plaintext, ``https://`` TLS)."""

    def __init__(
        self,
        endpoint: str,
        resource: Mapping[str, Any],
        *,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        scheme, _, target = endpoint.rpartition("://")
        self._target, self._secure = target or endpoint, scheme == "https"
        if self._secure:
            self._channel = grpc.secure_channel(self._target, grpc.ssl_channel_credentials())
        else:
            self._channel = grpc.insecure_channel(self._target)
        self._export = self._channel.unary_unary(EXPORT_METHOD, None, None)  # bytes in, bytes out
        self._aio_channel: grpc.aio.Channel | None = None
        self._encoder = SpanEncoder(resource)
        self._headers = tuple(headers)
        self._timeout, self._retries = timeout, retries
        self.endpoint = endpoint

    def _failed(self, spans: Sequence[Any], error: grpc.RpcError, attempt: int) -> bool:
        """Whether to try again; raises ExportError once it is no use."""
        code = error.code() if isinstance(error, (grpc.Call, grpc.aio.AioRpcError)) else None
        retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
        if not retryable or attempt == self._retries:
            raise ExportError(f"OTLP export of {len(spans)} spans to {self.endpoint} failed: {code}") from None
        return True

    def export(self, spans: Sequence[Any]) -> None:
        """Send from a thread (blocking)."""
        if not spans:
            return
        request = self._encoder.request(spans)
        for attempt in range(self._retries + 1):
            try:
                self._export(request, timeout=self._timeout, metadata=self._headers or None)
                return
            except grpc.RpcError as error:
                self._failed(spans, error, attempt)
                time.sleep(0.5 * 2**attempt)

    async def export_async(self, spans: Sequence[Any]) -> None:
        """Send from an event loop (grpc.aio, created on first use on that loop)."""
        if not spans:
            return
        if self._aio_channel is None:
            self._aio_channel = (
                grpc.aio.secure_channel(self._target, grpc.ssl_channel_credentials())
                if self._secure
                else grpc.aio.insecure_channel(self._target)
            )
        send = self._aio_channel.unary_unary(EXPORT_METHOD, None, None)
        request = self._encoder.request(spans)
        for attempt in range(self._retries + 1):
            try:
                await send(request, timeout=self._timeout, metadata=self._headers or None)
                return
            except grpc.aio.AioRpcError as error:
                self._failed(spans, error, attempt)
                await asyncio.sleep(0.5 * 2**attempt)

    def shutdown(self) -> None:
        self._channel.close()

    async def aclose(self) -> None:
        if self._aio_channel is not None:
            await self._aio_channel.close(None)
        self._channel.close()


def parse_headers(raw: str) -> list[tuple[str, str]]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``key1=value1,key2=value2`` (values URL-encoded)."""
    from urllib.parse import unquote

    out = []
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out.append((key.strip().lower(), unquote(value.strip())))
    return out

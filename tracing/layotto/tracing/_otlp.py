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
import struct
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from opentelemetry.trace import StatusCode

from layotto.tracing._batch import ExportError
from layotto.tracing._spans import RecordedSpan

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_CACHE_LIMIT = 4096
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack
_pack_double = struct.Struct("<d").pack
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_SAMPLED_FLAGS = _HAS_IS_REMOTE | 1  # a RecordedSpan is sampled
_LOW64 = 0xFFFFFFFFFFFFFFFF
# the span's opening fields: trace_id (1) and span_id (2) tags and big-endian bytes, parent_span_id
# (4), start and end times (7, 8: fixed64 little-endian)
_pack_ids = struct.Struct(">2sQQ2sQ").pack
_pack_parent = struct.Struct(">2sQ").pack
_pack_times = struct.Struct("<cQcQ").pack


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


def key_value(key: str, value: Any) -> bytes:
    """A ``KeyValue`` message body."""
    return field_bytes(1, key.encode()) + field_bytes(2, any_value(value))


def _remember(cache: dict[Any, bytes], key: Any, encoded: bytes) -> bytes:
    """Keep ``encoded`` under ``key``; a full cache starts over rather than growing."""
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = encoded
    return encoded


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
            return field_bytes(9, key_value(key, value))
        return encoded or _remember(self.pairs, cache_key, field_bytes(9, key_value(key, value)))

    def name(self, name: str) -> bytes:
        return self.names.get(name) or _remember(self.names, name, field_bytes(5, name.encode()))


def _attributes(attributes: Mapping[str, Any] | None, number: int) -> bytes:
    """Attributes as repeated KeyValue field ``number`` (not cached: events and links)."""
    if not attributes:
        return b""
    return b"".join(field_bytes(number, key_value(k, v)) for k, v in attributes.items())


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
        self._resource = field_bytes(1, _attributes(resource, 1))  # ResourceSpans.resource, its attributes
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
                _remember(self._statics, key, encoded)
        return encoded

    def span(self, span: Any) -> bytes:
        if type(span) is RecordedSpan:  # ours: ids straight from the span, no SpanContext built
            trace_id, span_id, trace_state, flags = span.trace_id, span.span_id, span.trace_state, _SAMPLED_FLAGS
        else:
            context = span.context
            trace_id, span_id, trace_state = context.trace_id, context.span_id, context.trace_state
            flags = _HAS_IS_REMOTE | int(context.trace_flags)
        parent = span.parent
        parts = [_pack_ids(b"\x0a\x10", trace_id >> 64, trace_id & _LOW64, b"\x12\x08", span_id)]
        if trace_state:
            parts.append(field_bytes(3, trace_state.to_header().encode()))
        if parent is not None:
            parts.append(_pack_parent(b"\x22\x08", parent.span_id))
            if parent.is_remote:
                flags |= _IS_REMOTE
        parts += (self._static(span), _pack_times(b"\x39", span.start_time, b"\x41", span.end_time))
        if span.events:
            parts += [_event(e) for e in span.events]
        if span.links:
            parts += [_link(li) for li in span.links]
        status = span.status
        if status.status_code is not StatusCode.UNSET:
            parts.append(_status(status))
        parts.append(_FLAGS.get(flags) or b"\x85\x01" + _pack_fixed32(flags))
        body = b"".join(parts)
        size = len(body)
        return (_SPAN_HEADS[size] if size < len(_SPAN_HEADS) else b"\x12" + varint(size)) + body

    def request(self, spans: Sequence[Any]) -> bytes:
        return self.request_of_encoded([self.span(s) for s in spans])

    def request_of_encoded(self, encoded: Sequence[bytes]) -> bytes:
        """The request of spans encoded by :meth:`span` already."""
        scope_spans = self._scope + b"".join(encoded)
        resource_spans = self._resource + field_bytes(2, scope_spans)
        return field_bytes(1, resource_spans)


_KINDS = {kind: varint(kind + 1) for kind in range(5)}  # API SpanKind value -> OTLP's (UNSPECIFIED is 0)
# the flags field (16, fixed32) of the common values: sampled or not, parent remote or not
_FLAGS = {f: b"\x85\x01" + _pack_fixed32(f) for f in (0x100, 0x101, 0x300, 0x301)}
# ScopeSpans.spans (2): tag and length of a span body of each size below 2 KiB
_SPAN_HEADS = [b"\x12" + varint(size) for size in range(2048)]


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
        # each opened on first use: a thread sends on the blocking one, an event loop on the other
        self._channel: grpc.Channel | None = None
        self._aio_channel: grpc.aio.Channel | None = None
        self._encoder = SpanEncoder(resource)
        self._headers = tuple(headers)
        self._timeout, self._retries = timeout, retries
        self.endpoint = endpoint

    def _open(self, api: Any) -> Any:
        """A channel to the collector from ``grpc`` or ``grpc.aio`` (they take the same arguments)."""
        if self._secure:
            return api.secure_channel(self._target, grpc.ssl_channel_credentials())
        return api.insecure_channel(self._target)

    def _raise_unless_retryable(self, count: int, error: grpc.RpcError, attempt: int) -> None:
        """Raise ExportError when another attempt is no use (a permanent error, or the last try)."""
        code = error.code() if isinstance(error, (grpc.Call, grpc.aio.AioRpcError)) else None
        retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)
        if not retryable or attempt == self._retries:
            raise ExportError(f"OTLP export of {count} spans to {self.endpoint} failed: {code}") from None

    def export(self, spans: Sequence[Any]) -> None:
        """Send from a thread (blocking)."""
        if not spans:
            return
        if self._channel is None:
            self._channel = self._open(grpc)
        send = self._channel.unary_unary(EXPORT_METHOD, None, None)  # bytes in, bytes out
        request = self._encoder.request(spans)
        for attempt in range(self._retries + 1):
            try:
                send(request, timeout=self._timeout, metadata=self._headers or None)
                return
            except grpc.RpcError as error:
                self._raise_unless_retryable(len(spans), error, attempt)
                time.sleep(0.5 * 2**attempt)

    async def export_async(self, spans: Sequence[Any]) -> None:
        """Send from an event loop (grpc.aio, created on first use on that loop)."""
        if spans:
            await self._send_async(self._encoder.request(spans), len(spans))

    def encode_span(self, span: Any) -> bytes:
        """One finished span's wire bytes, for :meth:`export_encoded_async` later."""
        return self._encoder.span(span)

    async def export_encoded_async(self, encoded: Sequence[bytes]) -> None:
        """Send spans encoded by :meth:`encode_span`, from an event loop."""
        if encoded:
            await self._send_async(self._encoder.request_of_encoded(encoded), len(encoded))

    async def _send_async(self, request: bytes, count: int) -> None:
        if self._aio_channel is None:
            self._aio_channel = self._open(grpc.aio)
        send = self._aio_channel.unary_unary(EXPORT_METHOD, None, None)
        for attempt in range(self._retries + 1):
            try:
                await send(request, timeout=self._timeout, metadata=self._headers or None)
                return
            except grpc.aio.AioRpcError as error:
                self._raise_unless_retryable(count, error, attempt)
                await asyncio.sleep(0.5 * 2**attempt)

    def shutdown(self) -> None:
        if self._channel is not None:
            self._channel.close()

    async def aclose(self) -> None:
        if self._aio_channel is not None:
            await self._aio_channel.close(None)
        self.shutdown()


def parse_headers(raw: str) -> list[tuple[str, str]]:
    """``OTEL_EXPORTER_OTLP_HEADERS``: ``key1=value1,key2=value2`` (values URL-encoded)."""
    from urllib.parse import unquote

    out = []
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            out.append((key.strip().lower(), unquote(value.strip())))
    return out

"""SkyWalking's cross-process propagation header ``sw8`` (protocol v3) as an OpenTelemetry
propagator.

``sw8: {sample}-{trace id}-{parent segment id}-{parent span id}-{parent service}-
{parent service instance}-{parent endpoint}-{address used at the client}``, every string
field base64-encoded, the span id a decimal integer.

OpenTelemetry's ids are 128 and 64 bits; SkyWalking's are strings. Extracting maps the
SkyWalking trace id onto an OpenTelemetry trace id (the id itself when it is 32 hex
digits, else a hash) and keeps the original in the span context's trace state under
``sw``, so children and the SkyWalking exporter report the caller's own trace id.
Injecting writes the current span's SkyWalking segment and span (assigned by
:class:`~layotto.tracing._segments.SegmentTracker`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

HEADER = "sw8"
TRACE_STATE_KEY = "sw"
_HEX = set(string.hexdigits.lower())
_STATE_SAFE = set(string.ascii_letters + string.digits + "._-*/@")

# span attributes written by the SegmentTracker and read here and by the exporter
SEGMENT_ID = "sw.segment_id"
SPAN_ID = "sw.span_id"
PARENT_SPAN_ID = "sw.parent_span_id"
ENDPOINT = "sw.endpoint"
PEER = "server.address"
# attributes of an entry span whose caller sent sw8: the reference to the caller's segment
REF_PREFIX = "sw8.parent."


@dataclass(frozen=True)
class Sw8:
    """The fields of one sw8 header."""

    sampled: bool
    trace_id: str
    segment_id: str
    span_id: int
    service: str
    instance: str
    endpoint: str
    peer: str

    def encode(self) -> str:
        fields = (self.trace_id, self.segment_id)
        tail = (self.service, self.instance, self.endpoint, self.peer)
        return "-".join(["1" if self.sampled else "0", *map(_b64, fields), str(self.span_id), *map(_b64, tail)])

    @classmethod
    def decode(cls, header: str) -> Sw8 | None:
        parts = header.strip().split("-")
        if len(parts) != 8 or parts[0] not in ("0", "1"):
            return None
        try:
            texts = [base64.b64decode(p, validate=True).decode() for i, p in enumerate(parts) if i not in (0, 3)]
            span_id = int(parts[3])
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        trace_id, segment_id, service, instance, endpoint, peer = texts
        if not trace_id or not segment_id:
            return None
        return cls(parts[0] == "1", trace_id, segment_id, span_id, service, instance, endpoint, peer)

    def reference_attributes(self) -> dict[str, Any]:
        """What an entry span records so the exporter can write its SegmentReference."""
        return {
            f"{REF_PREFIX}trace_id": self.trace_id,
            f"{REF_PREFIX}segment_id": self.segment_id,
            f"{REF_PREFIX}span_id": self.span_id,
            f"{REF_PREFIX}service": self.service,
            f"{REF_PREFIX}instance": self.instance,
            f"{REF_PREFIX}endpoint": self.endpoint,
            f"{REF_PREFIX}peer": self.peer,
        }


def peer_of(attributes: Any) -> str:
    """HOST:PORT from a span's server.address and server.port (HOST alone without a port)."""
    host = str(attributes.get(PEER, ""))
    port = attributes.get("server.port")
    return f"{host}:{port}" if host and port else host


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def otel_trace_id(sw_trace_id: str) -> int:
    """The OpenTelemetry trace id for a SkyWalking one: itself if it is 32 hex digits."""
    lowered = sw_trace_id.lower()
    if len(lowered) == 32 and set(lowered) <= _HEX and int(lowered, 16):
        return int(lowered, 16)
    return int.from_bytes(hashlib.sha256(sw_trace_id.encode()).digest()[:16]) or 1


def otel_span_id(segment_id: str, span_id: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{segment_id}/{span_id}".encode()).digest()[:8]) or 1


def state_value(sw_trace_id: str) -> str:
    """``sw_trace_id`` as a trace-state value (hex-encoded when it has unsafe characters)."""
    if len(sw_trace_id) <= 200 and set(sw_trace_id) <= _STATE_SAFE:
        return sw_trace_id
    return "x" + sw_trace_id.encode().hex()


def from_state_value(value: str) -> str:
    if value.startswith("x"):
        try:
            return bytes.fromhex(value[1:]).decode()
        except ValueError:
            return value
    return value


def sw_trace_id(span_context: SpanContext) -> str:
    """The SkyWalking trace id of a span: the caller's, if the trace came in by sw8."""
    carried = span_context.trace_state.get(TRACE_STATE_KEY)
    return from_state_value(carried) if carried else format(span_context.trace_id, "032x")


class Sw8Propagator(TextMapPropagator):
    """Extracts and injects ``sw8``; give it the service and instance this process reports as."""

    def __init__(self, service: str = "", instance: str = "") -> None:
        self.service = service
        self.instance = instance

    def extract(
        self, carrier: CarrierT, context: Context | None = None, getter: Getter[CarrierT] = default_getter
    ) -> Context:
        values = getter.get(carrier, HEADER)
        header = decode_header(values)
        if header is None:
            return context if context is not None else Context()
        span_context = SpanContext(
            trace_id=otel_trace_id(header.trace_id),
            span_id=otel_span_id(header.segment_id, header.span_id),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if header.sampled else TraceFlags.DEFAULT),
            trace_state=TraceState([(TRACE_STATE_KEY, state_value(header.trace_id))]),
        )
        return trace.set_span_in_context(NonRecordingSpan(span_context), context)

    def inject(
        self, carrier: CarrierT, context: Context | None = None, setter: Setter[CarrierT] = default_setter
    ) -> None:
        span = trace.get_current_span(context)
        span_context = span.get_span_context()
        attributes = getattr(span, "attributes", None) or {}
        if not span_context.is_valid or SEGMENT_ID not in attributes:
            return
        header = Sw8(
            sampled=span_context.trace_flags.sampled,
            trace_id=sw_trace_id(span_context),
            segment_id=str(attributes[SEGMENT_ID]),
            span_id=int(attributes[SPAN_ID]),
            service=self.service,
            instance=self.instance,
            endpoint=str(attributes.get(ENDPOINT, "")),
            peer=peer_of(attributes),
        )
        setter.set(carrier, HEADER, header.encode())

    @property
    def fields(self) -> set[str]:
        return {HEADER}


def decode_header(values: Iterable[str] | None) -> Sw8 | None:
    for value in values or ():
        header = Sw8.decode(value)
        if header is not None:
            return header
    return None

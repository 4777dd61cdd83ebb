"""The span helper components use for their backend calls.

Shared connection code calls ``backend_span("redis", "HGET", peer=...)`` around each
command, statement or request, so component authors get spans without tracing code of
their own. With tracing off it returns one shared no-op context manager: a function call
and a global read, nothing else.
"""

from __future__ import annotations

import contextlib
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_NOOP = contextlib.nullcontext()
_TARGET: list[Tracer] = []  # the tracer backend spans go to, when tracing is on
_W3C = TraceContextTextMapPropagator()
_MESSAGING = frozenset({"nats", "rabbitmq", "mqtt", "kafka"})


def set_backend_tracer(tracer: Tracer | None) -> None:
    """Where backend spans go (None: nowhere). The runtime sets it when tracing starts."""
    _TARGET[:] = [tracer] if tracer is not None else []


def backends_traced() -> bool:
    """Whether a backend call made now would get a span (for callers with costly attributes)."""
    return bool(_TARGET) and trace.get_current_span().is_recording()


def statement_operation(statement: str) -> str:
    """The SQL verb of a statement (``SELECT``, ``INSERT``, ...), its span's operation name."""
    return statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"


def current_traceparent() -> str:
    """The W3C traceparent of the current span, or "" outside a traced request."""
    if not _TARGET:
        return ""
    span = trace.get_current_span()
    context = span.get_span_context()
    if not span.is_recording() or not context.is_valid:
        return ""
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def delivery_span(system: str, topic: str, traceparent: str = "") -> contextlib.AbstractContextManager[Any]:
    """A CONSUMER span for delivering one message, continuing the publisher's trace when the
    message carries its ``traceparent``."""
    if not _TARGET:
        return _NOOP
    parent = _W3C.extract({"traceparent": traceparent}) if traceparent else None
    attributes = {
        "messaging.system": system,
        "messaging.destination.name": topic,
        "messaging.operation.name": "process",
    }
    return _TARGET[0].start_as_current_span(
        f"{topic} process", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    )


def backend_span(
    system: str,
    operation: str,
    *,
    statement: str | None = None,
    peer: str | None = None,
    port: int | None = None,
) -> contextlib.AbstractContextManager[Any]:
    """A CLIENT span ``"{system} {operation}"`` with db.* (or messaging.*) attributes, child of
    the current span; outside a traced request (background loops) there is none."""
    if not _TARGET or not trace.get_current_span().is_recording():
        return _NOOP
    key = (system, operation, statement, peer, port)
    described = _DESCRIBED.get(key) or _describe(*key)
    return _TARGET[0].start_as_current_span(described[0], kind=SpanKind.CLIENT, attributes=described[1])


_DESCRIBED: dict[tuple[str, str, str | None, str | None, int | None], tuple[str, dict[str, Any]]] = {}
_DESCRIBED_LIMIT = 1024  # statements vary; names, peers and operations mostly do not


def _describe(
    system: str, operation: str, statement: str | None, peer: str | None, port: int | None
) -> tuple[str, dict[str, Any]]:
    """A backend span's name and attributes, kept for the next call with the same ones (spans
    copy their attributes, so the shared dict is never changed)."""
    if system in _MESSAGING:
        attributes: dict[str, Any] = {"messaging.system": system, "messaging.operation.name": operation}
        if statement:
            attributes["messaging.destination.name"] = statement
    else:
        attributes = {"db.system": system, "db.operation.name": operation}
        if statement:
            attributes["db.query.text"] = statement[:2048]
    if peer:
        attributes["server.address"] = peer
    if port:
        attributes["server.port"] = port
    if len(_DESCRIBED) >= _DESCRIBED_LIMIT:
        _DESCRIBED.clear()
    described = _DESCRIBED[(system, operation, statement, peer, port)] = (f"{system} {operation}", attributes)
    return described

"""Layotto for Python: tracing.

One tracer per process (:class:`Tracing`): our own lean implementation of OpenTelemetry's
tracing API, exporting over OTLP/gRPC and to SkyWalking's native collector, propagating
W3C ``traceparent`` and SkyWalking ``sw8``; explicit grpc.aio interceptors for clients and
servers, and
:func:`backend_span` for components' backend calls. Settings come from config and from
the standard ``OTEL_*`` / ``SW_*`` environment variables (see :mod:`layotto.tracing._settings`).
"""

from layotto.tracing._backend import (
    backend_span,
    backends_traced,
    current_traceparent,
    delivery_span,
    set_backend_tracer,
    statement_operation,
)
from layotto.tracing._segments import SegmentTracker, SkyWalkingExporter
from layotto.tracing._settings import TracingConfigError, TracingSettings, from_mapping, with_environment
from layotto.tracing._setup import Tracing
from layotto.tracing._sw8 import Sw8, Sw8Propagator

__all__ = [
    "SegmentTracker",
    "SkyWalkingExporter",
    "Sw8",
    "Sw8Propagator",
    "Tracing",
    "TracingConfigError",
    "TracingSettings",
    "backend_span",
    "backends_traced",
    "current_traceparent",
    "delivery_span",
    "from_mapping",
    "set_backend_tracer",
    "statement_operation",
    "with_environment",
]

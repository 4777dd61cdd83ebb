"""Layotto for Python: tracing.

One tracer per process (:class:`Tracing`): our own lean implementation of OpenTelemetry's
tracing API, exporting over OTLP/gRPC and to SkyWalking's native collector, propagating
W3C ``traceparent`` and SkyWalking ``sw8``; explicit grpc.aio interceptors for clients and
servers, and
:func:`backend_span` for components' backend calls. Settings come from config and from
the standard ``OTEL_*`` / ``SW_*`` environment variables (see :mod:`layotto.tracing._settings`).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from layotto.tracing._backend import (
    backend_span,
    backends_traced,
    current_traceparent,
    delivery_span,
    set_backend_tracer,
    statement_operation,
)
from layotto.tracing._settings import TracingConfigError, TracingSettings, from_mapping, with_environment
from layotto.tracing._sw8 import Sw8, Sw8Propagator

if TYPE_CHECKING:
    from layotto.tracing._segments import SegmentTracker, SkyWalkingExporter
    from layotto.tracing._setup import Tracing

#: imported on first use: they need OpenTelemetry's SDK, which a process that never traces does not load
_LAZY = {
    "SegmentTracker": "layotto.tracing._segments",
    "SkyWalkingExporter": "layotto.tracing._segments",
    "Tracing": "layotto.tracing._setup",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

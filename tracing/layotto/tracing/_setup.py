"""``Tracing``: one lean tracer with its batch exporter (on the runtime's loop, or a thread),
propagators and interceptors."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from layotto.tracing._backend import set_backend_tracer
from layotto.tracing._batch import BatchProcessor, Exporter
from layotto.tracing._grpc import ServerInterceptor, client_interceptors
from layotto.tracing._loop_batch import LoopBatchProcessor
from layotto.tracing._otlp import OtlpExporter, parse_headers
from layotto.tracing._segments import SegmentTracker, SkyWalkingExporter
from layotto.tracing._settings import TracingSettings, with_environment
from layotto.tracing._spans import LeanTracer
from layotto.tracing._sw8 import Sw8Propagator


def _exporter(name: str, settings: TracingSettings, resource: Resource) -> Exporter:
    if name == "skywalking":
        return SkyWalkingExporter(settings.skywalking_address, settings.service_name, settings.instance)
    headers = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    return OtlpExporter(settings.otlp_endpoint, dict(resource.attributes), headers=parse_headers(headers))


class Tracing:
    """Traces of one process. ``Tracing(settings)`` starts it; ``shutdown()`` flushes and stops.

    Extraction tries ``sw8`` and then W3C ``traceparent`` (which wins when both came, being
    exact for OpenTelemetry); injection writes ``traceparent``, and ``sw8`` when the
    SkyWalking exporter is on (sw8 names segments that only SkyWalking receives).
    """

    def __init__(
        self,
        settings: TracingSettings,
        *,
        extra_exporters: tuple[Exporter, ...] = (),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.settings = settings
        resource = Resource.create({"service.name": settings.service_name, "service.instance.id": settings.instance})
        self.tracer = LeanTracer(settings.sampling_ratio, resource)
        if "skywalking" in settings.exporters:  # segments and sw8 mean something only to SkyWalking
            self.tracer.add_span_processor(SegmentTracker())
        exporters = [*(_exporter(n, settings, resource) for n in settings.exporters), *extra_exporters]
        # on the loop that serves the requests when the caller names it (the runtime does), else a thread
        self.tracer.add_span_processor(LoopBatchProcessor(exporters, loop) if loop else BatchProcessor(exporters))
        self.propagator = CompositePropagator(
            [Sw8Propagator(settings.service_name, settings.instance), TraceContextTextMapPropagator()]
        )

    @classmethod
    def from_environment(cls, service_name: str) -> Tracing:
        """Tracing set up by the standard OTEL_* / SW_* variables alone (off when none is set)."""
        return cls(with_environment(TracingSettings(service_name=service_name)))

    def client_interceptors(self, target: str) -> list[Any]:
        """Interceptors for a grpc.aio channel to ``target``: a CLIENT span per call."""
        return client_interceptors(self.tracer, self.propagator, target)

    def server_interceptor(self) -> ServerInterceptor:
        return ServerInterceptor(self.tracer, self.propagator)

    def trace_backends(self) -> None:
        """Send the components' backend spans to this provider."""
        set_backend_tracer(self.tracer)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        return self.tracer.force_flush(timeout_millis)

    def shutdown(self) -> None:
        set_backend_tracer(None)
        self.tracer.shutdown()

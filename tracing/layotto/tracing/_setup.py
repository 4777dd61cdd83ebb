"""``Tracing``: one tracer provider with its exporters, propagators and interceptors."""

from __future__ import annotations

from typing import Any

from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from layotto.tracing._backend import set_backend_tracer
from layotto.tracing._grpc import ServerInterceptor, client_interceptors
from layotto.tracing._segments import SegmentTracker, SkyWalkingExporter
from layotto.tracing._settings import TracingSettings, with_environment
from layotto.tracing._sw8 import Sw8Propagator


class _StableResource(Resource):
    """The process's resource, hashed once: the OTLP encoder hashes it for every span it sends."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(dict(resource.attributes), resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def _exporter(name: str, settings: TracingSettings) -> SpanExporter:
    if name == "skywalking":
        return SkyWalkingExporter(settings.skywalking_address, settings.service_name, settings.instance)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = settings.otlp_endpoint
    return OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"))


class Tracing:
    """Traces of one process. ``Tracing(settings)`` starts it; ``shutdown()`` flushes and stops.

    Extraction tries ``sw8`` and then W3C ``traceparent`` (which wins when both came, being
    exact for OpenTelemetry); injection writes ``traceparent``, and ``sw8`` when the
    SkyWalking exporter is on (sw8 names segments that only SkyWalking receives).
    """

    def __init__(self, settings: TracingSettings, *, extra_exporters: tuple[SpanExporter, ...] = ()) -> None:
        self.settings = settings
        resource = _StableResource(
            Resource.create({"service.name": settings.service_name, "service.instance.id": settings.instance})
        )
        ratio = settings.sampling_ratio
        sampler = ParentBased(ALWAYS_ON if ratio >= 1.0 else TraceIdRatioBased(ratio))
        self.provider = TracerProvider(resource=resource, sampler=sampler)
        if "skywalking" in settings.exporters:  # segments and sw8 mean something only to SkyWalking
            self.provider.add_span_processor(SegmentTracker())
        for exporter in (*(_exporter(n, settings) for n in settings.exporters), *extra_exporters):
            self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        self.tracer: Tracer = self.provider.get_tracer("layotto")
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
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        set_backend_tracer(None)
        self.provider.shutdown()

"""Prometheus metrics of the runtime (prometheus-client), served as ``/metrics`` on the HTTP port.

Imported only when ``metrics.enabled`` (the default, as in Dapr): prometheus-client costs ~80 ms of
start-up. Every runtime has its own registry, holding:

* ``dapr_grpc_io_server_completed_rpcs_total`` (counter) and ``dapr_grpc_io_server_server_latency``
  (histogram, milliseconds), by ``app_id``, ``grpc_server_method`` (``/pkg.Service/Method``) and
  ``grpc_server_status`` (``OK``, ``UNAUTHENTICATED``, ...): Dapr's metrics (prometheus-client
  writes a counter with the ``_total`` suffix OpenMetrics requires), counted by
  :class:`RpcMetrics`, a server interceptor, for every call of every served service;
* ``dapr_component_pubsub_ingress_count_total`` (counter) by ``app_id``, ``component``, ``topic`` and
  ``process_status``: every delivery attempt to a subscriber and its answer (``success``, ``retry``,
  ``drop``, Dapr's), plus ``dead_letter`` when a message went to its dead-letter topic;
* the component, HTTP API and service invocation metrics of :mod:`layotto.server.metrics_ops`;
* the traffic capture's counters, when it is on (:mod:`layotto.server.metrics_capture`);
* prometheus-client's process and platform collectors (``process_*``, ``python_*``).
"""

from __future__ import annotations

import inspect
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from layotto.server.components.loader import ComponentSet
from layotto.server.metrics_ops import (
    COMPONENT_FAMILIES,
    HttpMetrics,
    InvocationMetrics,
    instrument_component,
    instrument_components,
)
from layotto.server.metrics_series import Series, SeriesFamily
from layotto.server.rpc_status import status_name
from layotto.server.shutdown_gate import ShutdownGate, WrapperCache

if TYPE_CHECKING:
    from layotto.server.traffic.capture import TrafficCapture

#: latency buckets in milliseconds (a subset of Dapr's, which has 40)
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000)
_RPC_LABELS = ("app_id", "grpc_server_method", "grpc_server_status")
_HTTP = ("app_id", "method", "path", "status")
_INVOKE = ("app_id", "destination_app_id", "status")
#: distinct ``grpc_server_method`` values kept; the calls of any further method count as OTHER_METHOD
#: (gRPC proxying serves any method name a client sends: the series must stay bounded)
MAX_METHOD_LABELS = 512
OTHER_METHOD = "other"


class RuntimeMetrics:
    """The registry of one runtime and its instruments (see the module)."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self._rpc_series: dict[tuple[str, str], Series] = {}
        self._methods: set[str] = set()  # the grpc_server_method values in use, at most MAX_METHOD_LABELS
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.rpcs = self._family(
            "dapr_grpc_io_server_completed_rpcs",
            "dapr_grpc_io_server_server_latency",
            _RPC_LABELS,
            "Count of RPCs by method and status.",
            "Distribution of server latency in milliseconds, by method.",
        )
        self.pubsub_ingress = Counter(
            "dapr_component_pubsub_ingress_count",
            "The number of incoming messages arriving from the pub/sub component, by the subscriber's answer.",
            ("app_id", "component", "topic", "process_status"),
            registry=self.registry,
        )
        self._component_families: dict[str, SeriesFamily] = {}
        http = self._family(
            "dapr_http_server_request_count",
            "dapr_http_server_latency",
            _HTTP,
            "Number of HTTP requests, by method, route template and status.",
            "HTTP request latency in milliseconds in the server.",
        )
        self.http = HttpMetrics(app_id, http)
        self.invocation = InvocationMetrics(
            app_id,
            sent=self._counter("dapr_runtime_service_invocation_req_sent", _INVOKE[:2], "invocation requests sent"),
            received=self._counter(
                "dapr_runtime_service_invocation_req_recv", ("app_id", "src_app_id"), "invocation requests received"
            ),
            answers=self._family(
                "dapr_runtime_service_invocation_res_recv",
                "dapr_runtime_service_invocation_res_recv_latency_ms",
                _INVOKE,
                "The number of remote service invocation responses received.",
                "The remote service invocation round trip latency in milliseconds.",
            ),
        )

    def _counter(self, name: str, labels: tuple[str, ...], what: str) -> Counter:
        return Counter(name, f"The number of {what}.", labels, registry=self.registry)

    def _family(
        self, count_name: str, latency_name: str, labels: tuple[str, ...], count_help: str, latency_help: str
    ) -> SeriesFamily:
        return SeriesFamily(
            self.registry,
            count_name,
            latency_name,
            labels,
            LATENCY_BUCKETS_MS,
            count_help=count_help,
            latency_help=latency_help,
        )

    def component_family(self, block: str) -> SeriesFamily:
        """The count and latency family of a building block's component operations, made on first use."""
        family = self._component_families.get(block)
        if family is None:
            prefix, label = COMPONENT_FAMILIES[block]
            family = self._component_families[block] = self._family(
                prefix + "_count",
                prefix + "_latencies",
                ("app_id", "component", label, "success"),
                f"The number of operations performed on the {block} component.",
                f"The latency in milliseconds of the response from the {block} component.",
            )
        return family

    def instrument(self, components: ComponentSet) -> None:
        """Count and time every operation of ``components`` (see :mod:`layotto.server.metrics_ops`)."""
        instrument_components(components, self.component_family, self.app_id)

    def instrument_component(self, block: str, component: Any) -> None:
        """Count and time the operations of one component, built after start (a live reconfiguration)."""
        instrument_component(block, component, self.component_family, self.app_id)

    def watch_capture(self, capture: TrafficCapture) -> None:
        """Export the counters of the runtime's traffic capture (see :mod:`layotto.server.metrics_capture`)."""
        from layotto.server.metrics_capture import CaptureCollector

        self.registry.register(CaptureCollector(self.app_id, capture))

    def delivery_outcome(self, pubsub: str, topic: str, outcome: str) -> None:
        """Counts one delivery attempt (a :class:`~layotto.server.runtime.delivery.DeliveryObserver`)."""
        self.pubsub_ingress.labels(self.app_id, pubsub, topic, outcome).inc()

    def record_rpc(self, method: str, status: str, started: float) -> None:
        """Counts one finished call of ``method`` that began at ``started`` (time.perf_counter())."""
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.rpcs.observe(self.rpc_series(method, status), elapsed_ms)

    def rpc_series(self, method: str, status: str) -> Series:
        """The series of one method and status (OTHER_METHOD past MAX_METHOD_LABELS methods)."""
        series = self._rpc_series.get((method, status))
        return series if series is not None else self._new_rpc_series(method, status)

    def _new_rpc_series(self, method: str, status: str) -> Series:
        """The series of one method and status (OTHER_METHOD past MAX_METHOD_LABELS methods), kept."""
        if method not in self._methods and len(self._methods) >= MAX_METHOD_LABELS:
            return self.rpcs.series((self.app_id, OTHER_METHOD, status))
        self._methods.add(method)
        series = self._rpc_series[(method, status)] = self.rpcs.series((self.app_id, method, status))
        return series

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    async def serve(self, request: web.BaseRequest) -> web.Response:
        """The ``/metrics`` endpoint."""
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts every call, unary or streaming, by method and final status, with its latency.

    Installed first, so that it also counts the calls the inner interceptors refuse (a missing API
    token, a runtime shutting down). Given the runtime's :class:`ShutdownGate` (when it would be the
    next interceptor), it does the gate's work too, in the same wrapper: the gate is then not
    installed, which spares every call one interceptor and one handler wrapper of the chain.
    """

    def __init__(self, metrics: RuntimeMetrics, gate: ShutdownGate | None = None) -> None:
        self._metrics = metrics
        self._gate = gate
        self._wrapped = WrapperCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        gate = self._gate
        if gate is not None:
            gate.arrived()
        return self._picked(handler_call_details.method, await continuation(handler_call_details))

    def pick(self, method: str, handler: Any) -> Any:
        """What :meth:`intercept_service` returns when its continuation gives ``handler`` (None for
        an unknown method), without the call's details: the native server calls this instead."""
        gate = self._gate
        if gate is not None:
            gate.arrived()
        return self._picked(method, handler)

    def _picked(self, method: str, handler: Any) -> Any:
        if handler is None:
            return None
        gate = self._gate
        if gate is not None and gate.draining:
            refused = gate.refusal(method, handler)
            if refused is not None:
                return self._wrap(method, refused, counted=False)
        return self._wrapped.get(method, handler, self._wrap)

    def _wrap(self, method: str, handler: Any, counted: bool = True) -> Any:
        """``handler`` measured (and its unary answers counted in flight by the gate, if any and ``counted``)."""
        codecs = (handler.request_deserializer, handler.response_serializer)
        gate = self._gate if counted else None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._measured(method, handler.unary_unary, gate), *codecs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._measured(method, handler.stream_unary, gate), *codecs)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._measured_stream(method, handler.unary_stream), *codecs)
        return grpc.stream_stream_rpc_method_handler(self._measured_stream(method, handler.stream_stream), *codecs)

    def _measured(
        self, method: str, behavior: Callable[[Any, Any], Awaitable[Any]], gate: ShutdownGate | None
    ) -> Callable[[Any, Any], Any]:
        metrics = self._metrics
        bounds = metrics.rpcs.bounds
        clock = time.perf_counter
        ok: Series | None = None  # this method's OK series, looked up once

        async def measured(request: Any, context: Any) -> Any:
            nonlocal ok
            if gate is not None:
                gate.in_flight += 1
            started = clock()
            try:
                answer = await behavior(request, context)
            except BaseException as error:
                metrics.record_rpc(method, status_name(context, error), started)
                raise
            finally:
                if gate is not None:
                    gate.in_flight -= 1
            code = context.code()  # None (pygrpc-native) or 0 (grpc.aio) unless a handler set one
            if not code or code is grpc.StatusCode.OK:
                elapsed_ms = (clock() - started) * 1000.0
                if ok is None:
                    ok = metrics.rpc_series(method, "OK")
                ok.count += 1  # SeriesFamily.observe, inlined: this runs on every call
                ok.total += elapsed_ms
                ok.buckets[bisect_left(bounds, elapsed_ms)] += 1
            else:
                metrics.record_rpc(method, status_name(context, None), started)
            return answer

        return measured

    def _measured_stream(self, method: str, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        if not inspect.isasyncgenfunction(behavior):  # writes with context.write(): a coroutine
            return self._measured(method, behavior, None)  # streams are not counted in flight: see ShutdownGate
        record = self._metrics.record_rpc

        async def measured(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for answer in behavior(request, context):
                    yield answer
            except BaseException as error:
                record(method, status_name(context, error), started)
                raise
            record(method, status_name(context, None), started)

        return measured

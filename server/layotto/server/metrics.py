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
* prometheus-client's process and platform collectors (``process_*``, ``python_*``).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from layotto.server.components.loader import ComponentSet
from layotto.server.metrics_ops import COMPONENT_FAMILIES, Family, HttpMetrics, InvocationMetrics, instrument_components
from layotto.server.rpc_status import status_name
from layotto.server.shutdown_gate import WrapperCache

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
        self._rpc_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._methods: set[str] = set()  # the grpc_server_method values in use, at most MAX_METHOD_LABELS
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.completed_rpcs = Counter(
            "dapr_grpc_io_server_completed_rpcs",
            "Count of RPCs by method and status.",
            _RPC_LABELS,
            registry=self.registry,
        )
        self.server_latency = Histogram(
            "dapr_grpc_io_server_server_latency",
            "Distribution of server latency in milliseconds, by method.",
            _RPC_LABELS,
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self.pubsub_ingress = Counter(
            "dapr_component_pubsub_ingress_count",
            "The number of incoming messages arriving from the pub/sub component, by the subscriber's answer.",
            ("app_id", "component", "topic", "process_status"),
            registry=self.registry,
        )
        self._component_families: dict[str, Family] = {}
        self.http = HttpMetrics(app_id, self._family("dapr_http_server_request", "dapr_http_server_latency", _HTTP))
        self.invocation = InvocationMetrics(
            app_id,
            sent=self._counter("dapr_runtime_service_invocation_req_sent", _INVOKE[:2], "invocation requests sent"),
            received=self._counter(
                "dapr_runtime_service_invocation_req_recv", ("app_id", "src_app_id"), "invocation requests received"
            ),
            answered=self._counter(
                "dapr_runtime_service_invocation_res_recv", _INVOKE, "invocation responses received"
            ),
            latency=Histogram(
                "dapr_runtime_service_invocation_res_recv_latency_ms",
                "The remote service invocation round trip latency in milliseconds.",
                _INVOKE,
                buckets=LATENCY_BUCKETS_MS,
                registry=self.registry,
            ),
        )

    def _counter(self, name: str, labels: tuple[str, ...], what: str) -> Counter:
        return Counter(name, f"The number of {what}.", labels, registry=self.registry)

    def _family(self, count_name: str, latency_name: str, labels: tuple[str, ...]) -> Family:
        counter = Counter(count_name + "_count", f"Operations counted ({count_name}).", labels, registry=self.registry)
        histogram = Histogram(
            latency_name,
            f"Latency in milliseconds ({latency_name}).",
            labels,
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        return Family(counter, histogram)

    def component_family(self, block: str) -> Family:
        """The count and latency family of a building block's component operations, made on first use."""
        family = self._component_families.get(block)
        if family is None:
            prefix, label = COMPONENT_FAMILIES[block]
            labels = ("app_id", "component", label, "success")
            family = self._component_families[block] = self._family(prefix, prefix + "_latencies", labels)
        return family

    def instrument(self, components: ComponentSet) -> None:
        """Count and time every operation of ``components`` (see :mod:`layotto.server.metrics_ops`)."""
        instrument_components(components, self.component_family, self.app_id)

    def delivery_outcome(self, pubsub: str, topic: str, outcome: str) -> None:
        """Counts one delivery attempt (a :class:`~layotto.server.runtime.delivery.DeliveryObserver`)."""
        self.pubsub_ingress.labels(self.app_id, pubsub, topic, outcome).inc()

    def record_rpc(self, method: str, status: str, started: float) -> None:
        """Counts one finished call of ``method`` that began at ``started`` (time.perf_counter())."""
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        children = self._rpc_children.get((method, status))
        if children is None:
            if method not in self._methods and len(self._methods) >= MAX_METHOD_LABELS:
                method = OTHER_METHOD
            children = self._rpc_children.get((method, status)) or self._children(method, status)
        children[0].inc()
        children[1].observe(elapsed_ms)

    def _children(self, method: str, status: str) -> tuple[Any, Any]:
        """The series of one method and status, made once (labels() takes a lock and builds a key)."""
        self._methods.add(method)
        labels = (self.app_id, method, status)
        children = (self.completed_rpcs.labels(*labels), self.server_latency.labels(*labels))
        self._rpc_children[(method, status)] = children
        return children

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    async def serve(self, request: web.BaseRequest) -> web.Response:
        """The ``/metrics`` endpoint."""
        return web.Response(body=self.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


class RpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Counts every call, unary or streaming, by method and final status, with its latency.

    Installed first, so that it also counts the calls the inner interceptors refuse (a missing API
    token, a runtime shutting down)."""

    def __init__(self, metrics: RuntimeMetrics) -> None:
        self._metrics = metrics
        self._wrapped = WrapperCache()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return self._wrapped.get(method, handler, lambda inner: self._wrap(method, inner))

    def _wrap(self, method: str, handler: Any) -> Any:
        codecs = (handler.request_deserializer, handler.response_serializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(self._measured(method, handler.unary_unary), *codecs)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(self._measured(method, handler.stream_unary), *codecs)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(self._measured_stream(method, handler.unary_stream), *codecs)
        return grpc.stream_stream_rpc_method_handler(self._measured_stream(method, handler.stream_stream), *codecs)

    def _measured(self, method: str, behavior: Callable[[Any, Any], Awaitable[Any]]) -> Callable[[Any, Any], Any]:
        record = self._metrics.record_rpc

        async def measured(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            try:
                answer = await behavior(request, context)
            except BaseException as error:
                record(method, status_name(context, error), started)
                raise
            record(method, status_name(context, None), started)
            return answer

        return measured

    def _measured_stream(self, method: str, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        if not inspect.isasyncgenfunction(behavior):  # writes with context.write(): a coroutine
            return self._measured(method, behavior)
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

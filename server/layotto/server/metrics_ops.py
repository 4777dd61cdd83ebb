"""The metrics of what the runtime does besides serving gRPC calls (see :mod:`layotto.server.metrics`).

* component operations: every call of a configured component's operation (the operations
  resiliency guards: state ``get``/``set``/``delete``/..., pub/sub ``publish``, bindings
  ``invoke``, lock ``try_lock``/``unlock``, ...) counted and timed by component, operation (for a
  publish: the topic) and ``success`` (``true``, or ``false`` when it raised), in Dapr's
  ``dapr_component_<block>_count`` / ``..._latencies`` families (``layotto_component_*`` for
  building blocks Dapr has none for: lock, sequencer);
* the HTTP API: ``dapr_http_server_request_count`` and ``dapr_http_server_latency`` by HTTP
  method, route template (``/v1.0/state/{store}``, never a raw path) and status;
* service invocation: ``dapr_runtime_service_invocation_req_sent_total`` by target app,
  ``..._res_recv_total`` and ``..._res_recv_latency_ms`` by target app and status, and
  ``..._req_recv_total`` by calling app (calls forwarded here by another sidecar).

Every label a client chooses (topics, binding operations, app ids, HTTP methods) goes through a
:class:`BoundedLabel`: past its limit of distinct values, further ones are counted as ``other``.
"""

from __future__ import annotations

import functools
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from layotto.proto.reasons import REASONS
from layotto.server.components.inflight import counted_parts
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import LayottoError, PassedOnError
from layotto.server.metrics_series import Series, SeriesFamily
from layotto.server.runtime.invocation import InvokeRequest, InvokeResponse
from layotto.server.runtime.resiliency.outbound import OUTBOUND_OPERATIONS

OTHER = "other"
#: building block -> (metric family prefix, the label after ``component``)
COMPONENT_FAMILIES: dict[str, tuple[str, str]] = {
    "state": ("dapr_component_state", "operation"),
    "pubsub": ("dapr_component_pubsub_egress", "topic"),
    "bindings": ("dapr_component_output_binding", "operation"),
    "lock": ("layotto_component_lock", "operation"),
    "secret_store": ("dapr_component_secret", "operation"),
    "config_store": ("dapr_component_configuration", "operation"),
    "sequencer": ("layotto_component_sequencer", "operation"),
    "crypto": ("dapr_component_crypto", "operation"),
}
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
#: the component whose measured operation is under way in this task: a component calling its own
#: operation (a bulk_get made of gets) is counted once, by the outer call
_INSIDE: ContextVar[object] = ContextVar("layotto_metrics_inside", default=None)


class BoundedLabel:
    """A label's values, at most ``limit`` distinct ones; any further value is :data:`OTHER`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


def _label_of(block: str, bounded: BoundedLabel, operation: str) -> Callable[[tuple[Any, ...]], str] | None:
    """How the label after ``component`` is read from an operation's arguments; None: it is ``operation``."""
    if block == "pubsub":  # publish(topic, data, metadata)
        return lambda args: bounded(str(args[0])) if args else OTHER
    if block == "bindings":  # invoke(BindingRequest): the binding's operation
        return lambda args: bounded(str(getattr(args[0], "operation", operation))) if args else operation
    return None


def instrument_components(components: ComponentSet, family: Callable[[str], SeriesFamily], app_id: str) -> None:
    """Wrap every configured component's operations (see the module); ``family(block)`` gives the
    block's :class:`SeriesFamily`. Done once, at start, after resiliency's policies are applied."""
    for block, component in components:
        instrument_component(block, component, family, app_id)


def instrument_component(block: str, component: Any, family: Callable[[str], SeriesFamily], app_id: str) -> None:
    """Wrap one component's operations (a component built by a live reconfiguration, too)."""
    if block not in COMPONENT_FAMILIES:
        return
    bounded = BoundedLabel(256)
    for operation in OUTBOUND_OPERATIONS.get(block, ()):
        method = getattr(component, operation, None)
        if method is not None:
            label = _label_of(block, bounded, operation)
            recorder = _Recorder(family(block), (app_id, component.name), operation, label)
            setattr(component, operation, _measured(component, method, recorder))


class _Recorder:
    """Records one operation's calls; the series of a fixed label are looked up once."""

    def __init__(
        self,
        family: SeriesFamily,
        prefix: tuple[str, str],
        operation: str,
        label: Callable[[tuple[Any, ...]], str] | None,
    ) -> None:
        self._family = family
        self._prefix = prefix
        self._label = label
        self.bounds = family.bounds
        self._fixed = {success: family.series((*prefix, operation, success)) for success in ("true", "false")}
        #: the series of a successful call, when the label is fixed (the measured wrapper updates it itself)
        self.fixed_ok = self._fixed["true"] if label is None else None
        self._series: dict[tuple[str, str], Series] = {}

    def __call__(self, args: tuple[Any, ...], success: str, elapsed_ms: float) -> None:
        if self._label is None:
            self._family.observe(self._fixed[success], elapsed_ms)
            return
        key = (self._label(args), success)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = self._family.series((*self._prefix, *key))
        self._family.observe(found, elapsed_ms)


def _measured(component: object, method: Callable[..., Awaitable[Any]], record: _Recorder) -> Callable[..., Any]:
    """``method`` counted and timed, an outer call only (a nested one goes straight through). When
    ``method`` is :func:`~layotto.server.components.inflight.track_calls`' wrapper, its in-flight count is
    kept here instead, with the same clock reads: one coroutine and two clock reads less per call."""
    parts = counted_parts(method)
    inner, counter = parts if parts is not None else (method, None)
    clock = time.monotonic  # the clock CallCounter keeps its last activity with
    ok, bounds = record.fixed_ok, record.bounds

    @functools.wraps(method, updated=())  # not the counted wrapper's __dict__: this one does more
    async def call(*args: Any, **kwargs: Any) -> Any:
        started = clock()
        if counter is not None:
            counter.enter_at(started)
        if _INSIDE.get() is component:  # a component calling its own operation: counted once, outside
            try:
                return await inner(*args, **kwargs)
            finally:
                if counter is not None:
                    counter.leave_at(clock())
        token = _INSIDE.set(component)
        try:
            answer = await inner(*args, **kwargs)
        except BaseException:
            ended = clock()
            if counter is not None:
                counter.leave_at(ended)
            _INSIDE.reset(token)
            record(args, "false", (ended - started) * 1000.0)
            raise
        ended = clock()
        if counter is not None:
            counter.leave_at(ended)
        _INSIDE.reset(token)
        elapsed_ms = (ended - started) * 1000.0
        if ok is None:
            record(args, "true", elapsed_ms)
        else:  # SeriesFamily.observe, inlined: this runs on every call of the operation
            ok.count += 1
            ok.total += elapsed_ms
            ok.buckets[bisect_left(bounds, elapsed_ms)] += 1
        return answer

    return call


def error_status(error: BaseException) -> str:
    """The gRPC status code name an error is answered with (``UNKNOWN`` for one the runtime does not know):
    an error passed on (an invoked app's, another runtime's) keeps the status it came with."""
    if isinstance(error, PassedOnError):
        return error.status
    if isinstance(error, LayottoError):
        reason = REASONS.get(error.reason)
        return reason.grpc if reason is not None else "UNKNOWN"
    return "DEADLINE_EXCEEDED" if isinstance(error, TimeoutError) else "UNKNOWN"


class InvocationMetrics:
    """Counts the invocations an :class:`~layotto.server.runtime.invocation.Invoker` makes and receives."""

    def __init__(self, app_id: str, sent: Any, received: Any, answers: SeriesFamily) -> None:
        self._app_id = app_id
        self._sent, self._received, self._answers = sent, received, answers
        self._apps = BoundedLabel(256)
        #: the counters' children by (counter, app label), looked up once (the labels are bounded)
        self._children: dict[tuple[Any, str], Any] = {}

    def _count(self, counter: Any, app: str) -> None:
        child = self._children.get((counter, app))
        if child is None:
            child = self._children[counter, app] = counter.labels(self._app_id, app)
        child.inc()

    async def measure(self, request: InvokeRequest, call: Callable[[], Awaitable[InvokeResponse]]) -> InvokeResponse:
        """``call()``'s answer, counted: a hop from another sidecar as received, anything else as sent."""
        if request.hop:
            self._count(self._received, self._apps(request.caller_app_id or "unknown"))
            return await call()
        target = self._apps(request.app_id)
        self._count(self._sent, target)
        started = time.perf_counter()
        status = "UNKNOWN"
        try:
            answer = await call()
            status = str(answer.status) if request.raw_http_status else "OK"
            return answer
        except BaseException as error:
            status = error_status(error)
            raise
        finally:
            self._answers.record((self._app_id, target, status), (time.perf_counter() - started) * 1000.0)


class HttpMetrics:
    """Counts and times the HTTP API's requests by method, route template and status."""

    def __init__(self, app_id: str, family: SeriesFamily) -> None:
        self._app_id = app_id
        self._family = family

    def record(self, method: str, route: str, status: int, elapsed_ms: float) -> None:
        """One answered request; ``route`` is its template (:data:`OTHER` when none matched)."""
        method = method if method in HTTP_METHODS else OTHER
        self._family.record((self._app_id, method, route, str(status)), elapsed_ms)

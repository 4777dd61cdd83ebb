"""The installed functions: install, update, uninstall, hot reload, and calls through instance pools.

A function is known by the id its module names through ``proxy_get_id``; the admin API's
``name`` may be that id or the name it was installed under. Each function holds ``instance_num``
instances; a call takes one (waiting, within its deadline, when all are busy), runs on a worker
thread, and gives it back, or a fresh one in its place when the call failed (a trapped instance's
memory is not trusted again). Module files are checked every ``watch_seconds``: a changed file
that compiles and vets replaces the function's instances; one that does not is logged and the
running version kept.

The runtime reaches functions through :class:`~layotto.server.runtime.invocation.Invoker`
(app id = function id), and functions reach the runtime through the :class:`RuntimeBridge`
methods here: the State layer and the Invoker, on the event loop, awaited from the worker thread.
Shared queues and metrics live here too (:mod:`~layotto.server.wasm.shared`): an enqueue calls the
registering function's ``proxy_on_queue_ready`` on one of its instances, and a tick period set with
``proxy_set_tick_period_milliseconds`` calls its ``proxy_on_tick`` (a tick finding every instance
busy is skipped). Both go away when the function is uninstalled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.trace import SpanKind

from layotto.server.errors import AppError, DeadlineExceeded
from layotto.server.wasm.engine import CallFailed, CompiledModule, FunctionInstance, ModuleRefused, WasmEngine
from layotto.server.wasm.host import Exchange
from layotto.server.wasm.settings import FunctionSpec, WasmSettings
from layotto.server.wasm.shared import FunctionMetrics, SharedQueues

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from layotto.server.runtime.invocation import Invoker, InvokeRequest, InvokeResponse
    from layotto.server.runtime.state import StateService
    from layotto.tracing import Tracing

log = logging.getLogger(__name__)
T = TypeVar("T")
MIN_TICK_MS = 10  # a shorter tick period set by a module is raised to this


class FunctionNotFound(Exception):
    """No installed function has this id or name."""


class AlreadyInstalled(Exception):
    """A function of this id or name is installed already."""


@dataclass
class Function:
    spec: FunctionSpec
    function_id: str
    compiled: CompiledModule
    stamp: tuple[int, int]  # (mtime ns, size) of the module file when it was loaded
    pool: asyncio.Queue[FunctionInstance] = field(default_factory=asyncio.Queue)
    size: int = 0  # instances in the pool or serving a call
    retired: bool = False  # replaced or uninstalled: instances coming back are closed
    uninstalled: bool = False  # its queues, metrics and ticker go (again when a call in flight ends)


class FunctionManager:
    """The functions of one runtime (thread-safe where the bridge is called from worker threads)."""

    def __init__(
        self,
        settings: WasmSettings,
        state: StateService | None,
        invoker: Invoker | None,
        tracing: Tracing | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """``tracing``: when set, a call is a span (SERVER from the trigger, continuing the request's
        trace headers; INTERNAL when invoked), its state reads and invocations child spans.
        ``registry``: the runtime's Prometheus registry, where the functions' metrics are exported."""
        self.settings = settings
        self._tracing = tracing
        self._state = state
        self._invoker = invoker
        self.engine = WasmEngine(wasi=settings.wasi)
        self._functions: dict[str, Function] = {}  # by function id
        self._loop = asyncio.get_running_loop()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=256, thread_name_prefix="wasm")
        self._shared: dict[str, tuple[bytes, int]] = {}
        self._shared_lock = threading.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._replacing: set[asyncio.Task[None]] = set()
        self._queues = SharedQueues(settings.queue_capacity)
        self._metrics = FunctionMetrics(settings.metrics_per_function)
        self._registry = registry
        if registry is not None:
            registry.register(self._metrics)
        self._tickers: dict[str, asyncio.Task[None]] = {}  # by install name

    async def start(self) -> None:
        """Install the configured functions (ModuleRefused, AlreadyInstalled) and start the file watch."""
        for spec in self.settings.functions:
            await self.install(spec)
        if self.settings.watch_seconds > 0:
            self._watcher = asyncio.create_task(self._watch(), name="wasm-watch")

    def ids(self) -> list[str]:
        return sorted(self._functions)

    def serves(self, app_id: str) -> bool:
        return app_id in self._functions

    def find(self, name: str) -> Function:
        """The function whose id, or install name, is ``name``; FunctionNotFound otherwise."""
        found = self._functions.get(name) or next((f for f in self._functions.values() if f.spec.name == name), None)
        if found is None:
            raise FunctionNotFound(f"no function {name!r} is installed (installed: {', '.join(self.ids()) or 'none'})")
        return found

    # install, update, uninstall, reload

    async def install(self, spec: FunctionSpec) -> str:
        """Load ``spec``'s module and start its instances; the function id. Raises ModuleRefused
        (one line naming the fault) and AlreadyInstalled."""
        if any(f.spec.name == spec.name for f in self._functions.values()):
            raise AlreadyInstalled(f"{spec.name!r} is already installed")
        try:
            function = await self._load(spec)
        except ModuleRefused:
            self._forget_unless_installed(spec.name)  # what its instances registered while starting
            raise
        if function.function_id in self._functions or any(f.spec.name == spec.name for f in self._functions.values()):
            self._retire(function)
            self._forget_unless_installed(spec.name)
            raise AlreadyInstalled(f"function id {function.function_id!r} is already installed")
        await self._grow(function, spec.instance_num - function.size)
        self._functions[function.function_id] = function
        log.info("wasm function %r installed from %s (%d instances)", function.function_id, spec.path, function.size)
        return function.function_id

    async def uninstall(self, name: str) -> str:
        """Remove the function (FunctionNotFound); calls in flight finish on their instances."""
        function = self.find(name)
        del self._functions[function.function_id]
        self._retire(function)
        function.uninstalled = True
        self._forget(function.spec.name)
        log.info("wasm function %r uninstalled", function.function_id)
        return function.function_id

    async def update(self, name: str, instance_num: int) -> None:
        """Set the function's pool to ``instance_num`` instances (FunctionNotFound)."""
        function = self.find(name)
        function.spec = replace(function.spec, instance_num=instance_num)
        if instance_num > function.size:
            await self._grow(function, instance_num - function.size)
        while function.size > instance_num:
            instance = await function.pool.get()
            function.size -= 1
            instance.close()

    async def reload(self, function: Function) -> None:
        """Replace ``function`` with its module file as it is now (ModuleRefused keeps the old one)."""
        fresh = await self._load(function.spec)
        if fresh.function_id != function.function_id and fresh.function_id in self._functions:
            raise AlreadyInstalled(f"its new id {fresh.function_id!r} is another installed function's")
        await self._grow(fresh, function.spec.instance_num - fresh.size)
        if self._functions.get(function.function_id) is function:
            del self._functions[function.function_id]
        self._functions[fresh.function_id] = fresh
        self._retire(function)
        log.info("wasm function %r reloaded from %s", fresh.function_id, function.spec.path)

    async def _load(self, spec: FunctionSpec) -> Function:
        path = Path(spec.path)
        try:
            data, stamp = await asyncio.to_thread(_read, path)
        except OSError as error:
            raise ModuleRefused(f"{spec.path}: cannot read the module: {error.strerror}") from None
        compiled = await self._in_thread(lambda: self.engine.compile(data, spec.path))
        probe = await self._in_thread(lambda: self._instance(compiled, spec))
        try:
            function_id = await self._in_thread(probe.function_id)
        except CallFailed as failure:
            probe.close()
            raise ModuleRefused(f"{spec.path}: {failure.message} in proxy_get_id") from None
        function = Function(spec, function_id, compiled, stamp)
        function.pool.put_nowait(probe)
        function.size = 1
        return function

    def _instance(self, compiled: CompiledModule, spec: FunctionSpec) -> FunctionInstance:
        """A started instance; ModuleRefused when starting it traps or runs out of fuel or time."""
        instance = FunctionInstance(self.engine, compiled, self, spec.limits(self.settings.limits), spec.name)
        try:
            instance.start_root(spec.root_context_id)
        except CallFailed as failure:
            instance.close()
            raise ModuleRefused(f"{spec.path}: cannot start an instance: {failure.message}") from None
        return instance

    async def _grow(self, function: Function, count: int) -> None:
        for _ in range(count):
            instance = await self._in_thread(lambda: self._instance(function.compiled, function.spec))
            function.pool.put_nowait(instance)
            function.size += 1

    async def _replace(self, function: Function) -> None:
        """A fresh instance for one that failed, unless the pool was shrunk or retired meanwhile."""
        if function.retired or function.size >= function.spec.instance_num:
            return
        try:
            await self._grow(function, 1)
        except ModuleRefused as error:  # the module started before: only a broken host would get here
            log.error("wasm function %r: no instance replaces a failed one: %s", function.function_id, error)

    def _retire(self, function: Function) -> None:
        function.retired = True
        while not function.pool.empty():
            function.pool.get_nowait().close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.watch_seconds)
            for function in list(self._functions.values()):
                try:
                    stamp = await asyncio.to_thread(_stamp, Path(function.spec.path))
                except OSError:
                    continue  # a file being replaced: looked at again next round
                if stamp == function.stamp or function.retired:
                    continue
                function.stamp = stamp
                try:
                    await self.reload(function)
                except (ModuleRefused, AlreadyInstalled) as error:
                    log.error("wasm function %r not reloaded: %s", function.function_id, error)

    # calls

    async def call(
        self, function_id: str, exchange: Exchange, trace_headers: Mapping[str, str] | None = None
    ) -> Exchange:
        """Serve ``exchange`` with function ``function_id``: FunctionNotFound, CallFailed.
        ``trace_headers``: the HTTP request's headers, lower-case (the trigger's call)."""
        function = self._functions.get(function_id)
        if function is None:
            raise FunctionNotFound(f"no function {function_id!r} is installed")
        kind = SpanKind.INTERNAL if trace_headers is None else SpanKind.SERVER
        attributes = {"faas.name": function_id, "faas.trigger": "http" if trace_headers is not None else "other"}
        with self._span(f"wasm {function_id}", kind, attributes, trace_headers):
            deadline = function.spec.limits(self.settings.limits).deadline_seconds
            try:
                instance = await asyncio.wait_for(function.pool.get(), deadline)
            except TimeoutError:
                raise CallFailed("busy", f"function {function_id!r}: no instance freed within {deadline:g} s") from None
            context = contextvars.copy_context()  # the call's span, for the host calls' spans
            future = self._loop.run_in_executor(self._executor, context.run, instance.serve, exchange)
            future.add_done_callback(lambda _: self._give_back(function, instance))
            await asyncio.shield(future)
        return exchange

    def _span(
        self,
        name: str,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: dict[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> contextlib.AbstractContextManager[Any]:
        if self._tracing is None:
            return contextlib.nullcontext()
        parent = self._tracing.propagator.extract(dict(headers)) if headers is not None else None
        return self._tracing.tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)

    def _give_back(self, function: Function, instance: FunctionInstance) -> None:
        if function.retired:
            instance.close()
            if function.uninstalled:
                self._forget_unless_installed(function.spec.name)  # what a call in flight registered meanwhile
            return
        if not instance.broken:
            function.pool.put_nowait(instance)
            return
        instance.close()
        function.size -= 1
        task = self._loop.create_task(self._replace(function), name="wasm-replace")
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def invoke(self, request: InvokeRequest, timeout: float | None) -> InvokeResponse:
        """Service invocation of a function (app id = function id): AppError when it fails."""
        from layotto.server.runtime.invocation import InvokeResponse

        headers = [(":method", request.verb if request.verb != "NONE" else "POST"), (":path", "/" + request.method)]
        exchange = Exchange(
            request_headers=[*headers, ("id", request.app_id), *request.headers],
            request_body=request.data or request.querystring.encode(),
        )
        try:
            await asyncio.wait_for(self.call(request.app_id, exchange), timeout)
        except CallFailed as failure:
            raise AppError(request.app_id, failure.message, status="INTERNAL", http_status=500) from None
        except TimeoutError:
            raise DeadlineExceeded(f"function {request.app_id!r}") from None
        content_type = next((v for k, v in exchange.response_headers if k.lower() == "content-type"), "")
        return InvokeResponse(data=exchange.response_body, content_type=content_type, status=exchange.status)

    # RuntimeBridge: called on worker threads

    def get_state(self, store_name: str, key: str, deadline: float) -> bytes:
        if self._state is None:
            raise DeadlineExceeded("the state layer (not started)")
        state = self._state

        async def read() -> bytes:
            entry = await state.get(store_name, key)
            return b"" if entry is None else entry.value

        with self._span(f"proxy_get_state {store_name}", attributes={"db.namespace": store_name}):
            return self._await(read(), deadline, f"state {store_name}/{key}")

    def invoke_service(self, app_id: str, method: str, data: bytes, deadline: float) -> bytes:
        from layotto.server.runtime.invocation import InvokeRequest

        if self._invoker is None:
            raise DeadlineExceeded("service invocation (not started)")
        request = InvokeRequest(app_id=app_id, method=method or "/", data=data)
        remaining = max(0.0, deadline - time.monotonic())
        with self._span(f"proxy_invoke_service {app_id}", attributes={"rpc.service": app_id}):
            response = self._await(self._invoker.invoke(request, remaining), deadline, f"app {app_id!r}")
        return response.data

    def _await(self, work: Awaitable[T], deadline: float, what: str) -> T:
        async def run() -> T:
            return await work

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise DeadlineExceeded(what) from None

    def get_shared(self, key: str) -> tuple[bytes, int] | None:
        with self._shared_lock:
            return self._shared.get(key)

    def set_shared(self, key: str, value: bytes, cas: int) -> bool:
        with self._shared_lock:
            current = self._shared.get(key, (b"", 0))[1]
            if cas and cas != current:
                return False
            self._shared[key] = (value, current + 1)
            return True

    @property
    def queues(self) -> SharedQueues:
        return self._queues

    @property
    def metrics(self) -> FunctionMetrics:
        return self._metrics

    def queue_ready(self, owner: str, token: int) -> None:
        self._loop.call_soon_threadsafe(self._background, self._root_call(owner, "proxy_on_queue_ready", token))

    def set_tick_period(self, function: str, milliseconds: int) -> None:
        self._loop.call_soon_threadsafe(self._set_ticker, function, milliseconds)

    # queue and tick callbacks, on the event loop

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    def _set_ticker(self, name: str, milliseconds: int) -> None:
        self._stop_ticker(name)
        if milliseconds > 0:
            period = max(milliseconds, MIN_TICK_MS) / 1000
            self._tickers[name] = asyncio.create_task(self._tick(name, period), name=f"wasm-tick {name}")

    def _forget_unless_installed(self, name: str) -> None:
        if not any(f.spec.name == name for f in self._functions.values()):
            self._forget(name)

    def _forget(self, name: str) -> None:
        self._stop_ticker(name)
        self._queues.drop(name)
        self._metrics.drop(name)

    def _stop_ticker(self, name: str) -> None:
        ticker = self._tickers.pop(name, None)
        if ticker is not None:
            ticker.cancel()

    async def _tick(self, name: str, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            await self._root_call(name, "proxy_on_tick", wait=False)

    async def _root_call(self, name: str, export: str, *args: int, wait: bool = True) -> None:
        """``export`` on the root context of one instance of function ``name`` (installed, or being
        installed: skipped meanwhile). ``wait``: for a free instance, within the call deadline."""
        function = next((f for f in self._functions.values() if f.spec.name == name), None)
        if function is None or not function.compiled.module_exports(export):
            return
        deadline = function.spec.limits(self.settings.limits).deadline_seconds
        try:
            instance = await asyncio.wait_for(function.pool.get(), deadline) if wait else function.pool.get_nowait()
        except (TimeoutError, asyncio.QueueEmpty):
            level = logging.WARNING if wait else logging.DEBUG  # a tick finding them busy: the next one comes
            log.log(level, "wasm function %r: %s skipped, every instance busy", function.function_id, export)
            return
        context = contextvars.copy_context()
        future = self._loop.run_in_executor(self._executor, context.run, instance.root_call, export, *args)
        future.add_done_callback(lambda _: self._give_back(function, instance))
        try:
            await asyncio.shield(future)
        except CallFailed as failure:
            log.warning("wasm function %r: %s failed: %s", function.function_id, export, failure.message)

    async def _in_thread(self, work: Callable[[], T]) -> T:
        return await self._loop.run_in_executor(self._executor, work)

    async def aclose(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        for name in list(self._tickers):
            self._stop_ticker(name)
        if self._registry is not None:
            self._registry.unregister(self._metrics)
        for function in list(self._functions.values()):
            self._retire(function)
        self._functions.clear()
        # calls in flight end within their deadline (the epoch ticker keeps running until they do)
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self.engine.close()


def _stamp(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_mtime_ns, stat.st_size


def _read(path: Path) -> tuple[bytes, tuple[int, int]]:
    return path.read_bytes(), _stamp(path)

"""The runtime process: components, the gRPC server, the actuator, and shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer

from layotto.server.actuator import Actuator
from layotto.server.api.flow_gate import FlowGate
from layotto.server.api.services import SERVED_SERVICES, SERVICE_NAMES, api_handlers
from layotto.server.api_token import ApiTokenGuard, app_token, runtime_token
from layotto.server.app_health import AppHealth
from layotto.server.appbindings import AppBindings, InputBindingsKeeper
from layotto.server.appchannel import AppSubscriptions
from layotto.server.appjobs import AppJobs
from layotto.server.components.base import ComponentContext, ConfigError, LocatedConfigError
from layotto.server.components.inflight import track_calls
from layotto.server.components.loader import ComponentSet, load_components
from layotto.server.components.nameresolution import NameResolver, create_resolver
from layotto.server.components.pluggable import register_pluggable, sockets_folder
from layotto.server.config import RuntimeConfig, check_listen_address, load, unix_path, with_dapr_components
from layotto.server.errors import LayottoError
from layotto.server.grpc_proxy import build_grpc_proxy
from layotto.server.hot_reload import ConfigWatcher, restart_keys
from layotto.server.http import DaprHttpApi
from layotto.server.http_app import HttpApp, HttpAppSubscriptions
from layotto.server.http_appbindings import HttpAppBindings
from layotto.server.http_appjobs import HttpAppJobs
from layotto.server.invoke_channels import build_invoker
from layotto.server.listeners import owner_only_umask, prepare_socket_path, remove_socket_file, set_socket_mode
from layotto.server.memory import MemoryTrimmer, keep_large_buffers
from layotto.server.plugins import ApiPlugins, PluginContext
from layotto.server.reflection import enable_reflection
from layotto.server.runtime.bindings import input_binding_names
from layotto.server.runtime.delivery import Topics
from layotto.server.runtime.invocation import Invoker
from layotto.server.runtime.reconfigure import Reconfigurer
from layotto.server.runtime.resiliency import Resiliency, guard_components
from layotto.server.runtime.scheduler import SchedulerLoop
from layotto.server.runtime.secret_scopes import SecretPolicy
from layotto.server.runtime.services import RuntimeServices, build_services
from layotto.server.shutdown_gate import ShutdownGate
from layotto.server.subscription_keeper import SubscriptionKeeper
from layotto.server.tls import ServerCertificates
from layotto.server.transport import add_services, build_server, refuse_native_tls

if TYPE_CHECKING:
    from layotto.server.metrics import RuntimeMetrics  # imported when metrics are on: prometheus-client
    from layotto.server.traffic.capture import TrafficCapture
    from layotto.server.traffic.settings import CaptureSettings
    from layotto.server.wasm.manager import FunctionManager  # imported when wasm is configured: wasmtime
    from layotto.server.wasm.trigger import WasmListeners
    from layotto.tracing import Tracing  # imported when tracing is configured: it loads OpenTelemetry's SDK

log = logging.getLogger(__name__)

VERSION = "0.1.0"


class Runtime:
    """One runtime instance. ``async with Runtime(config) as rt`` starts and stops it."""

    def __init__(self, config: RuntimeConfig, reread: Callable[[], RuntimeConfig] | None = None) -> None:
        """``reread``: how hot reload builds the configuration again (``layotto serve`` passes its
        own, flags included); by default the config file (``config.source``) with its manifests."""
        self.config = config
        self._reread = reread or (lambda: with_dapr_components(load(config.source)))
        self.reconfigurer: Reconfigurer | None = None  # live component changes, once started
        self._watcher: ConfigWatcher | None = None
        self._started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self._data_dir = Path(config.data_dir).expanduser()
        self.components = ComponentSet()
        self.grpc_port = 0
        self.http_port = 0
        self.grpc_transport = ""  # the transport serving gRPC once started: native or grpcio
        self._server: grpc.aio.Server | None = None
        self._health = HealthServicer()
        self._gate = ShutdownGate()  # refuses calls with UNAVAILABLE once shutdown begins
        self._actuator: Actuator | None = None
        self._http_api: DaprHttpApi | None = None
        self._stop_requested = asyncio.Event()
        self.shutdown_cause = ""  # who asked the runtime to stop (request_shutdown), "" until then
        self.topics = Topics()
        self.tracing: Tracing | None = None
        self.app_subscriptions: SubscriptionKeeper | None = None  # the app's, over gRPC or HTTP
        self.resolver: NameResolver | None = None
        self.invoker: Invoker | None = None
        self.resiliency: Resiliency | None = None  # the policies (and breakers) of apps and components
        self.services: RuntimeServices | None = None  # the runtime layer, once started
        self.app_bindings: InputBindingsKeeper[Any] | None = None
        self.scheduler_loop: SchedulerLoop | None = None
        self.app_jobs: AppJobs | HttpAppJobs | None = None  # delivers due jobs: the app's HTTP port or callback
        self.api_token = runtime_token(config.api_token)  # required of callers ("": none); DAPR_API_TOKEN
        self.metrics: RuntimeMetrics | None = None  # the Prometheus registry, when metrics are on
        self.traffic_capture: TrafficCapture | None = None  # the capture of received calls, when configured
        self.app_api_token = app_token()  # presented to the app on callbacks ("": none); APP_API_TOKEN
        self.functions: FunctionManager | None = None  # the WebAssembly functions, when wasm is configured
        self.wasm_listeners: WasmListeners | None = None
        self.certificates: ServerCertificates | None = None  # the listeners' TLS, when configured
        self._tls_watch: asyncio.Task[None] | None = None
        self._socket_files: list[str] = []  # unix: listeners' files, removed at stop
        self.api_plugins = ApiPlugins(config.api_plugins)  # the third-party services (api_plugins:)

    async def start(self) -> None:
        cfg = self.config
        self._started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        check_listen_address(cfg.grpc_address, "grpc_address")
        check_listen_address(cfg.http_address, "http_address")
        refuse_native_tls(cfg.grpc_transport, tls=cfg.tls is not None)
        if cfg.tls is not None:
            self.certificates = ServerCertificates(cfg.tls)
        declared = {
            block: {name: (c.type, c.metadata, c.secret_refs) for name, c in components.items()}
            for block, components in cfg.components.items()
        }
        context = ComponentContext(app_id=cfg.app_id, data_dir=self._data_dir)
        try:  # before the components: a bad name_resolution opens no backend connection
            resolver = create_resolver(cfg.name_resolution)
        except ConfigError as error:
            raise ConfigError(f"{cfg.source}: {error}") from None
        self.resolver = resolver
        if cfg.tracing.enabled:
            from layotto.tracing import Tracing

            self.tracing = Tracing(cfg.tracing, loop=asyncio.get_running_loop())
            self.tracing.trace_backends()
        await self._load_components(declared, context)
        self.resiliency = Resiliency(cfg.resiliency) if cfg.resiliency is not None else None
        if self.resiliency is not None:
            try:
                guard_components(self.components, self.resiliency)
            except ConfigError as error:
                await self.components.aclose()
                self.components = ComponentSet()
                raise ConfigError(f"{cfg.source}: {error}") from None
        for _, component in self.components:
            track_calls(component)  # after the resiliency guard: a retry's backoff counts as in flight
        self.reconfigurer = Reconfigurer(
            self.components,
            cfg.components,
            context,
            resiliency=self.resiliency,
            drain_seconds=cfg.shutdown_grace_seconds,
        )
        if cfg.metrics_enabled:
            from layotto.server.metrics import RuntimeMetrics

            self.metrics = RuntimeMetrics(cfg.app_id)
            self.metrics.instrument(self.components)  # after resiliency: one count per call, retries inside
            self.reconfigurer.instrument = self.metrics.instrument_component  # and what reloads build
            self.topics.observer = self.metrics
        self.invoker = build_invoker(
            cfg,
            resolver,
            self.tracing,
            api_token=self.api_token,
            app_api_token=self.app_api_token,
            resiliency=self.resiliency,
        )
        if self.invoker is not None and self.metrics is not None:
            self.invoker.metrics = self.metrics.invocation
        try:
            await self._start_servers()
            await self._register()
        except BaseException:
            await self.stop(grace=0)
            raise

    async def _load_components(self, declared: dict[str, dict[str, Any]], context: ComponentContext) -> None:
        """Build and initialise the declared components; a ConfigError names the file declaring
        the component: its Dapr manifest, else the runtime config."""
        cfg = self.config
        sources = {
            (block, name): c.source for block, named in cfg.components.items() for name, c in named.items() if c.source
        }
        try:
            await register_pluggable(declared, sockets_folder(cfg.pluggable_components_path))
            self.components = await load_components(declared, context, sources=sources)
        except LocatedConfigError:
            raise
        except ConfigError as error:
            raise ConfigError(f"{cfg.source}: {error}") from None

    async def _start_servers(self) -> None:
        cfg = self.config
        options = [
            ("grpc.max_receive_message_length", cfg.max_message_bytes),
            ("grpc.max_send_message_length", cfg.max_message_bytes),
            ("grpc.so_reuseport", 0),
            *cfg.grpc_server_options.items(),
        ]
        chosen = build_server(
            cfg.grpc_transport, options=options, interceptors=self._interceptors(), tls=self.certificates is not None
        )
        server, self.grpc_transport = chosen.server, chosen.transport
        self.services = build_services(
            self.components,
            app_id=cfg.app_id,
            version=VERSION,
            shutdown=self.request_shutdown,
            max_publish_bytes=cfg.max_publish_bytes,
            secret_policy=SecretPolicy(cfg.secret_scopes),
        )
        handlers = api_handlers(
            self.components,
            app_id=cfg.app_id,
            version=VERSION,
            shutdown=self.request_shutdown,
            topics=self.topics,
            max_publish_bytes=cfg.max_publish_bytes,
            secret_policy=SecretPolicy(cfg.secret_scopes),
            invoker=self.invoker,
            strip_trace=self.tracing is not None,
            services=self.services,
            max_response_bytes=cfg.max_message_bytes,
            reconfigurer=self.reconfigurer,
        )
        own = (*SERVED_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"])
        await self.api_plugins.start(
            PluginContext(cfg.app_id, self.components), [s.full_name for s in own], cfg.max_message_bytes
        )
        add_services(server, {**handlers, **self.api_plugins.handlers()})
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        enable_reflection(server, (*own, *self.api_plugins.descriptors()))
        if self.invoker is not None:  # last: it serves the methods nobody else does (with dapr-app-id)
            proxy = build_grpc_proxy(self.invoker, hop_token=cfg.invoke_token, strip_trace=self.tracing is not None)
            if proxy is not None:
                server.add_generic_rpc_handlers((proxy,))
        self.grpc_port = self._listen_grpc(server)
        self._server = server
        await server.start()
        self._actuator = Actuator(
            self.components,
            self._info,
            fallback=self._dapr_http_api(),
            api_token=self.api_token,
            metrics=self.metrics.serve if self.metrics is not None else None,
            http_metrics=self.metrics.http if self.metrics is not None else None,
        )
        await self._listen_http(self._actuator)
        if self.certificates is not None:
            self._tls_watch = asyncio.create_task(self.certificates.watch(), name="layotto-tls-reload")
        self._start_app_jobs()
        self.scheduler_loop = SchedulerLoop(self.components, self.services.delay_queue, self.services.jobs)
        self.scheduler_loop.start()
        if cfg.wasm is not None:
            await self._start_functions()
        self._actuator.serving = True
        for name in ("", *SERVICE_NAMES, *self.api_plugins.handlers()):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._start_app_subscriptions()
        self._start_app_bindings()
        if cfg.hot_reload:
            self._watcher = ConfigWatcher(cfg, self._reread, self.reconfigure)
            self._watcher.start()
        log.info(
            "layotto serving gRPC on %s and HTTP on %s%s (event loop: %s)",
            self.bound_address(cfg.grpc_address, self.grpc_port),
            self.bound_address(cfg.http_address, self.http_port),
            " over TLS" + (" (mutual)" if self.certificates.mutual else "") if self.certificates else "",
            type(asyncio.get_running_loop()).__module__.partition(".")[0],
        )

    def _dapr_http_api(self) -> DaprHttpApi:
        """Dapr's HTTP API over the runtime layer (kept to be closed at stop); with an HTTP app
        (``app_protocol: http``), the changes of configuration subscriptions are delivered to it."""
        cfg = self.config
        assert self.services is not None
        http_app = (
            HttpApp(f"http://127.0.0.1:{cfg.app_port}", self.app_api_token)
            if cfg.app_protocol == "http" and cfg.app_port
            else None
        )
        self._http_api = DaprHttpApi(self.services, cfg.max_message_bytes, self._serving, self.invoker, http_app)
        return self._http_api

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        """The gRPC server's interceptors, outermost first: metrics, traffic capture (both also see the
        calls the others refuse), the shutdown gate (done by the metrics interceptor when nothing sits
        between them), the API token, flow control, tracing."""
        cfg = self.config
        interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = [self._gate]
        if cfg.traffic_capture is not None and cfg.traffic_capture.enabled:
            interceptors.insert(0, self._start_capture(cfg.traffic_capture))
        if self.metrics is not None:
            from layotto.server.metrics import RpcMetrics

            if interceptors[0] is self._gate:  # next to each other: one interceptor does both (see RpcMetrics)
                interceptors[0] = RpcMetrics(self.metrics, gate=self._gate)
            else:
                interceptors.insert(0, RpcMetrics(self.metrics))
        if self.api_token:
            interceptors.append(ApiTokenGuard(self.api_token))
        if cfg.flow_control is not None and cfg.flow_control.methods:
            interceptors.append(FlowGate(cfg.flow_control))
        if self.tracing is not None:
            interceptors.append(self.tracing.server_interceptor())
        return interceptors

    def _start_capture(self, settings: CaptureSettings) -> TrafficCapture:
        from layotto.server.traffic.capture import TrafficCapture

        capture = TrafficCapture(settings)
        try:
            capture.start()
        except OSError as error:
            raise ConfigError(f"traffic_capture.dir: cannot write to {settings.dir}: {error.strerror}") from None
        self.traffic_capture = capture
        if self.metrics is not None:
            self.metrics.watch_capture(capture)
        return capture

    async def _start_functions(self) -> None:
        """Install the configured functions and open their trigger and admin listeners."""
        wasm = self.config.wasm
        assert wasm is not None and self.services is not None and self.invoker is not None
        try:
            from layotto.server.wasm.engine import ModuleRefused
            from layotto.server.wasm.manager import AlreadyInstalled, FunctionManager
            from layotto.server.wasm.trigger import WasmListeners
        except ImportError as error:
            raise ConfigError(f"wasm: needs the wasm extra (pip install 'layotto-server[wasm]'): {error}") from None
        registry = self.metrics.registry if self.metrics is not None else None
        self.functions = FunctionManager(wasm, self.services.state, self.invoker, self.tracing, registry)
        self.invoker.functions = self.functions
        try:
            await self.functions.start()
        except (ModuleRefused, AlreadyInstalled) as error:
            raise ConfigError(f"wasm.functions: {error}") from None
        self.wasm_listeners = WasmListeners(self.functions, self.api_token)
        try:
            await self.wasm_listeners.start(wasm.address, wasm.admin_address)
        except OSError as error:
            raise ConfigError(
                f"wasm: cannot listen on {wasm.address} / {wasm.admin_address}: {error.strerror}"
            ) from None
        log.info(
            "wasm functions %s on port %d (admin port %d)",
            self.functions.ids(),
            self.wasm_listeners.port,
            self.wasm_listeners.admin_port,
        )

    @staticmethod
    def bound_address(address: str, port: int) -> str:
        """``address`` with the port the listener bound (a ``unix:`` address as it is)."""
        if unix_path(address) is not None:
            return address
        return f"{address.rpartition(':')[0]}:{port}"

    def _listen_grpc(self, server: grpc.aio.Server) -> int:
        """Bind the gRPC address (TLS when configured); the bound port (1 for a Unix socket)."""
        address = self.config.grpc_address
        path = unix_path(address)
        try:
            if path is None:
                return self._add_port(server, address)
            prepare_socket_path(path, "grpc_address")
            with owner_only_umask():
                port = self._add_port(server, address)
            self._socket_files.append(path)
            set_socket_mode(path, self.config.unix_socket_mode)
            return port
        except RuntimeError as error:
            raise ConfigError(f"grpc_address: cannot listen on {address}: {error}") from None

    def _add_port(self, server: grpc.aio.Server, address: str) -> int:
        if self.certificates is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, self.certificates.grpc_credentials())

    async def _listen_http(self, actuator: Actuator) -> None:
        """Bind the HTTP address (TLS when configured): HOST:PORT, or unix:PATH."""
        address = self.config.http_address
        path = unix_path(address)
        ssl_context = self.certificates.ssl_context if self.certificates is not None else None
        try:
            if path is None:
                host, port = address.rpartition(":")[0].strip("[]"), int(address.rpartition(":")[2])
                await actuator.start(host, port, ssl_context=ssl_context)
                self.http_port = actuator.port
                return
            prepare_socket_path(path, "http_address")
            with owner_only_umask():
                await actuator.start_unix(path, ssl_context=ssl_context)
            self._socket_files.append(path)
            set_socket_mode(path, self.config.unix_socket_mode)
        except OSError as error:
            raise ConfigError(f"http_address: cannot listen on {address}: {error.strerror}") from None

    async def _register(self) -> None:
        """Announce this runtime to name resolution (a registry), at its bound gRPC address."""
        assert self.resolver is not None
        address = self.config.grpc_address
        if unix_path(address) is None:
            host = address.rpartition(":")[0].strip("[]")
            address = f"{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{self.grpc_port}"
        try:
            await self.resolver.start(self.config.app_id, address)
        except LayottoError as error:
            raise ConfigError(f"{self.config.source}: name_resolution: {error.message}") from None

    def _start_app_jobs(self) -> None:
        """Due jobs go to the app's HTTP port (``app_protocol: http``) or its AppCallback server."""
        cfg = self.config
        if cfg.app_protocol == "http" and cfg.app_port:
            self.app_jobs = HttpAppJobs(cfg.app_port, app_id=cfg.app_id, app_api_token=self.app_api_token)
        elif cfg.app_callback_address:
            self.app_jobs = AppJobs(
                cfg.app_callback_address, app_id=cfg.app_id, tracing=self.tracing, app_api_token=self.app_api_token
            )
        if self.app_jobs is not None:
            assert self.services is not None, "services are built before the servers start"
            self.services.jobs.deliver_to(self.app_jobs.deliver)

    def _serving(self) -> bool:
        """Whether calls may start (False once stop() began)."""
        return self._actuator is not None and self._actuator.serving

    def _start_app_subscriptions(self) -> None:
        """The app's subscriptions: over HTTP (``app_protocol: http``) or its AppCallback server."""
        cfg = self.config
        keeper: SubscriptionKeeper
        if cfg.app_protocol == "http" and cfg.app_port:
            keeper = HttpAppSubscriptions(
                self.components,
                self.topics,
                app_id=cfg.app_id,
                app_port=cfg.app_port,
                refresh_seconds=cfg.subscriptions_refresh_seconds,
                declared=cfg.subscriptions,
                app_api_token=self.app_api_token,
                resiliency=self.resiliency,
            )
        elif cfg.app_callback_address:
            keeper = AppSubscriptions(
                self.components,
                self.topics,
                app_id=cfg.app_id,
                address=cfg.app_callback_address,
                protocol=cfg.app_callback_protocol,
                refresh_seconds=cfg.subscriptions_refresh_seconds,
                tracing=self.tracing,
                app_api_token=self.app_api_token,
                declared=cfg.subscriptions,
                resiliency=self.resiliency,
            )
        else:
            return
        if cfg.app_health.enabled:
            path = cfg.app_health.path
            health = keeper.health = AppHealth(lambda: keeper.probe(path), cfg.app_health, keeper.address)
            if self.services is not None:
                self.services.metadata.app_health_source = lambda: health.status
        if self.services is not None:
            self.services.metadata.subscription_source = keeper.active
        self.app_subscriptions = keeper
        keeper.start()

    def _start_app_bindings(self) -> None:
        """Input bindings go to the app's HTTP port (``app_protocol: http``) or its AppCallback server."""
        cfg = self.config
        if not input_binding_names(self.components):
            return
        assert self.services is not None
        if cfg.app_protocol == "http" and cfg.app_port:
            self.app_bindings = HttpAppBindings(
                self.components,
                self.services.state,
                app_id=cfg.app_id,
                app_port=cfg.app_port,
                refresh_seconds=cfg.subscriptions_refresh_seconds,
                app_api_token=self.app_api_token,
                resiliency=self.resiliency,
            )
        elif cfg.app_callback_address:
            self.app_bindings = AppBindings(
                self.components,
                self.services.state,
                address=cfg.app_callback_address,
                refresh_seconds=cfg.subscriptions_refresh_seconds,
                tracing=self.tracing,
                app_api_token=self.app_api_token,
                resiliency=self.resiliency,
            )
        else:
            return
        self.app_bindings.start()

    async def reconfigure(self, new: RuntimeConfig) -> None:
        """Apply a new configuration's component changes live (hot reload): added, removed and
        changed components are swapped in while the old instances drain. Other keys are logged as
        needing a restart. Raises ConfigError (the running set unchanged) when a new component
        cannot be built."""
        assert self.reconfigurer is not None
        ignored = restart_keys(self.config, new)
        declared = {
            block: {n: (c.type, c.metadata, c.secret_refs) for n, c in named.items()}
            for block, named in new.components.items()
        }
        # pluggable components whose sockets appeared since the start (their types are not registered yet)
        await register_pluggable(declared, sockets_folder(self.config.pluggable_components_path))
        outcome = await self.reconfigurer.apply_components(new.components)
        if ignored or outcome.needs_restart:
            needs = [*ignored, *(f"{c} ({why})" for c, why in outcome.needs_restart.items())]
            log.warning("hot reload: %s changed: needs a restart, ignored until then", "; ".join(needs))
        if outcome.added or outcome.removed or outcome.changed:
            log.info(
                "hot reload applied: added %s, removed %s, changed %s",
                ", ".join(outcome.added) or "none",
                ", ".join(outcome.removed) or "none",
                ", ".join(outcome.changed) or "none",
            )

    def _info(self) -> dict[str, Any]:
        return {
            "app": {
                "name": "Layotto for Python",
                "version": VERSION,
                "app_id": self.config.app_id,
                "started": self._started,
            },
            "components": {
                f"{b}.{c.name}": {"type": c.spec.type, "features": sorted(f.value for f in c.spec.features)}
                for b, c in self.components
            },
        }

    def request_shutdown(self, cause: str = "requested") -> None:
        """Ask the runtime to stop (``serve`` then stops it); ``cause`` says who asked ("SIGTERM",
        "the Dapr Shutdown RPC"): the first is kept in ``shutdown_cause``, which ``serve`` logs."""
        if not self._stop_requested.is_set():
            self.shutdown_cause = cause
        self._stop_requested.set()

    async def wait_for_shutdown(self) -> None:
        await self._stop_requested.wait()

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls (UNAVAILABLE), let in-flight calls finish (up to grace), close components."""
        grace = self.config.shutdown_grace_seconds if grace is None else grace
        deadline = asyncio.get_running_loop().time() + grace
        self._gate.draining = True
        if self._actuator is not None:
            self._actuator.serving = False
        await self._health.enter_graceful_shutdown()
        await self._stop_background()
        if self._server is not None:
            await self._gate.drain(max(0.0, deadline - asyncio.get_running_loop().time()))
            await self._server.stop(max(0.0, deadline - asyncio.get_running_loop().time()))
            self._server = None
        if self.services is not None:  # after the server's stop: streams open at the grace's end get UNAVAILABLE
            self.services.configuration.close()
        await self.api_plugins.stop()
        if self.traffic_capture is not None:  # after the server: the last calls' records are written
            await self.traffic_capture.aclose()
            self.traffic_capture = None
        if self.wasm_listeners is not None:
            await self.wasm_listeners.stop()
            self.wasm_listeners = None
        if self.functions is not None:
            await self.functions.aclose()
            self.functions = None
        if self.invoker is not None:
            await self.invoker.aclose()
            self.invoker = None
        if self.reconfigurer is not None:
            await self.reconfigurer.aclose()  # the replaced instances still draining
        await self.components.aclose()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)  # flushes what is still buffered
            self.tracing = None
        await self._close_http_and_files()

    async def _stop_background(self) -> None:
        """Stop what calls out on its own: hot reload, scheduler, app subscriptions, registration, input bindings."""
        if self._watcher is not None:
            await self._watcher.aclose()
            self._watcher = None
        if self.scheduler_loop is not None:
            await self.scheduler_loop.aclose()
            self.scheduler_loop = None
        if self.app_jobs is not None:
            await self.app_jobs.aclose()
            self.app_jobs = None
        if self.app_subscriptions is not None:
            await self.app_subscriptions.aclose()
            self.app_subscriptions = None
        if self._http_api is not None:
            await self._http_api.aclose()
        if self.resolver is not None:  # withdrawn first: callers stop choosing this runtime
            await self.resolver.aclose()
            self.resolver = None
        if self.app_bindings is not None:
            await self.app_bindings.aclose()
            self.app_bindings = None

    async def _close_http_and_files(self) -> None:
        """Close the HTTP listener, the certificate watch and the listeners' socket files."""
        if self._actuator is not None:
            await self._actuator.stop()
            self._actuator = None
        if self._tls_watch is not None:
            self._tls_watch.cancel()
            self._tls_watch = None
        for path in self._socket_files:
            remove_socket_file(path)
        self._socket_files.clear()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve(config: RuntimeConfig, reread: Callable[[], RuntimeConfig] | None = None) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully (``reread``: see :class:`Runtime`)."""
    if not keep_large_buffers():
        log.debug("no mallopt in this C library: large buffers are mapped in and out by the allocator")
    runtime = Runtime(config, reread)
    trimmer = MemoryTrimmer()  # memory read for refused large requests goes back to the system
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.request_shutdown, sig.name)
    await runtime.start()
    # what start-up built (modules, components, config) lives as long as the process: moved out of
    # the collector's generations, a full collection no longer walks it (requests that keep objects
    # alive for a while, such as spans waiting for export, trigger full collections). Start-up's
    # garbage is collected first; retiring a replaced component unfreezes (runtime/reconfigure.py).
    gc.collect()
    gc.freeze()
    trimmer.start()
    try:
        await runtime.wait_for_shutdown()
        log.info("shutting down (requested by %s): draining in-flight calls", runtime.shutdown_cause)
    finally:
        await trimmer.stop()
        await runtime.stop()
    log.info("layotto stopped")

"""API plugins: a third-party package adds its own gRPC service to the runtime (Layotto's "add your own API").

A plugin is a class implementing :class:`ApiPlugin`, published by its package under the entry point
group ``layotto.api_plugins``::

    [project.entry-points."layotto.api_plugins"]
    greeting = "layotto_greeting.plugin:GreetingPlugin"

and switched on by the config (``api_plugins: {greeting: {store: demo}}``: name -> string metadata).
The runtime builds each named plugin with its metadata, gives it the components (:class:`PluginContext`)
in ``start()``, serves the services it returns on the runtime's gRPC server (both transports; the
interceptors of the runtime, such as the API token and metrics, apply), lists them on reflection and
health, and calls ``stop()`` after the server stopped and before the components close.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from google.protobuf import descriptor

from layotto.server.api.adapter import Routes, RoutingError, method_handlers
from layotto.server.components.base import Component, ConfigError
from layotto.server.components.loader import ComponentSet
from layotto.server.transport import MethodHandlers

log = logging.getLogger(__name__)

__all__ = ["ApiPlugin", "ApiPlugins", "PluginContext", "PluginService", "Routes", "load_plugin"]

GROUP = "layotto.api_plugins"


@dataclass(frozen=True)
class PluginService:
    """One gRPC service a plugin serves.

    ``descriptor``: the service's protobuf descriptor (from the plugin's ``*_pb2`` module), which
    names the service and lets reflection list it. ``routes``: RPC name -> ``async def rpc(request,
    context)`` returning the response message (an async generator for a server-streaming RPC), as
    the runtime's own services are written: the request arrives decoded (undecodable bytes answer
    INVALID_ARGUMENT), a :class:`~layotto.server.errors.LayottoError` raised by a component becomes
    its gRPC status, anything else INTERNAL (logged), and an RPC left out answers UNIMPLEMENTED.
    """

    descriptor: descriptor.ServiceDescriptor
    routes: Routes

    @property
    def name(self) -> str:
        """The service's full name (``package.Service``)."""
        return self.descriptor.full_name


@dataclass(frozen=True)
class PluginContext:
    """What the runtime gives a plugin at start: its app id and its components."""

    app_id: str
    components: ComponentSet

    def component(self, block: str, name: str) -> Component:
        """The component ``name`` of building block ``block`` (``state``, ``pubsub``, ``lock``, ...).

        Raises ComponentNotFound / NoComponentsConfigured (LayottoError) as the API does for a bad name.
        """
        return self.components.find(block, name, "name")

    def names(self, block: str) -> list[str]:
        """The configured component names of ``block``, sorted."""
        return self.components.names(block)


class ApiPlugin(ABC):
    """A plugin's class: built as ``cls(name, metadata)``; ``metadata`` is its config mapping (strings)."""

    def __init__(self, name: str, metadata: Mapping[str, str]) -> None:
        self.name = name
        self.metadata = metadata

    @abstractmethod
    def services(self) -> Sequence[PluginService]:
        """The services to serve; asked once, after :meth:`start`."""

    async def start(self, context: PluginContext) -> None:
        """Called before the server starts, once the components are ready. Raise ConfigError to refuse
        the config (the runtime then stops with that line)."""

    async def stop(self) -> None:
        """Called once at shutdown, after the server stopped and before the components close."""


def load_plugin(name: str, metadata: Mapping[str, str]) -> ApiPlugin:
    """Build the plugin published as ``name`` in :data:`GROUP`.

    Raises ConfigError naming ``api_plugins.<name>`` when no installed package publishes it, when
    its entry point cannot be imported, or when it does not name an :class:`ApiPlugin` subclass.
    """
    where = f"api_plugins.{name}"
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    ep = found.get(name)
    if ep is None:
        installed = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"{where}: no installed package publishes API plugin {name!r} (installed: {installed})")
    try:
        loaded: Any = ep.load()
    except Exception as error:  # a broken plugin fails the config that names it
        log.debug("cannot load API plugin %s from %s", name, ep.value, exc_info=True)
        raise ConfigError(f"{where}: cannot be loaded from {ep.value}: {type(error).__name__}: {error}") from None
    if not (isinstance(loaded, type) and issubclass(loaded, ApiPlugin)):
        raise ConfigError(f"{where}: {ep.value} is not an ApiPlugin subclass")
    return loaded(name, metadata)


class ApiPlugins:
    """The configured plugins of one runtime: loaded, started and stopped together."""

    def __init__(self, configured: Mapping[str, Mapping[str, str]]) -> None:
        self._configured = configured
        self._started: list[ApiPlugin] = []
        self.services: list[PluginService] = []
        self._handlers: dict[str, MethodHandlers] = {}

    async def start(self, context: PluginContext, taken: Sequence[str], max_response_bytes: int | None) -> None:
        """Load and start every configured plugin and build its services' handlers.

        ``taken``: the service names the runtime serves itself; ``max_response_bytes``: the largest
        response sent (RESOURCE_EXHAUSTED beyond). Raises ConfigError naming the plugin for a plugin
        that cannot be loaded, refuses to start, serves a name already served, or whose routes do
        not fit its service.
        """
        served = set(taken)
        for name, metadata in self._configured.items():
            plugin = load_plugin(name, metadata)
            try:
                await plugin.start(context)
            except ConfigError as error:
                raise ConfigError(f"api_plugins.{name}: {error}") from None
            self._started.append(plugin)
            for service in plugin.services():
                if service.name in served:
                    raise ConfigError(f"api_plugins.{name}: service {service.name} is already served")
                served.add(service.name)
                try:
                    self._handlers[service.name] = method_handlers(
                        service.descriptor, service.routes, max_response_bytes
                    )
                except RoutingError as error:
                    raise ConfigError(f"api_plugins.{name}: {error}") from None
                self.services.append(service)
            log.info("API plugin %r serves %s", name, ", ".join(s.name for s in plugin.services()) or "nothing")

    def handlers(self) -> dict[str, MethodHandlers]:
        """Service full name -> its handlers, as :func:`layotto.server.transport.add_services` takes them."""
        return dict(self._handlers)

    def descriptors(self) -> tuple[descriptor.ServiceDescriptor, ...]:
        return tuple(service.descriptor for service in self.services)

    async def stop(self) -> None:
        """Stop the started plugins in reverse order; a failing stop is logged, the others still stop."""
        while self._started:
            plugin = self._started.pop()
            try:
                await plugin.stop()
            except Exception:
                log.exception("stopping API plugin %r failed", plugin.name)
        self.services.clear()
        self._handlers.clear()

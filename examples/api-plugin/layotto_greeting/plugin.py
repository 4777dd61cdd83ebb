"""The greeting API plugin: ``layotto.example.greeting.v1.Greeter`` served by the runtime.

Config (the runtime's YAML)::

    state:
      greetings: {type: in-memory}
    api_plugins:
      greeting: {store: greetings}

``store`` names the state store the greetings are kept in (key ``greeting:<name>``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from layotto.server.components.base import ConfigError
from layotto.server.components.state import SetRequest, StateStore
from layotto.server.errors import InvalidArgument
from layotto.server.plugins import ApiPlugin, PluginContext, PluginService, Routes
from layotto_greeting import greeting_pb2

DEFAULT_GREETING = "Hello"


class GreetingPlugin(ApiPlugin):
    """Greets by name with the greeting stored for that name in a state store."""

    store: StateStore

    async def start(self, context: PluginContext) -> None:
        store_name = self.metadata.get("store", "")
        if store_name not in context.names("state"):
            configured = ", ".join(context.names("state")) or "none"
            raise ConfigError(f"store: no state store named {store_name!r} (configured: {configured})")
        store = context.component("state", store_name)
        assert isinstance(store, StateStore)
        self.store = store

    def services(self) -> Sequence[PluginService]:
        routes: Routes = {"SetGreeting": self.set_greeting, "Greet": self.greet}
        return [PluginService(greeting_pb2.DESCRIPTOR.services_by_name["Greeter"], routes)]

    async def set_greeting(self, request: greeting_pb2.SetGreetingRequest, context: Any) -> Any:
        name = _required(request.name, "name")
        greeting = _required(request.greeting, "greeting")
        await self.store.set(SetRequest(key=f"greeting:{name}", value=greeting.encode()))
        return greeting_pb2.SetGreetingResponse()

    async def greet(self, request: greeting_pb2.GreetRequest, context: Any) -> Any:
        name = _required(request.name, "name")
        entry = await self.store.get(f"greeting:{name}")
        greeting = entry.value.decode() if entry is not None else DEFAULT_GREETING
        return greeting_pb2.GreetResponse(message=f"{greeting}, {name}!", stored=entry is not None)


def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "must not be empty")
    return value

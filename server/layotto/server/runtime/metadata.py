"""What the runtime says about itself (Dapr's metadata API), shared by every front end: its id,
version, components, and the attributes apps set; and the shutdown request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.subscriptions import TopicSubscription
from layotto.server.runtime.validation import require_size

RUNTIME_NAME = "layotto-python"
#: bounds of what SetMetadata keeps (docs/limits.md): a name, a value, how many, all together
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 64 * 1024
MAX_ATTRIBUTES = 256
MAX_ATTRIBUTES_BYTES = 1024 * 1024
#: Dapr's name of a building block, where it differs from this runtime's config section
DAPR_TYPE_PREFIX = {"secret_store": "secretstores", "config_store": "configuration"}


#: the extended metadata key reporting the app's health when app health checks are on
APP_HEALTH_KEY = "appHealth"
OWN_KEYS = ("runtime", "runtimeVersion", APP_HEALTH_KEY)


@dataclass(frozen=True)
class AppSubscription:
    """One subscription delivered to the app; ``kind``: DECLARATIVE (a manifest) or PROGRAMMATIC."""

    subscription: TopicSubscription
    kind: str


@dataclass(frozen=True)
class RegisteredComponent:
    """A component as Dapr reports it: ``type`` is ``<block>.<component type>`` (``state.redis``)."""

    name: str
    type: str
    version: str
    capabilities: list[str]


class MetadataService:
    """One per runtime: the attributes set over gRPC and over HTTP are the same ones."""

    def __init__(self, app_id: str, version: str, components: ComponentSet, shutdown: Callable[[str], None]) -> None:
        self.app_id = app_id
        self.version = version
        self._components = components
        self._shutdown = shutdown
        self._attributes: dict[str, str] = {}  # what apps set, for as long as the runtime runs
        #: set by the runtime once it keeps the app subscribed: the subscriptions delivered to the app
        self.subscription_source: Callable[[], list[AppSubscription]] | None = None
        #: set when app health checks are on: healthy, unhealthy or unknown
        self.app_health_source: Callable[[], str] | None = None

    def subscriptions(self) -> list[AppSubscription]:
        """The subscriptions delivered to the app (its listed and declared ones, once subscribed)."""
        return self.subscription_source() if self.subscription_source is not None else []

    def components(self) -> list[RegisteredComponent]:
        return [
            RegisteredComponent(
                name=component.name,
                type=f"{DAPR_TYPE_PREFIX.get(block, block)}.{component.spec.type}",
                version=component.spec.version,
                capabilities=sorted(f.value for f in component.spec.features),
            )
            for block, component in self._components
        ]

    def extended(self) -> dict[str, str]:
        """The attributes apps set, and the runtime's own ``runtime``, ``runtimeVersion`` and (with app
        health checks on) ``appHealth``."""
        own = {"runtime": RUNTIME_NAME, "runtimeVersion": self.version}
        if self.app_health_source is not None:
            own[APP_HEALTH_KEY] = self.app_health_source()
        return {**self._attributes, **own}

    def set_attribute(self, key: str, value: str) -> None:
        """An attribute :meth:`extended` reports (the runtime's own keys stay its own).

        Raises InvalidArgument naming ``key`` or ``value`` (empty, reserved, over a limit).
        """
        if not key:
            raise InvalidArgument("key", "the attribute's name is empty")
        if key in OWN_KEYS:
            raise InvalidArgument("key", f"{key!r} is reported by the runtime itself")
        require_size(key, "key", MAX_ATTRIBUTE_KEY_BYTES, "an attribute's name")
        require_size(value, "value", MAX_ATTRIBUTE_VALUE_BYTES, "an attribute's value")
        self._check_room(key, value)
        self._attributes[key] = value

    def _check_room(self, key: str, value: str) -> None:
        """Refuse an attribute that would take the runtime past MAX_ATTRIBUTES or MAX_ATTRIBUTES_BYTES."""
        others = {k: v for k, v in self._attributes.items() if k != key}
        if len(others) >= MAX_ATTRIBUTES:
            raise InvalidArgument("key", f"the runtime already holds the most attributes it keeps ({MAX_ATTRIBUTES})")
        total = sum(len(k.encode()) + len(v.encode()) for k, v in others.items()) + len(key.encode())
        total += len(value.encode())
        if total > MAX_ATTRIBUTES_BYTES:
            raise InvalidArgument(
                "value", f"all attributes would take {total} bytes, over the {MAX_ATTRIBUTES_BYTES}-byte limit"
            )

    def shutdown(self, cause: str) -> None:
        """Ask the runtime to stop gracefully (it drains in-flight calls); ``cause`` says who
        asked, for the log ("the Dapr Shutdown RPC")."""
        self._shutdown(cause)

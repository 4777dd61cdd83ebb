"""Component registries, one per building block, fed by entry points.

A third-party package adds a component type with one line of its pyproject::

    [project.entry-points."layotto.components.state"]
    my-store = "my_package.store:MyStateStore"
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from layotto.server.components.base import Component, ComponentSpec, ConfigError

log = logging.getLogger(__name__)

#: config section name -> human name of the building block
BUILDING_BLOCKS: dict[str, str] = {
    "state": "state store",
    "hellos": "hello component",
    "lock": "lock store",
    "sequencer": "sequencer",
    "pubsub": "pubsub",
    "secret_store": "secret store",
    "config_store": "configuration store",
    "crypto": "key store",
    "bindings": "binding",
    "scheduler": "scheduler",
    "email": "email component",
    "sms": "SMS component",
    "phone": "phone call component",
    "file": "file store",
    "oss": "object store",
}


class Registry:
    """The component types of one building block.

    Types come from the entry points of the block's group (``layotto.components.<block>``)
    and from :meth:`register`. An entry point is loaded, importing its component's module and
    driver, only when its type is asked for (:meth:`get`, :meth:`spec`): listing the types
    imports nothing.
    """

    def __init__(self, block: str) -> None:
        self.block = block
        self.group = f"layotto.components.{block}"
        self._types: dict[str, type[Component]] = {}
        self._entry_points: dict[str, EntryPoint] | None = None

    def register(self, component: type[Component]) -> None:
        """Adds a component class under its spec's type name (it wins over an entry point of that name)."""
        self._types[component.spec.type] = component

    def unregister(self, type_name: str) -> None:
        """Removes a type added by :meth:`register` (a pluggable component whose socket is gone)."""
        self._types.pop(type_name, None)

    def _available(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            self._entry_points = {}
            for ep in entry_points(group=self.group):
                self._entry_points.setdefault(ep.name, ep)
        return self._entry_points

    def types(self) -> list[str]:
        """The type names of the block, without importing any component."""
        return sorted({*self._types, *self._available()})

    def spec(self, type_name: str) -> ComponentSpec:
        """The spec of a type (loads its component); ConfigError for an unknown or broken type."""
        return self.get(type_name, where=self.block).spec

    def get(self, type_name: str, where: str) -> type[Component]:
        """The component class of a type, loaded now if it was not yet.

        Raises ConfigError naming ``<where>.type`` for an unknown type, or for a type whose
        entry point cannot be loaded (a broken or missing plugin; logged with its traceback).
        """
        component = self._types.get(type_name)
        if component is not None:
            return component
        ep = self._available().get(type_name)
        if ep is None:
            kind = BUILDING_BLOCKS[self.block]
            raise ConfigError(f"{where}.type: unknown {kind} type {type_name!r} (available: {', '.join(self.types())})")
        try:
            loaded = ep.load()
        except Exception as error:  # a broken plugin fails the config that names it, not the runtime
            log.exception("cannot load component entry point %s from %s", ep.name, ep.value)
            raise ConfigError(f"{where}.type: {type_name!r} cannot be loaded from {ep.value}: {error}") from None
        if not (isinstance(loaded, type) and issubclass(loaded, Component)):
            raise ConfigError(f"{where}.type: {type_name!r} names {ep.value}, which is not a component class")
        self._types[type_name] = loaded
        return loaded


_REGISTRIES: dict[str, Registry] = {}


def registry_for(block: str) -> Registry:
    if block not in BUILDING_BLOCKS:
        raise ConfigError(f"unknown building block {block!r} (available: {', '.join(BUILDING_BLOCKS)})")
    return _REGISTRIES.setdefault(block, Registry(block))

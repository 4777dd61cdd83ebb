"""Component registries, one per building block, fed by entry points.

A third-party package adds a component type with one line of its pyproject::

    [project.entry-points."layotto.components.state"]
    my-store = "my_package.store:MyStateStore"
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

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
}


class Registry:
    """The component types of one building block."""

    def __init__(self, block: str) -> None:
        self.block = block
        self.group = f"layotto.components.{block}"
        self._types: dict[str, type[Component]] = {}
        self._loaded = False

    def register(self, component: type[Component]) -> None:
        self._types[component.spec.type] = component

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in entry_points(group=self.group):
            try:
                component = ep.load()
            except Exception:  # a broken plugin must not take the runtime down
                log.exception("cannot load component entry point %s from %s", ep.name, ep.value)
                continue
            self._types.setdefault(ep.name, component)

    def types(self) -> list[str]:
        self._load()
        return sorted(self._types)

    def spec(self, type_name: str) -> ComponentSpec:
        return self.get(type_name, where=self.block).spec

    def get(self, type_name: str, where: str) -> type[Component]:
        self._load()
        if type_name not in self._types:
            available = ", ".join(self.types())
            kind = BUILDING_BLOCKS[self.block]
            raise ConfigError(f"{where}.type: unknown {kind} type {type_name!r} (available: {available})")
        return self._types[type_name]


_REGISTRIES: dict[str, Registry] = {}


def registry_for(block: str) -> Registry:
    if block not in BUILDING_BLOCKS:
        raise ConfigError(f"unknown building block {block!r} (available: {', '.join(BUILDING_BLOCKS)})")
    return _REGISTRIES.setdefault(block, Registry(block))

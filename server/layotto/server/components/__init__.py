"""Component model shared by every building block.

A component is a class with a :class:`ComponentSpec` (its type name, the features it
declares, and a description of every metadata key it reads). The spec is the single
description the runtime validates configuration against and the docs are generated
from.
"""

from layotto.server.components.base import (
    Component,
    ComponentContext,
    ComponentSpec,
    ConfigError,
    Feature,
    Health,
    MetadataField,
)
from layotto.server.components.registry import BUILDING_BLOCKS, Registry, registry_for

__all__ = [
    "BUILDING_BLOCKS",
    "Component",
    "ComponentContext",
    "ComponentSpec",
    "ConfigError",
    "Feature",
    "Health",
    "MetadataField",
    "Registry",
    "registry_for",
]

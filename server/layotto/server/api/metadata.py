"""Dapr's GetMetadata and Shutdown: what Dapr SDKs poll for readiness and capabilities."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import empty_pb2

from layotto.proto.dapr.runtime.v1 import metadata_pb2
from layotto.server.api.adapter import Context
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.validation import require_size

RUNTIME_NAME = "layotto-python"
#: bounds of what SetMetadata keeps (docs/limits.md): a name, a value, how many, all together
MAX_ATTRIBUTE_KEY_BYTES = 256
MAX_ATTRIBUTE_VALUE_BYTES = 64 * 1024
MAX_ATTRIBUTES = 256
MAX_ATTRIBUTES_BYTES = 1024 * 1024
#: Dapr's name of a building block, where it differs from this runtime's config section
DAPR_TYPE_PREFIX = {"secret_store": "secretstores", "config_store": "configuration"}


def registered_components(components: ComponentSet) -> list[metadata_pb2.RegisteredComponents]:
    return [
        metadata_pb2.RegisteredComponents(
            name=component.name,
            type=f"{DAPR_TYPE_PREFIX.get(block, block)}.{component.spec.type}",
            version=component.spec.version,
            capabilities=sorted(f.value for f in component.spec.features),
        )
        for block, component in components
    ]


class MetadataApi:
    def __init__(self, app_id: str, version: str, components: ComponentSet, shutdown: Callable[[], None]) -> None:
        self._app_id = app_id
        self._version = version
        self._components = components
        self._shutdown = shutdown
        self._attributes: dict[str, str] = {}  # what apps set with SetMetadata, for as long as the runtime runs

    async def GetMetadata(self, request: Any, context: Context) -> metadata_pb2.GetMetadataResponse:
        return metadata_pb2.GetMetadataResponse(
            id=self._app_id,
            registered_components=registered_components(self._components),
            extended_metadata={**self._attributes, "runtime": RUNTIME_NAME, "runtimeVersion": self._version},
            runtime_version=self._version,
        )

    async def SetMetadata(self, request: Any, context: Context) -> empty_pb2.Empty:
        """An attribute GetMetadata reports in ``extended_metadata`` (the runtime's own keys stay its own)."""
        if not request.key:
            raise InvalidArgument("key", "the attribute's name is empty")
        if request.key in ("runtime", "runtimeVersion"):
            raise InvalidArgument("key", f"{request.key!r} is reported by the runtime itself")
        require_size(request.key, "key", MAX_ATTRIBUTE_KEY_BYTES, "an attribute's name")
        require_size(request.value, "value", MAX_ATTRIBUTE_VALUE_BYTES, "an attribute's value")
        self._check_room(request.key, request.value)
        self._attributes[request.key] = request.value
        return empty_pb2.Empty()

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

    async def Shutdown(self, request: Any, context: Context) -> empty_pb2.Empty:
        self._shutdown()
        return empty_pb2.Empty()

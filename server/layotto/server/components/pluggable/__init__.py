"""Dapr's pluggable components: components served by another process on a Unix socket.

A pluggable component serves ``dapr.proto.components.v1`` (Dapr's protocol, compiled in
``layotto.proto.components.v1``) with gRPC reflection on ``<folder>/<name>.sock``; a config
component of ``type: <name>`` whose name is no built-in type uses it. The folder is the config's
``pluggable_components_path``, else ``DAPR_COMPONENTS_SOCKETS_FOLDER``, else Dapr's default
``/tmp/dapr-components-sockets``. Discovery asks the socket's reflection which services it serves
(the service names the building block: ``StateStore`` is a state store) and the component which
features it has (its ``Features`` RPC); the runtime then treats it as any other component of that
block. Served here: state stores (``StateStore``, with ``TransactionalStateStore`` when the
component declares ``TRANSACTIONAL``), pub/sub brokers (``PubSub``) and bindings (``InputBinding``,
``OutputBinding``, or both).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from layotto.proto.components.v1 import bindings_pb2, bindings_pb2_grpc, common_pb2
from layotto.server.components.base import ComponentSpec, ConfigError, Feature
from layotto.server.components.registry import registry_for
from layotto.server.errors import BackendError, BackendUnavailable

log = logging.getLogger(__name__)

SOCKETS_FOLDER_ENV = "DAPR_COMPONENTS_SOCKETS_FOLDER"
DEFAULT_SOCKETS_FOLDER = "/tmp/dapr-components-sockets"
PACKAGE = "dapr.proto.components.v1"
DISCOVERY_TIMEOUT = 5.0
"""Seconds a socket has to answer reflection and Features at start-up."""

INSTANCE_METADATA = "x-component-instance"
"""Names the component instance on every call, as Dapr does (one socket may serve several)."""
CALL_TIMEOUT = 30.0
"""Seconds each call to a component's socket may take."""
REOPEN_SECONDS = 0.5
"""Pause before a broken stream (pub/sub's PullMessages, a binding's Read) is opened again."""

INPUT_BINDING = f"{PACKAGE}.InputBinding"
OUTPUT_BINDING = f"{PACKAGE}.OutputBinding"
#: the services that make a socket a component of a block
BLOCK_SERVICES = {
    f"{PACKAGE}.StateStore": "state",
    f"{PACKAGE}.PubSub": "pubsub",
    INPUT_BINDING: "bindings",
    OUTPUT_BINDING: "bindings",
}
#: the blocks whose service answers Features (bindings declare none: their services say what they are)
HAS_FEATURES_RPC = ("state", "pubsub")
#: Dapr's feature names that differ from the runtime's
FEATURE_ALIASES = {"SUBSCRIBE_WILDCARDS": Feature.WILDCARD_TOPICS}

_PLUGGABLE_TYPES: set[tuple[str, str]] = set()  # (block, type) registered by discovery: rediscovered each start


def instance_metadata(name: str) -> tuple[tuple[str, str]]:
    """The call metadata naming component instance ``name``."""
    return ((INSTANCE_METADATA, name),)


def backend_error(name: str, error: grpc.aio.AioRpcError) -> BackendUnavailable | BackendError:
    """A component's gRPC error as a domain error: UNAVAILABLE or DEADLINE_EXCEEDED is
    BackendUnavailable, anything else BackendError (both naming component ``name``)."""
    code = error.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return BackendUnavailable(name, error.details() or code.name)
    return BackendError(name, f"{code.name}: {error.details()}")


def sockets_folder(configured: str) -> Path:
    """The folder of the components' sockets: ``configured``, else the environment's, else Dapr's default."""
    return Path(configured or os.environ.get(SOCKETS_FOLDER_ENV) or DEFAULT_SOCKETS_FOLDER)


class OpenSpec(ComponentSpec):
    """A pluggable component's spec: every metadata key is the component's own, passed on as a string."""

    def parse_metadata(self, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
        return {str(key): str(value) for key, value in raw.items()}


@dataclass(frozen=True)
class Discovered:
    """What a socket serves: its path, its services' full names, the features it declares (Features)
    and, for an output binding, its operations (ListOperations)."""

    socket: Path
    services: frozenset[str]
    features: frozenset[str]
    operations: tuple[str, ...] = ()


async def discover(socket: Path, where: str, block: str) -> Discovered:
    """Ask ``socket`` for its services (reflection) and, when it serves ``block``'s service, that
    service's features; ConfigError naming ``where`` when it does not answer."""
    try:
        async with grpc.aio.insecure_channel(f"unix:{socket}") as channel:
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            call = reflection.ServerReflectionInfo(iter([ask]), timeout=DISCOVERY_TIMEOUT)
            answers = [answer async for answer in call]
            services = frozenset(s.name for a in answers for s in a.list_services_response.service)
            features: frozenset[str] = frozenset()
            operations: tuple[str, ...] = ()
            served = sorted(s for s in services if BLOCK_SERVICES.get(s) == block)
            if served and block in HAS_FEATURES_RPC:
                features_rpc = channel.unary_unary(
                    f"/{served[0]}/Features",
                    request_serializer=common_pb2.FeaturesRequest.SerializeToString,
                    response_deserializer=common_pb2.FeaturesResponse.FromString,
                )
                answer = await features_rpc(common_pb2.FeaturesRequest(), timeout=DISCOVERY_TIMEOUT)
                features = frozenset(answer.features)
            if OUTPUT_BINDING in served:
                listed = await bindings_pb2_grpc.OutputBindingStub(channel).ListOperations(
                    bindings_pb2.ListOperationsRequest(), timeout=DISCOVERY_TIMEOUT
                )
                operations = tuple(listed.operations)
    except grpc.aio.AioRpcError as error:
        raise ConfigError(f"{where}: pluggable component at {socket} did not answer: {error.details()}") from None
    return Discovered(socket, services, features, operations)


def blocks_of(found: Discovered) -> set[str]:
    """The building blocks a socket's services make it a component of."""
    return {BLOCK_SERVICES[s] for s in found.services if s in BLOCK_SERVICES}


async def register_pluggable(declared: Mapping[str, Mapping[str, tuple[str, Any, Any]]], folder: Path) -> Sequence[str]:
    """Register, in their blocks' registries, the pluggable components the config names.

    ``declared``: block -> component name -> (type, ...). A type that is no registered type of its
    block and has a socket ``<folder>/<type>.sock`` is discovered and registered under that type;
    the others are left to the registry (an unknown type stays the registry's ConfigError). Raises
    ConfigError when the socket does not answer or serves no service of the block it is used in.
    Returns the registered type names.
    """
    from layotto.server.components.pluggable.bindings import pluggable_binding
    from layotto.server.components.pluggable.pubsub import pluggable_pubsub
    from layotto.server.components.pluggable.state import pluggable_state_store

    factories = {"state": pluggable_state_store, "pubsub": pluggable_pubsub, "bindings": pluggable_binding}

    registered = []
    for block, components in declared.items():
        registry = registry_for(block)
        for name, (type_name, _, _) in components.items():
            socket = folder / f"{type_name}.sock"
            pluggable = (block, type_name) in _PLUGGABLE_TYPES
            if pluggable and not socket.is_socket():  # registered by an earlier start, its socket gone
                registry.unregister(type_name)
                _PLUGGABLE_TYPES.discard((block, type_name))
            if (type_name in registry.types() and not pluggable) or not socket.is_socket():
                continue
            where = f"{block}.{name}.type"
            found = await discover(socket, where, block)
            if block not in blocks_of(found):
                raise ConfigError(
                    f"{where}: pluggable component {type_name!r} ({socket}) serves no {block} service"
                    f" (serves: {', '.join(sorted(found.services)) or 'nothing'})"
                )
            registry.register(factories[block](type_name, found))
            _PLUGGABLE_TYPES.add((block, type_name))
            registered.append(type_name)
            log.info("pluggable component %r at %s: %s, features %s", type_name, socket, block, sorted(found.features))
    return registered


def known_features(declared: frozenset[str]) -> frozenset[Feature]:
    """The runtime's features among those a component declares (Dapr's names); others are ignored."""
    values = {feature.value: feature for feature in Feature} | FEATURE_ALIASES
    return frozenset(values[name] for name in declared if name in values)

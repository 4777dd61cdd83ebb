"""Builds the configured components and finds them for the API handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from layotto.server.components.base import Component, ComponentContext, ConfigError
from layotto.server.components.registry import BUILDING_BLOCKS, registry_for
from layotto.server.components.secretrefs import SecretRef, resolve
from layotto.server.errors import ComponentNotFound, LayottoError, NoComponentsConfigured
from layotto.server.runtime.validation import require_name

log = logging.getLogger(__name__)


class ComponentSet:
    """The runtime's initialised components, by building block and name."""

    def __init__(self) -> None:
        self._blocks: dict[str, dict[str, Component]] = {}

    def add(self, block: str, component: Component) -> None:
        self._blocks.setdefault(block, {})[component.name] = component

    def names(self, block: str) -> list[str]:
        return sorted(self._blocks.get(block, {}))

    def find(self, block: str, name: str, field: str) -> Component:
        """The component a request names, or the catalogued error for a bad name."""
        require_name(name, field)
        components = self._blocks.get(block)
        if not components:
            raise NoComponentsConfigured(BUILDING_BLOCKS[block])
        component = components.get(name)
        if component is None:
            raise ComponentNotFound(field, BUILDING_BLOCKS[block], name, sorted(components))
        return component

    def __iter__(self) -> Iterator[tuple[str, Component]]:
        for block, components in self._blocks.items():
            for component in components.values():
                yield block, component

    async def aclose(self) -> None:
        for block, component in reversed(list(self)):
            try:
                await component.close()
            except Exception:
                log.exception("closing %s %r failed", block, component.name)


def _peer_finder(loaded: ComponentSet, where: str) -> Callable[[str, str], Component]:
    def peer(block: str, name: str) -> Component:
        if name not in loaded.names(block):
            kind = BUILDING_BLOCKS[block]
            choices = ", ".join(loaded.names(block)) or "none"
            raise ConfigError(f"{where}: no {kind} named {name!r} is configured (configured: {choices})")
        return loaded.find(block, name, where)

    return peer


async def load_components(
    declared: Mapping[str, Mapping[str, tuple[str, Mapping[str, str], Sequence[SecretRef]]]],
    context: ComponentContext,
    init_timeout: float = 30.0,
) -> ComponentSet:
    """Create and initialise every declared component: block -> name -> (type, metadata, secret
    references). Secret stores come first, so the others' references can be read from them."""
    loaded = ComponentSet()
    try:
        for block in sorted(declared, key=lambda b: b != "secret_store"):
            registry = registry_for(block)
            for name, (type_name, inline, refs) in declared[block].items():
                where = f"{block}.{name}"
                cls = registry.get(type_name, where)
                if refs and block == "secret_store":
                    raise ConfigError(f"{where}: a secret store cannot take its metadata from secret stores")
                raw_metadata = {**inline, **await resolve(refs, loaded, where)}
                metadata = cls.spec.parse_metadata(raw_metadata, f"{where}.metadata")
                component = cls(name)
                component.metadata = metadata
                peer_context = replace(context, peer=_peer_finder(loaded, f"{where}.metadata"))
                try:
                    await asyncio.wait_for(component.init(metadata, peer_context), init_timeout)
                except (ConfigError, TimeoutError) as error:
                    raise ConfigError(str(error) or f"{where}: init timed out after {init_timeout}s") from error
                except LayottoError as error:
                    raise ConfigError(f"{where}: {error.message}") from error
                except OSError as error:
                    raise ConfigError(f"{where}: cannot reach the backend: {error}") from error
                loaded.add(block, component)
                log.info("loaded %s %r (type %s)", BUILDING_BLOCKS[block], name, type_name)
    except BaseException:
        await loaded.aclose()
        raise
    return loaded

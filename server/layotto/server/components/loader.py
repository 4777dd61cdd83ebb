"""Builds the configured components and finds them for the API handlers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace

from layotto.server.components.base import Component, ComponentContext, ConfigError, LocatedConfigError
from layotto.server.components.registry import BUILDING_BLOCKS, registry_for
from layotto.server.components.secretrefs import SecretRef, resolve
from layotto.server.errors import ComponentNotFound, LayottoError, NoComponentsConfigured
from layotto.server.runtime.validation import require_name

log = logging.getLogger(__name__)


class ComponentSet:
    """The runtime's initialised components, by building block and name."""

    def __init__(self) -> None:
        self._blocks: dict[str, dict[str, Component]] = {}
        #: (block, name) -> the components that took it as a peer at init (they hold the instance)
        self.dependents: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def add(self, block: str, component: Component) -> None:
        self._blocks.setdefault(block, {})[component.name] = component

    def get(self, block: str, name: str) -> Component | None:
        """The component of that block and name, or None."""
        return self._blocks.get(block, {}).get(name)

    def swap(self, block: str, name: str, component: Component | None) -> Component | None:
        """Put ``component`` in place of ``block``'s component ``name`` (None: remove it), in this
        same mapping, so every API holding the set finds it from the next call on. Returns the
        instance it replaced (None: there was none); the caller drains and closes that one."""
        components = self._blocks.setdefault(block, {})
        old = components.pop(name, None)
        if component is not None:
            components[name] = component
        if not components:
            del self._blocks[block]
        if component is None:  # removed: it holds no peer, and none may hold it
            self.dependents.pop((block, name), None)
            for users in self.dependents.values():
                users.discard((block, name))
        return old

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


def _peer_finder(loaded: ComponentSet, user: tuple[str, str], where: str) -> Callable[[str, str], Component]:
    def peer(block: str, name: str) -> Component:
        if name not in loaded.names(block):
            kind = BUILDING_BLOCKS[block]
            choices = ", ".join(loaded.names(block)) or "none"
            raise ConfigError(f"{where}: no {kind} named {name!r} is configured (configured: {choices})")
        loaded.dependents.setdefault((block, name), set()).add(user)
        return loaded.find(block, name, where)

    return peer


async def build_component(
    block: str,
    name: str,
    declared: tuple[str, Mapping[str, str], Sequence[SecretRef]],
    context: ComponentContext,
    loaded: ComponentSet,
    *,
    init_timeout: float = 30.0,
) -> Component:
    """One initialised component of ``block`` from (type, metadata, secret references); its secret
    references are read from, and its peers found in, ``loaded``. Not added to ``loaded``.

    Raises ConfigError (one line naming ``block.name`` and the field or cause): an unknown type,
    bad metadata, an unreachable backend, an init that failed or took over ``init_timeout`` s.
    """
    type_name, inline, refs = declared
    where = f"{block}.{name}"
    cls = registry_for(block).get(type_name, where)
    if refs and block == "secret_store":
        raise ConfigError(f"{where}: a secret store cannot take its metadata from secret stores")
    raw_metadata = {**inline, **await resolve(refs, loaded, where)}
    metadata = cls.spec.parse_metadata(raw_metadata, f"{where}.metadata")
    component = cls(name)
    component.metadata = metadata
    peer_context = replace(context, peer=_peer_finder(loaded, (block, name), f"{where}.metadata"))
    try:
        await asyncio.wait_for(component.init(metadata, peer_context), init_timeout)
    except BaseException as error:
        await _close_quietly(component, where)
        if isinstance(error, ConfigError | TimeoutError):
            raise ConfigError(str(error) or f"{where}: init timed out after {init_timeout}s") from error
        if isinstance(error, LayottoError):
            raise ConfigError(f"{where}: {error.message}") from error
        if isinstance(error, OSError):
            raise ConfigError(f"{where}: cannot reach the backend: {error}") from error
        raise
    return component


async def _close_quietly(component: Component, where: str) -> None:
    """Release what a component that failed its init may hold (a half-open pool)."""
    try:
        await component.close()
    except Exception:
        log.debug("closing %s after its failed init failed too", where, exc_info=True)


async def load_components(
    declared: Mapping[str, Mapping[str, tuple[str, Mapping[str, str], Sequence[SecretRef]]]],
    context: ComponentContext,
    init_timeout: float = 30.0,
    sources: Mapping[tuple[str, str], str] | None = None,
) -> ComponentSet:
    """Create and initialise every declared component: block -> name -> (type, metadata, secret
    references). Secret stores come first, so the others' references can be read from them.
    ``sources`` names the file of a (block, name) declared outside the runtime config (a Dapr
    manifest): a ConfigError of that component is a LocatedConfigError starting with it."""
    loaded = ComponentSet()
    try:
        for block in sorted(declared, key=lambda b: b != "secret_store"):
            for name, entry in declared[block].items():
                try:
                    component = await build_component(block, name, entry, context, loaded, init_timeout=init_timeout)
                except ConfigError as error:
                    source = (sources or {}).get((block, name))
                    if source is None:
                        raise
                    raise LocatedConfigError(f"{source}: {error}") from None
                loaded.add(block, component)
                log.info("loaded %s %r (type %s)", BUILDING_BLOCKS[block], name, entry[0])
    except BaseException:
        await loaded.aclose()
        raise
    return loaded

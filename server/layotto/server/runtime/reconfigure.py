"""Live reconfiguration of components: one swap-and-drain mechanism for Layotto's
``Lifecycle/ApplyConfiguration`` and for config hot reload.

A change builds a new instance (type, metadata, secret references) with the same loader as
start-up, then swaps it into the runtime's :class:`ComponentSet` in place: every API, gRPC and
HTTP, finds the new instance from its next call on, without rebuilding a server. The old
instance drains (:func:`~layotto.server.components.inflight.drain`: its calls under way finish,
up to ``drain_seconds``) and is then closed. A new instance that fails to build (bad metadata,
unknown type, unreachable backend) changes nothing: the old one keeps serving.

Some components cannot be swapped under the runtime: their instance is held by a long-lived
consumer, not looked up per call. Changes to them are refused as needing a restart
(:meth:`Reconfigurer.restart_reason`): pub/sub components (app subscriptions and subscribe
streams hold them), configuration stores (watch streams), schedulers (the scheduler loop),
input bindings (their delivery loop), and any component another one took as a peer at init
(a crypto key store's secret store).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from layotto.server.components.base import Component, ComponentContext, ConfigError, Feature
from layotto.server.components.inflight import drain, track_calls
from layotto.server.components.loader import ComponentSet, build_component
from layotto.server.components.registry import BUILDING_BLOCKS, registry_for
from layotto.server.config import SECTION_ALIASES, ComponentConfig
from layotto.server.errors import ComponentNotFound, InvalidArgument
from layotto.server.masking import mask_text
from layotto.server.runtime.resiliency import Resiliency, guard_component

log = logging.getLogger(__name__)

Declared = dict[str, dict[str, ComponentConfig]]
#: the blocks whose instances long-lived consumers hold, and why a change needs a restart
RESTART_BLOCKS = {
    "pubsub": "app subscriptions and subscribe streams hold the instance",
    "config_store": "configuration watches hold the instance",
    "scheduler": "the scheduler loop holds the instance",
}


@dataclass
class ReloadOutcome:
    """What a hot reload did: ``block.name`` lists, and the changes that need a restart (with why)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    needs_restart: dict[str, str] = field(default_factory=dict)


class Reconfigurer:
    """Swaps components of one runtime live (see the module). One change at a time."""

    def __init__(
        self,
        components: ComponentSet,
        declared: Declared,
        context: ComponentContext,
        *,
        resiliency: Resiliency | None = None,
        drain_seconds: float = 10.0,
        init_timeout: float = 30.0,
    ) -> None:
        """``declared``: block -> name -> the config each running component was built from."""
        self._components = components
        self._live: Declared = {block: dict(named) for block, named in declared.items()}
        self._file: Declared = {block: dict(named) for block, named in declared.items()}
        self._context = context
        self._resiliency = resiliency
        self._drain_seconds = drain_seconds
        self._init_timeout = init_timeout
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        #: called with (block, component) for each component built here (the runtime's metrics), or None
        self.instrument: Callable[[str, Component], None] | None = None

    def declared(self, block: str, name: str) -> ComponentConfig | None:
        """The config the running component ``block.name`` was built from (None: no such component)."""
        return self._live.get(block, {}).get(name)

    def restart_reason(self, block: str, name: str, type_name: str) -> str | None:
        """Why a change to ``block.name`` (of type ``type_name``) cannot be applied live; None: it can."""
        if block in RESTART_BLOCKS:
            return RESTART_BLOCKS[block]
        users = self._components.dependents.get((block, name))
        if users:
            return f"{', '.join(sorted(f'{b}.{n}' for b, n in users))} took it as a peer at init"
        if block == "bindings":
            current = self._components.get(block, name)
            try:
                features = registry_for(block).get(type_name, f"{block}.{name}").spec.features
            except ConfigError:
                features = frozenset()
            if Feature.INPUT_BINDING in features or (current is not None and current.supports(Feature.INPUT_BINDING)):
                return "an input binding's delivery loop holds the instance"
        return None

    async def apply_metadata(self, kind: str, name: str, metadata: Mapping[str, str]) -> None:
        """Layotto's ApplyConfiguration: rebuild ``kind``'s component ``name`` with its metadata
        updated by ``metadata`` (keys given replace theirs; the others are kept), swap it in and
        retire the old instance. ``kind`` is a config section (``state``, ``hellos``, ``pub_subs``).

        Raises InvalidArgument naming ``component_config.<field>``: an empty or unknown kind or an
        empty metadata; a change that needs a restart; a new instance that fails to build (the
        message carries the cause, the old instance keeps serving). ComponentNotFound (naming
        ``component_config.name``) for a name the kind has no component of.
        """
        block = SECTION_ALIASES.get(kind, kind)
        if block not in BUILDING_BLOCKS:
            raise InvalidArgument(
                "component_config.kind", f"unknown kind {kind!r} (known: {', '.join(sorted(BUILDING_BLOCKS))})"
            )
        if not metadata:
            raise InvalidArgument("component_config.metadata", "empty: give the metadata keys to change")
        async with self._lock:
            current = self.declared(block, name)
            if current is None:
                names = sorted(self._live.get(block, {}))
                raise ComponentNotFound("component_config.name", BUILDING_BLOCKS[block], name, names)
            reason = self.restart_reason(block, name, current.type)
            if reason is not None:
                raise InvalidArgument(
                    "component_config.name", f"{kind} {name!r} cannot be reconfigured live ({reason}): restart"
                )
            wanted = replace(current, metadata={**current.metadata, **metadata})
            try:
                new = await self._build(block, name, wanted)
            except ConfigError as error:
                raise _refusal(kind, block, name, error) from None
            self._install(block, name, new)
            self._live[block][name] = wanted
        log.info("%s %r reconfigured (metadata %s): the old instance drains", kind, name, ", ".join(sorted(metadata)))

    async def apply_components(self, wanted: Declared) -> ReloadOutcome:
        """Hot reload: make the running components those of ``wanted`` (block -> name -> config).
        Components whose config changed since the last file are rebuilt; an ApplyConfiguration'd
        one keeps its live metadata until its file entry changes. Every new instance is built
        before any is swapped in: a ConfigError (one line naming the component and the cause)
        leaves the running set as it was. Changes that need a restart are left out and listed."""
        async with self._lock:
            outcome = ReloadOutcome()
            plan = self._plan(wanted, outcome)
            built: list[tuple[str, str, Component | None, ComponentConfig | None]] = []
            try:
                for block, name, config in sorted(plan, key=lambda p: p[0] != "secret_store"):
                    new = await self._build(block, name, config) if config is not None else None
                    built.append((block, name, new, config))
            except BaseException:
                for block, name, component, _ in built:
                    if component is not None:
                        await _close_unused(block, name, component)
                raise
            for block, name, new, config in built:
                self._install(block, name, new)
                if config is None:
                    self._live.get(block, {}).pop(name, None)
                    self._file.get(block, {}).pop(name, None)
                else:
                    self._live.setdefault(block, {})[name] = config
                    self._file.setdefault(block, {})[name] = config
            return outcome

    def _plan(self, wanted: Declared, outcome: ReloadOutcome) -> list[tuple[str, str, ComponentConfig | None]]:
        """The (block, name, new config or None to remove) to apply; fills ``outcome``."""
        plan: list[tuple[str, str, ComponentConfig | None]] = []
        for block in sorted({*wanted, *self._file}):
            before, after = self._file.get(block, {}), wanted.get(block, {})
            for name in sorted({*before, *after}):
                old, new = before.get(name), after.get(name)
                if old == new:
                    continue
                shown = new if new is not None else old
                assert shown is not None
                reason = self.restart_reason(block, name, shown.type)
                if reason is not None:
                    outcome.needs_restart[f"{block}.{name}"] = reason
                    continue
                (outcome.added if old is None else outcome.removed if new is None else outcome.changed).append(
                    f"{block}.{name}"
                )
                plan.append((block, name, new))
        return plan

    async def _build(self, block: str, name: str, config: ComponentConfig) -> Component:
        entry = (config.type, config.metadata, config.secret_refs)
        component = await build_component(
            block, name, entry, self._context, self._components, init_timeout=self._init_timeout
        )
        if self._resiliency is not None:
            guard_component(block, component, self._resiliency)
        track_calls(component)
        if self.instrument is not None:
            self.instrument(block, component)
        return component

    def _install(self, block: str, name: str, new: Component | None) -> None:
        old = self._components.swap(block, name, new)
        if old is not None:
            task = asyncio.create_task(self._retire(block, old), name=f"layotto-retire-{block}.{name}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _retire(self, block: str, old: Component) -> None:
        """Drain the replaced instance, then close it."""
        if not await drain(old, self._drain_seconds):
            log.warning(
                "%s %r: calls still under way after %gs of draining; closing the old instance",
                block,
                old.name,
                self._drain_seconds,
            )
        try:
            await old.close()
        except Exception:
            log.exception("closing the replaced %s %r failed", block, old.name)
        # serve() froze start-up's objects (gc.freeze), this instance among them: collectable again
        gc.unfreeze()

    async def aclose(self) -> None:
        """Finish retiring the replaced instances (at shutdown, after the calls drained)."""
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)


async def _close_unused(block: str, name: str, component: Component) -> None:
    """Close a new instance that will not be swapped in (another of the same reload failed)."""
    try:
        await component.close()
    except Exception:
        log.exception("closing the unused new %s %r failed", block, name)


def _refusal(kind: str, block: str, name: str, error: ConfigError) -> InvalidArgument:
    """The InvalidArgument of a new instance that failed to build, naming the metadata key when
    the error names one (``state.cache.metadata.redisDB: ...`` -> ``component_config.metadata.redisDB``)."""
    text = mask_text(str(error))
    prefix = f"{block}.{name}.metadata."
    field_name = "component_config.metadata"
    if text.startswith(prefix):
        field_name += "." + text[len(prefix) :].split(":", 1)[0].split(".", 1)[0]
    return InvalidArgument(field_name, f"{kind} {name!r} refused, the old instance keeps serving: {text}")

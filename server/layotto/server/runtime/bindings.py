"""The Bindings building block's runtime path, shared by both wire APIs and the app channel.

:func:`invoke_binding` serves InvokeBinding (Layotto's and Dapr's): find the output binding,
check the operation against the ones its spec declares, invoke it. :class:`InputBindingReaders`
runs the input bindings the app asked for, handing each event to a delivery function the app
channel supplies, and :func:`apply_reply` does what the app answered an event with, whichever
protocol it speaks: saves its states, sends its data on to output bindings (Dapr's ``to``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from layotto.server.aio import stop_task
from layotto.server.components.base import ConfigError, Feature
from layotto.server.components.bindings import (
    BindingEvent,
    BindingRequest,
    BindingResponse,
    InputBinding,
    OutputBinding,
)
from layotto.server.components.loader import ComponentSet
from layotto.server.components.state import WriteRequest
from layotto.server.errors import InvalidArgument, LayottoError
from layotto.server.runtime.state import StateService

log = logging.getLogger(__name__)

BLOCK = "bindings"

#: the wait before an input binding whose reader failed is read again (doubling up to the max)
RESTART_SECONDS = 0.5
RESTART_MAX_SECONDS = 10.0


def find_output_binding(components: ComponentSet, name: str, field: str = "name") -> OutputBinding:
    """The output binding named ``name``; ComponentNotFound, or InvalidArgument for an input-only binding."""
    binding = components.find(BLOCK, name, field)
    if not isinstance(binding, OutputBinding):
        raise InvalidArgument(
            field, f"binding {name!r} ({binding.spec.type}) is an input binding: it has no operations"
        )
    return binding


async def invoke_binding(
    components: ComponentSet, name: str, operation: str, data: bytes, metadata: Mapping[str, str]
) -> BindingResponse:
    """Run ``operation`` of the output binding ``name``.

    Raises ComponentNotFound (``name``), InvalidArgument naming ``operation`` (listing the
    binding's operations) or a request metadata key, and the binding's backend errors.
    """
    binding = find_output_binding(components, name)
    operations = binding.spec.operations
    if operation not in operations:
        what = f"{operation!r} is not an operation" if operation else "empty: expected an operation"
        raise InvalidArgument(
            "operation", f"{what} of binding {name!r} ({binding.spec.type}); its operations: {', '.join(operations)}"
        )
    return await binding.invoke(BindingRequest(operation=operation, data=data, metadata=dict(metadata)))


@dataclass(frozen=True)
class EventReply:
    """What the app answered an input event with (Dapr's BindingEventResponse, or an HTTP app's JSON
    answer): ``states`` to save to ``store_name`` (``fields[i]`` names ``states[i]`` in errors),
    then ``data`` to send to each output binding of ``to``, one after another or all at once."""

    store_name: str = ""
    states: tuple[WriteRequest, ...] = ()
    fields: tuple[str, ...] = ()
    to: tuple[str, ...] = ()
    data: bytes = b""
    parallel: bool = False


async def apply_reply(components: ComponentSet, state: StateService, reply: EventReply) -> None:
    """Save ``reply.states`` as Dapr's SaveState would (the same checks, errors and etags: a failure
    raises, so the event fails and a source that can redeliver does), then :func:`forward_reply`."""
    if reply.states:
        await state.write(reply.store_name, reply.states, reply.fields)
    if reply.to:
        await forward_reply(components, reply)


async def forward_reply(components: ComponentSet, reply: EventReply) -> None:
    """Send ``reply.data`` to each output binding of ``reply.to`` with the ``create`` operation (as Dapr
    does); a failing target is logged and does not stop the others."""

    async def send(target: str) -> None:
        try:
            await invoke_binding(components, target, "create", reply.data, {})
        except LayottoError as error:
            log.warning("could not send the app's reply to binding %r: %s", target, error.message)

    if reply.parallel:
        await asyncio.gather(*(send(target) for target in reply.to))
    else:
        for target in reply.to:
            await send(target)


def input_binding_names(components: ComponentSet) -> list[str]:
    """Names of the configured bindings that can deliver events to the app."""
    return [c.name for block, c in components if block == BLOCK and c.supports(Feature.INPUT_BINDING)]


#: delivers one event of the named binding to the app; raises when the app did not take it
Deliver = Callable[[str, BindingEvent], Awaitable[None]]


class InputBindingReaders:
    """One reading task per input binding the app asked for."""

    def __init__(self, components: ComponentSet, deliver: Deliver) -> None:
        self._components = components
        self._deliver = deliver
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def reading(self) -> list[str]:
        return sorted(self._tasks)

    async def apply(self, wanted: Iterable[str]) -> None:
        """Read the bindings named in ``wanted`` (unknown names are logged), stop reading the others."""
        names = set(wanted)
        for name in [n for n in self._tasks if n not in names]:
            await stop_task(self._tasks.pop(name))
            log.info("stopped reading input binding %r: the app no longer lists it", name)
        for name in sorted(names - set(self._tasks)):
            try:
                binding = self._components.find(BLOCK, name, "bindings")
            except LayottoError as error:
                log.warning("the app lists input binding %r: %s", name, error.message)
                continue
            if not isinstance(binding, InputBinding):
                log.warning("the app lists binding %r (%s), which is not an input binding", name, binding.spec.type)
                continue
            self._tasks[name] = asyncio.create_task(self._read(binding), name=f"binding-{name}")
            log.info("reading input binding %r (%s) for the app", name, binding.spec.type)

    async def _read(self, binding: InputBinding) -> None:
        """Run ``binding.read`` until cancelled: a reader that fails (its backend went away) starts
        again after :data:`RESTART_SECONDS`, doubling up to :data:`RESTART_MAX_SECONDS`; one that
        cannot read by its configuration (ConfigError) stops."""

        async def handle(event: BindingEvent) -> None:
            await self._deliver(binding.name, event)

        loop = asyncio.get_running_loop()
        wait = RESTART_SECONDS
        while True:
            started = loop.time()
            try:
                await binding.read(handle)
                return
            except asyncio.CancelledError:
                raise
            except ConfigError as error:
                log.error("input binding %r cannot be read: %s", binding.name, error)
                return
            except LayottoError as error:
                reason = error.message
            except Exception as error:  # a client library's own error: the reader is restarted all the same
                log.debug("input binding %r failed", binding.name, exc_info=True)
                reason = f"{type(error).__name__}: {error}"
            if loop.time() - started > RESTART_MAX_SECONDS:  # it had been reading: a new failure
                wait = RESTART_SECONDS
            log.warning("input binding %r stopped reading (%s); reading again in %gs", binding.name, reason, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RESTART_MAX_SECONDS)

    async def aclose(self) -> None:
        await self.apply(())

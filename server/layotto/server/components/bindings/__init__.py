"""The Bindings building block: output bindings the app invokes, input bindings that call the app.

An output binding declares its operations in its spec (``spec.operations``, Dapr's names) and
answers :meth:`OutputBinding.invoke` for each; the runtime refuses an operation the spec does
not list before the binding is asked. An input binding reads events from its source and hands
each to a handler (:meth:`InputBinding.read`) until it is cancelled; whether an event is
delivered again when the handler fails depends on the source and is documented per component.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from layotto.server.components.base import Component
from layotto.server.errors import InvalidArgument


@dataclass(frozen=True)
class BindingRequest:
    """One InvokeBinding call: an operation of the binding, its payload and its request metadata."""

    operation: str
    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def required(self, key: str) -> str:
        """The request metadata value ``key``; InvalidArgument naming ``metadata.<key>`` when missing or empty."""
        value = self.metadata.get(key, "")
        if not value:
            raise InvalidArgument(f"metadata.{key}", f"required by the {self.operation!r} operation")
        return value


@dataclass(frozen=True)
class BindingResponse:
    """What an output binding answers: data (bytes) and response metadata."""

    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BindingEvent:
    """One event an input binding read: data (bytes) and metadata from the source."""

    data: bytes = b""
    metadata: Mapping[str, str] = field(default_factory=dict)


#: takes one event; returns when the app handled it, raises when it did not
EventHandler = Callable[[BindingEvent], Awaitable[None]]


class OutputBinding(Component):
    @abstractmethod
    async def invoke(self, request: BindingRequest) -> BindingResponse:
        """Run ``request.operation`` (one of ``spec.operations``).

        Raises InvalidArgument naming ``metadata.<key>`` for bad request metadata,
        BackendUnavailable or BackendError when the target fails.
        """


class InputBinding(Component):
    @abstractmethod
    async def read(self, handler: EventHandler) -> None:
        """Hand every event of the source to ``handler``, one at a time, until cancelled."""

"""Bindings: invoke the runtime's output bindings, and the shapes input-binding handlers see."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from layotto.client._transport import Transport
from layotto.client._values import invalid, string_map
from layotto.proto.runtime.v1 import runtime_pb2 as pb

__all__ = ["BindingEvent", "BindingHandler", "BindingReply", "BindingResult", "BindingsClient"]


@dataclass(frozen=True)
class BindingResult:
    """What an output binding answered: ``data`` (bytes) and response ``metadata`` (the http
    binding's ``statusCode``, the SQL bindings' ``rows-affected``, ...)."""

    data: bytes
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class BindingEvent:
    """One event of an input binding: the binding's ``name``, ``data`` and source ``metadata``."""

    name: str
    data: bytes
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class BindingReply:
    """A handler's answer to an event: save ``states`` (key -> value) to the state store
    ``state_store``, then send ``data`` to the output bindings named in ``to``, one after another,
    or all at once when ``parallel``."""

    to: tuple[str, ...] = ()
    data: bytes = b""
    parallel: bool = False
    state_store: str = ""
    states: Mapping[str, bytes] = field(default_factory=dict)


#: handles one event; returning acknowledges it, raising tells the runtime the app did not take it
BindingHandler = Callable[[BindingEvent], Awaitable[BindingReply | None]]


class BindingsClient:
    """Invokes output bindings (``http``, ``redis``, ``postgresql``, ``mysql``, ...)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def invoke(
        self,
        name: str,
        operation: str,
        data: bytes | None = b"",
        metadata: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> BindingResult:
        """Run ``operation`` of the binding ``name`` with ``data`` and request ``metadata``.

        Raises InvalidArgument for an operation the binding lacks (the message lists its
        operations), bad request metadata (one that is not a str: before the call) or data that is
        not bytes, StoreNotFound for an unknown binding, BackendError
        or BackendUnavailable when the binding's target fails. Not retried: an operation may
        have effects.
        """
        data = b"" if data is None else data
        if not isinstance(data, bytes | bytearray | memoryview):
            raise invalid("data", f"expected bytes, got {type(data).__name__} (encode a str or JSON value first)")
        request = pb.InvokeBindingRequest(
            name=name, operation=operation, data=bytes(data), metadata=string_map(metadata, "metadata")
        )
        response = await self._t.unary("InvokeBinding", request, timeout, idempotent=False)
        return BindingResult(data=response.data, metadata=dict(response.metadata))

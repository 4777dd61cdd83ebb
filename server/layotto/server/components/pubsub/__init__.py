"""The Pub/Sub building block: the interface every broker component implements.

Delivery is at least once. A component hands each message to the runtime's ``deliver``
callback and acknowledges it to the broker only when the callback returns; when the
callback raises, or the runtime dies first, the broker delivers the message again.
Retries with backoff, dead-letter topics and dropping are the runtime's business (see
the Pub/Sub API), so they behave the same on every broker.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from layotto.server.components.base import Component


@dataclass(frozen=True)
class BrokerMessage:
    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=dict)
    broker_id: str = ""  # the broker's own id, for logs


Deliver = Callable[[BrokerMessage], Awaitable[None]]


class Subscription:
    """A running subscription; ``aclose()`` stops it (un-acked messages stay with the broker)."""

    async def aclose(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class PubSub(Component):
    @abstractmethod
    async def publish(self, topic: str, data: bytes, metadata: Mapping[str, str]) -> None: ...

    @abstractmethod
    async def subscribe(self, topic: str, group: str, deliver: Deliver) -> Subscription:
        """Consume ``topic`` as a member of consumer ``group``: members of one group share its
        messages (each message goes to one member); every group gets every message."""

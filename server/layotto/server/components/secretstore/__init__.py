"""The Secrets building block: read-only secrets, each a name with one or more key/value pairs.

``get(name)`` answers the secret's key/value pairs, or ``None`` when the store has no
secret of that name; ``bulk_get()`` answers every secret the store holds, by name.
Stores are read-only: secrets are managed by whatever owns them (a file, the process
environment, a vault), never through the runtime.
"""

from __future__ import annotations

from abc import abstractmethod

from layotto.server.components.base import Component

Secret = dict[str, str]


class SecretStore(Component):
    @abstractmethod
    async def get(self, name: str) -> Secret | None:
        """The secret's key/value pairs, or None when there is no secret of that name."""

    @abstractmethod
    async def bulk_get(self) -> dict[str, Secret]:
        """Every secret of the store, by name."""

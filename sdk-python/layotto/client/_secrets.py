"""Secrets: read-only values from the runtime's secret stores."""

from __future__ import annotations

from layotto.client._transport import Transport
from layotto.proto.runtime.v1 import runtime_pb2 as pb


class SecretsClient:
    """Reads secrets; each secret is a name holding one or more key/value pairs."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def get(self, store: str, name: str, *, timeout: float | None = None) -> dict[str, str]:
        """The secret's key/value pairs; raises SecretNotFound when the store has no such secret."""
        request = pb.GetSecretRequest(store_name=store, key=name)
        return dict((await self._t.unary("GetSecret", request, timeout, idempotent=True)).data)

    async def get_bulk(self, store: str, *, timeout: float | None = None) -> dict[str, dict[str, str]]:
        """Every secret of the store, by name."""
        request = pb.GetBulkSecretRequest(store_name=store)
        response = await self._t.unary("GetBulkSecret", request, timeout, idempotent=True)
        return {name: dict(secret.secrets) for name, secret in response.data.items()}

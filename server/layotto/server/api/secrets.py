"""GetSecret and GetBulkSecret over gRPC, on both wire APIs; the semantics are
:class:`~layotto.server.runtime.secrets.SecretService`'s (shared with the HTTP API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layotto.server.api.adapter import Context
from layotto.server.runtime.secrets import SecretService


@dataclass(frozen=True)
class SecretMessages:
    """The response classes of one wire API (Layotto's or Dapr's)."""

    get_secret_response: Any
    get_bulk_secret_response: Any
    secret_response: Any


class SecretsApi:
    def __init__(self, secrets: SecretService, messages: SecretMessages) -> None:
        self._secrets = secrets
        self._messages = messages

    async def GetSecret(self, request: Any, context: Context) -> Any:
        return self._messages.get_secret_response(data=await self._secrets.get(request.store_name, request.key))

    async def GetBulkSecret(self, request: Any, context: Context) -> Any:
        secrets = await self._secrets.bulk_get(request.store_name)
        return self._messages.get_bulk_secret_response(
            data={name: self._messages.secret_response(secrets=values) for name, values in secrets.items()}
        )

"""Dapr's secrets API over HTTP: ``GET /v1.0/secrets/{store}/{key}`` answers the secret's
name -> value pairs, ``GET /v1.0/secrets/{store}/bulk`` every secret the scope allows; both
call :class:`~layotto.server.runtime.secrets.SecretService`, as the gRPC handlers do."""

from __future__ import annotations

from aiohttp import web

from layotto.server.http.errors import Call, dapr_errors
from layotto.server.http.routing import Routes
from layotto.server.runtime.secrets import SecretService


class SecretsHttp:
    def __init__(self, secrets: SecretService) -> None:
        self._secrets = secrets

    def add_routes(self, routes: Routes) -> None:
        routes.add("GET", "/v1.0/secrets/{store}/bulk", self.bulk_get)
        routes.add("GET", "/v1.0/secrets/{store}/{key:.+}", self.get)

    @dapr_errors("secrets", "ERR_SECRET_GET")
    async def get(self, call: Call) -> web.Response:
        return web.json_response(await self._secrets.get(call.params["store"], call.params["key"]))

    @dapr_errors("secrets", "ERR_SECRET_GET")
    async def bulk_get(self, call: Call) -> web.Response:
        return web.json_response(await self._secrets.bulk_get(call.params["store"]))

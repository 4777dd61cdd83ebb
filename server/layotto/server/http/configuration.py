"""Dapr's configuration API over HTTP: ``GET /v1.0/configuration/{store}?key=a&key=b`` (and its
``v1.0-alpha1`` name) answers ``{key: {value, version, metadata}}``, every item of the app when
no key is named; it calls :class:`~layotto.server.runtime.configuration.ConfigurationService`,
as the gRPC GetConfiguration does. Subscriptions over HTTP are not served yet."""

from __future__ import annotations

from aiohttp import web

from layotto.server.http.errors import Call, dapr_errors
from layotto.server.http.routing import Routes
from layotto.server.runtime.configuration import ConfigurationService


class ConfigurationHttp:
    def __init__(self, configuration: ConfigurationService) -> None:
        self._configuration = configuration

    def add_routes(self, routes: Routes) -> None:
        for version in ("v1.0", "v1.0-alpha1"):
            routes.add("GET", f"/{version}/configuration/{{store}}", self.get)

    @dapr_errors("configuration", "ERR_CONFIGURATION_GET")
    async def get(self, call: Call) -> web.Response:
        items = await self._configuration.get(call.params["store"], call.request.query.getall("key", []))
        return web.json_response(
            {item.key: {"value": item.content, "version": item.version, "metadata": {}} for item in items}
        )

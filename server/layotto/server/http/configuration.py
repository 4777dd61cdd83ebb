"""Dapr's configuration API over HTTP (``v1.0`` and ``v1.0-alpha1`` names):

* ``GET /v1.0/configuration/{store}?key=a&key=b`` answers ``{key: {value, version, metadata}}``,
  every item of the app when no key is named;
* ``GET /v1.0/configuration/{store}/subscribe?key=a`` answers ``{"id": ...}`` once the watch is
  established, then POSTs each change to the HTTP app (``app_protocol: http``) at
  ``/configuration/{store}/{key}`` with ``{"id", "items": {key: {value, version, metadata}}}``
  (a deleted item has the metadata ``deleted: "true"``), as daprd does; a POST that fails is
  logged, not retried;
* ``GET /v1.0/configuration/{store}/{id}/unsubscribe`` ends it (``{"ok": true}``).

They call :class:`~layotto.server.runtime.configuration.ConfigurationService`, as the gRPC
handlers do: a subscription made here can be ended by the gRPC UnsubscribeConfiguration too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from layotto.server.components.configuration import ConfigChange
from layotto.server.errors import AppUnavailable, InvalidArgument
from layotto.server.http.errors import Call, dapr_errors
from layotto.server.http.routing import Routes
from layotto.server.http_app import CALL_TIMEOUT_SECONDS, HttpApp
from layotto.server.runtime.configuration import ConfigurationService, DaprSubscription

log = logging.getLogger(__name__)
DELETED = {"deleted": "true"}


def items_json(changes: Sequence[ConfigChange]) -> dict[str, Any]:
    """Dapr's ``{key: {value, version, metadata}}`` of some changes."""
    return {
        c.item.key: {"value": c.item.content, "version": c.item.version, "metadata": DELETED if c.deleted else {}}
        for c in changes
    }


class ConfigurationHttp:
    """``app``: the HTTP app that receives the changes of subscriptions (None: subscribing is refused)."""

    def __init__(self, configuration: ConfigurationService, app: HttpApp | None = None) -> None:
        self._configuration = configuration
        self._app = app
        self._deliveries: set[asyncio.Task[None]] = set()

    def add_routes(self, routes: Routes) -> None:
        for version in ("v1.0", "v1.0-alpha1"):
            routes.add("GET", f"/{version}/configuration/{{store}}", self.get)
            routes.add("GET", f"/{version}/configuration/{{store}}/subscribe", self.subscribe)
            routes.add("GET", f"/{version}/configuration/{{store}}/{{id}}/unsubscribe", self.unsubscribe)

    @dapr_errors("configuration", "ERR_CONFIGURATION_GET")
    async def get(self, call: Call) -> web.Response:
        items = await self._configuration.get(call.params["store"], call.request.query.getall("key", []))
        return web.json_response(items_json([ConfigChange(item) for item in items]))

    @dapr_errors("configuration", "ERR_CONFIGURATION_SUBSCRIBE")
    async def subscribe(self, call: Call) -> web.Response:
        store_name = call.params["store"]
        self._configuration.find(store_name)  # an unknown store is reported first
        if self._app is None:
            raise AppUnavailable(
                self._configuration.app_id, "no HTTP app (app_protocol: http, app_port) receives configuration changes"
            )
        subscription = await self._configuration.subscribe(store_name, call.request.query.getall("key", []))
        task = asyncio.create_task(self._deliver(self._app, subscription), name=f"configuration-{subscription.id}")
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)
        return web.json_response({"id": subscription.id})

    @dapr_errors("configuration", "ERR_CONFIGURATION_UNSUBSCRIBE")
    async def unsubscribe(self, call: Call) -> web.Response:
        store, subscription_id = call.params["store"], call.params["id"]
        self._configuration.find(store)
        if not self._configuration.unsubscribe(store, subscription_id):
            raise InvalidArgument("id", f"no subscription {subscription_id!r} on configuration store {store!r}")
        return web.json_response({"ok": True})

    async def _deliver(self, app: HttpApp, subscription: DaprSubscription) -> None:
        """POST each change to the app until the subscription ends (or its watch fails: logged)."""
        try:
            async for changes in subscription.changes():
                body = json.dumps({"id": subscription.id, "items": items_json(changes)}).encode()
                for change in changes:
                    await self._post(app, subscription, change.item.key, body)
        except Exception as error:
            log.warning(
                "configuration subscription %s on %r ended: %s", subscription.id, subscription.store_name, error
            )
        finally:
            self._configuration.forget(subscription)

    @staticmethod
    async def _post(app: HttpApp, subscription: DaprSubscription, key: str, body: bytes) -> None:
        url = f"{app.base_url}/configuration/{quote(subscription.store_name, safe='')}/{quote(key, safe='')}"
        headers = app.headers(**{"Content-Type": "application/json"})
        try:
            timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_SECONDS)
            async with app.session().post(url, data=body, headers=headers, timeout=timeout) as response:
                if not 200 <= response.status < 300:
                    log.warning("the app answered %d to configuration change %r of %s", response.status, key, url)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("configuration change %r could not be POSTed to the app at %s: %s", key, url, error)

    async def aclose(self) -> None:
        """Stop delivering (the runtime is stopping)."""
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*self._deliveries, return_exceptions=True)

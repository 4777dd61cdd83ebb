"""Dapr's metadata API over HTTP: ``GET /v1.0/metadata``, ``PUT /v1.0/metadata/{key}`` (the body is
the value) and ``POST /v1.0/shutdown``, calling the runtime's one
:class:`~layotto.server.runtime.metadata.MetadataService` (an attribute set here is read over
gRPC too). ``/v1.0/healthz`` and ``/v1.0/healthz/outbound`` are the actuator's."""

from __future__ import annotations

from aiohttp import web

from layotto.server.errors import InvalidArgument
from layotto.server.http.errors import Call, dapr_errors
from layotto.server.http.routing import Routes
from layotto.server.runtime.metadata import AppSubscription, MetadataService


def subscription_json(entry: AppSubscription) -> dict[str, object]:
    """Dapr's metadata shape of one app subscription."""
    s = entry.subscription
    rules = [{"match": r.match, "path": r.path} for r in s.rules]
    if s.path:
        rules.append({"match": "", "path": s.path})
    return {
        "pubsubname": s.pubsub,
        "topic": s.topic,
        "metadata": dict(s.metadata),
        "rules": rules,
        "deadLetterTopic": s.dead_letter_topic,
        "type": entry.kind,
    }


class MetadataHttp:
    def __init__(self, metadata: MetadataService) -> None:
        self._metadata = metadata

    def add_routes(self, routes: Routes) -> None:
        routes.add("GET", "/v1.0/metadata", self.get)
        routes.add("PUT", "/v1.0/metadata/{key}", self.put)
        routes.add("POST", "/v1.0/shutdown", self.shutdown)

    @dapr_errors("metadata", "ERR_METADATA_GET")
    async def get(self, call: Call) -> web.Response:
        metadata = self._metadata
        return web.json_response(
            {
                "id": metadata.app_id,
                "runtimeVersion": metadata.version,
                "enabledFeatures": [],
                "actors": [],
                "components": [
                    {"name": c.name, "type": c.type, "version": c.version, "capabilities": c.capabilities}
                    for c in metadata.components()
                ],
                "extended": metadata.extended(),
                "subscriptions": [subscription_json(s) for s in metadata.subscriptions()],
                "httpEndpoints": [],
            }
        )

    @dapr_errors("metadata", "ERR_METADATA_SET")
    async def put(self, call: Call) -> web.Response:
        raw = await call.body()
        try:
            value = raw.decode()
        except UnicodeDecodeError:
            raise InvalidArgument("value", "is not UTF-8 text") from None
        self._metadata.set_attribute(call.params["key"], value)
        return web.Response(status=204)

    @dapr_errors("metadata", "ERR_SHUTDOWN")
    async def shutdown(self, call: Call) -> web.Response:
        self._metadata.shutdown("Dapr's HTTP POST /v1.0/shutdown")
        return web.Response(status=204)

"""Dapr's publish API over HTTP: ``POST /v1.0/publish/{pubsub}/{topic}`` (the body is the event,
its ``Content-Type`` the event's content type, ``metadata.*`` query parameters its metadata:
``rawPayload``, ``ttlInSeconds``) and the bulk ``POST /v1.0-alpha1/publish/bulk/{pubsub}/{topic}``.
Both call :class:`~layotto.server.runtime.publish.Publisher`, as the gRPC PublishEvent does.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from layotto.server.http.errors import (
    Call,
    dapr_errors,
    field_of,
    is_json_type,
    optional_string,
    require_type,
    string_map,
)
from layotto.server.http.routing import Routes
from layotto.server.runtime.publish import BulkEntry, Publisher

PUBLISH_CODE = "ERR_PUBSUB_PUBLISH_MESSAGE"


def entry_bytes(event: Any, content_type: str) -> bytes:
    """A bulk entry's ``event``: a string as its UTF-8 bytes (unless the content type is JSON),
    anything else as JSON."""
    if isinstance(event, str) and not is_json_type(content_type):
        return event.encode()
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def to_entry(entry: Any, field: str) -> BulkEntry:
    require_type(entry, dict, field, "an object with entryId, event and contentType")
    content_type = optional_string(field_of(entry, "contentType"), f"{field}.contentType")
    return BulkEntry(
        entry_id=optional_string(field_of(entry, "entryId"), f"{field}.entryId"),
        event=entry_bytes(field_of(entry, "event"), content_type),
        content_type=content_type,
        metadata=string_map(field_of(entry, "metadata"), f"{field}.metadata"),
    )


class PubSubHttp:
    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher

    def add_routes(self, routes: Routes) -> None:
        routes.add("POST", "/v1.0/publish/{pubsub}/{topic:.+}", self.publish)
        routes.add("POST", "/v1.0-alpha1/publish/bulk/{pubsub}/{topic:.+}", self.bulk_publish)

    @dapr_errors("pubsub", PUBLISH_CODE)
    async def publish(self, call: Call) -> web.Response:
        await self._publisher.publish(
            call.params["pubsub"],
            call.params["topic"],
            await call.body(),
            call.request.headers.get("Content-Type", ""),
            call.metadata(),
        )
        return web.Response(status=204)

    @dapr_errors("pubsub", PUBLISH_CODE)
    async def bulk_publish(self, call: Call) -> web.Response:
        """204 when every entry was published; else 500 listing those that failed (the others were)."""
        entries = require_type(await call.json(), list, "body", "an array of entries")
        failed = await self._publisher.bulk_publish(
            call.params["pubsub"],
            call.params["topic"],
            [to_entry(entry, f"body[{i}]") for i, entry in enumerate(entries)],
            call.metadata(),
        )
        if not failed:
            return web.Response(status=204)
        body = {
            "failedEntries": [{"entryId": entry_id, "error": message} for entry_id, message in failed.items()],
            "errorCode": PUBLISH_CODE,
        }
        return web.json_response(body, status=500)

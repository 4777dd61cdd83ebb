"""CloudEvents 1.0 envelopes: wrapping published payloads and reading delivered ones.

Small pure functions; the Pub/Sub API calls them on its way in and out.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from layotto.server.errors import InvalidArgument

CLOUDEVENT_TYPES = ("application/cloudevents+json", "application/cloudevents-batch+json")
EVENT_TYPE = "com.layotto.event.sent"
DEFAULT_CONTENT_TYPE = "text/plain"


def is_json_type(content_type: str) -> bool:
    base = content_type.split(";", maxsplit=1)[0].strip().lower()
    return base == "application/json" or base.endswith("+json")


def _timestamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wrap(
    data: bytes,
    content_type: str,
    *,
    topic: str,
    pubsub: str,
    source: str,
    ttl_seconds: int | None = None,
    traceparent: str = "",
) -> bytes:
    """The envelope for a published payload; a payload that is a CloudEvent already keeps its fields."""
    now = dt.datetime.now(dt.UTC)
    content_type = content_type or DEFAULT_CONTENT_TYPE
    if content_type.split(";")[0].strip().lower() in CLOUDEVENT_TYPES:
        try:
            event = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise InvalidArgument("data", "is not valid JSON, but data_content_type says it is a CloudEvent") from None
        if not isinstance(event, dict):
            raise InvalidArgument("data", "a CloudEvent must be a JSON object")
        event.setdefault("id", str(uuid.uuid4()))
        event.setdefault("specversion", "1.0")
        event.setdefault("source", source)
        event.setdefault("type", EVENT_TYPE)
        event.setdefault("datacontenttype", "application/json")
    else:
        event = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": source,
            "type": EVENT_TYPE,
            "datacontenttype": content_type,
            "time": _timestamp(now),
        }
        if is_json_type(content_type):
            try:
                event["data"] = json.loads(data) if data else None
            except (ValueError, UnicodeDecodeError):
                raise InvalidArgument("data", f"is not valid JSON, but data_content_type is {content_type!r}") from None
        elif content_type.startswith("text/"):
            try:
                event["data"] = data.decode()
            except UnicodeDecodeError:
                event["data_base64"] = base64.b64encode(data).decode()
        else:
            event["data_base64"] = base64.b64encode(data).decode()
    event["topic"], event["pubsubname"] = topic, pubsub
    if traceparent:
        event["traceparent"] = traceparent
    if ttl_seconds:
        event["expiration"] = _timestamp(now + dt.timedelta(seconds=ttl_seconds))
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Event:
    """A delivered message, read back from its envelope (or taken raw)."""

    id: str
    source: str
    type: str
    spec_version: str
    content_type: str
    data: bytes
    expiration: dt.datetime | None = None
    extensions: dict[str, Any] = field(default_factory=dict)

    def expired(self) -> bool:
        return self.expiration is not None and self.expiration <= dt.datetime.now(dt.UTC)


_KNOWN = {
    "id",
    "source",
    "type",
    "specversion",
    "datacontenttype",
    "data",
    "data_base64",
    "expiration",
    "topic",
    "pubsubname",
}


def _payload(event: dict[str, Any], content_type: str) -> bytes:
    if "data_base64" in event:
        try:
            return base64.b64decode(str(event["data_base64"]))
        except binascii.Error:
            return b""
    data = event.get("data")
    if data is None:
        return b""
    if isinstance(data, str) and not is_json_type(content_type):
        return data.encode()
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def unwrap(body: bytes, *, raw: bool = False) -> Event:
    """The event in a broker message; a body that is not a CloudEvent (or ``raw``) is the payload itself."""
    event: Any = None
    if not raw:
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            event = None
    if not isinstance(event, dict) or "specversion" not in event or "id" not in event:
        return Event(
            id=str(uuid.uuid4()),
            source="",
            type="",
            spec_version="1.0",
            content_type="application/octet-stream",
            data=body,
        )
    content_type = str(event.get("datacontenttype") or "application/json")
    expiration = None
    if event.get("expiration"):
        try:
            expiration = dt.datetime.fromisoformat(str(event["expiration"]).replace("Z", "+00:00"))
        except ValueError:
            expiration = None
    return Event(
        id=str(event["id"]),
        source=str(event.get("source", "")),
        type=str(event.get("type", "")),
        spec_version=str(event.get("specversion", "1.0")),
        content_type=content_type,
        data=_payload(event, content_type),
        expiration=expiration,
        extensions={k: v for k, v in event.items() if k not in _KNOWN},
    )

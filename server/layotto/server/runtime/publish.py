"""Publishing events, shared by every front end (gRPC, HTTP): find the pub/sub, check the
payload and its metadata, wrap it in a CloudEvent (unless ``rawPayload``), publish.

Front ends hand over plain values: the topic, the payload bytes, its content type and the
metadata, and the paths (``data``, ``entries[0].event``) their errors name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from layotto.server.components.loader import ComponentSet
from layotto.server.components.pubsub import PubSub
from layotto.server.errors import InvalidArgument, LayottoError, PayloadTooLarge
from layotto.server.runtime import cloudevents
from layotto.server.runtime.delivery import RAW_PAYLOAD
from layotto.server.runtime.validation import TTL_KEY, parse_ttl, require_count
from layotto.tracing import current_traceparent

DEFAULT_MAX_PUBLISH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class BulkEntry:
    """One event of a bulk publish: its id (unique in the request), payload and content type."""

    entry_id: str
    event: bytes
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


def find_pubsub(components: ComponentSet, name: str, field: str) -> PubSub:
    if not name:
        raise InvalidArgument(field, "is empty")
    component = components.find("pubsub", name, field)
    assert isinstance(component, PubSub)
    return component


class Publisher:
    """Publishes events for one runtime (``app_id`` is the CloudEvents ``source``)."""

    def __init__(self, components: ComponentSet, app_id: str, max_publish_bytes: int) -> None:
        self.components = components
        self._app_id = app_id
        self.max_publish_bytes = max_publish_bytes

    def check_size(self, data: bytes, field: str) -> None:
        """Raises PayloadTooLarge naming ``field`` when ``data`` is over the runtime's publish limit."""
        if len(data) > self.max_publish_bytes:
            raise PayloadTooLarge(field, len(data), self.max_publish_bytes)

    async def publish(
        self, pubsub_name: str, topic: str, data: bytes, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        """Raises InvalidArgument (empty names, bad ``ttlInSeconds``), PayloadTooLarge, ComponentNotFound, and
        the broker's errors."""
        pubsub = find_pubsub(self.components, pubsub_name, "pubsub_name")
        if not topic:
            raise InvalidArgument("topic", "is empty")
        sent = dict(metadata)
        body = self._envelope(pubsub.name, topic, data, content_type, sent, field="data", metadata_at="metadata")
        await pubsub.publish(topic, body, sent)

    async def bulk_publish(
        self, pubsub_name: str, topic: str, entries: Sequence[BulkEntry], metadata: Mapping[str, str]
    ) -> dict[str, str]:
        """Publish every entry on its own; the ids of those that failed -> their error message.

        Every entry is checked before any is published (a bad one fails the whole request).
        """
        pubsub = find_pubsub(self.components, pubsub_name, "pubsub_name")
        if not topic:
            raise InvalidArgument("topic", "is empty")
        if not entries:
            raise InvalidArgument("entries", "is empty")
        require_count(entries, "entries")
        seen: set[str] = set()
        bodies = []
        for i, entry in enumerate(entries):
            if not entry.entry_id or entry.entry_id in seen:
                problem = "is empty" if not entry.entry_id else f"{entry.entry_id!r} is not unique"
                raise InvalidArgument(f"entries[{i}].entry_id", problem)
            seen.add(entry.entry_id)
            sent = {**metadata, **entry.metadata}
            where = f"entries[{i}].metadata" if TTL_KEY in entry.metadata else "metadata"
            body = self._envelope(
                pubsub.name,
                topic,
                entry.event,
                entry.content_type,
                sent,
                field=f"entries[{i}].event",
                metadata_at=where,
            )
            bodies.append((entry.entry_id, body, sent))
        failed: dict[str, str] = {}
        for entry_id, body, sent in bodies:
            try:
                await pubsub.publish(topic, body, sent)
            except LayottoError as error:
                failed[entry_id] = error.message
        return failed

    def _envelope(
        self,
        pubsub: str,
        topic: str,
        data: bytes,
        content_type: str,
        metadata: dict[str, str],
        *,
        field: str,
        metadata_at: str,
    ) -> bytes:
        """The bytes a publish sends: the payload in a CloudEvent, or as it is with rawPayload.

        ``metadata`` is checked (``ttlInSeconds``: see :func:`parse_ttl`) and normalised in place:
        a TTL of -1 (none) is removed, so no broker sees it.
        """
        self.check_size(data, field)
        ttl = parse_ttl(metadata, metadata_at)
        if ttl is None:
            metadata.pop(TTL_KEY, None)
        if metadata.get(RAW_PAYLOAD, "").lower() == "true":
            return bytes(data)
        return cloudevents.wrap(
            data,
            content_type,
            topic=topic,
            pubsub=pubsub,
            source=self._app_id,
            ttl_seconds=ttl,
            traceparent=current_traceparent(),
        )

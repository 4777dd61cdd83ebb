"""What the app subscribes to, whoever says it: its listing (AppCallback's ListTopicSubscriptions or an
HTTP app's ``GET /dapr/subscribe``) or Dapr ``Subscription`` manifests in the components directory.

One :class:`TopicSubscription` per (pubsub, topic); its routes are Dapr's: rules tried in order, the
first whose ``match`` (a CEL expression over ``event``, the delivered CloudEvent: ``event.type ==
"order"``, ``event.data.kind.startsWith("a") && !(event.source in ["x"])``) is true gives the path, else
the default path. An event no rule matches and no default takes is skipped (acknowledged), as Dapr
does; a rule whose expression fails on an event (a field it lacks) does not match it. Expressions are
compiled by ``common-expression-language`` when a subscription is read: one it cannot parse refuses
the subscription with one line naming the rule.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cel

from layotto.server.errors import InvalidArgument
from layotto.server.runtime import cloudevents

log = logging.getLogger(__name__)

DEAD_LETTER_METADATA = "deadLetterTopic"
#: the apiVersions of Dapr's Subscription kind
SUBSCRIPTION_API_VERSIONS = ("dapr.io/v1alpha1", "dapr.io/v2alpha1")


@dataclass(frozen=True)
class RouteRule:
    """One routing rule: events matching the CEL expression ``match`` go to ``path``."""

    match: str
    path: str


#: Dapr's defaults and this runtime's bounds for ``bulkSubscribe``
DEFAULT_MAX_MESSAGES = 100
DEFAULT_MAX_AWAIT_MS = 1000
MAX_MESSAGES_RANGE = (1, 10_000)
MAX_AWAIT_MS_RANGE = (1, 60_000)


@dataclass(frozen=True)
class BulkSubscribe:
    """Dapr's ``bulkSubscribe``: events go to the app in batches of at most ``max_messages``, a
    partial batch leaving ``max_await_ms`` milliseconds after its first event."""

    max_messages: int = DEFAULT_MAX_MESSAGES
    max_await_ms: int = DEFAULT_MAX_AWAIT_MS


def _bounded(raw: Any, default: int, bounds: tuple[int, int], field: str) -> int:
    if raw is None or raw == 0:
        return default  # Dapr: unset (0 in the proto) means the default
    if isinstance(raw, bool) or not isinstance(raw, int) or not bounds[0] <= raw <= bounds[1]:
        raise InvalidArgument(field, f"expected an integer from {bounds[0]} to {bounds[1]}, got {raw!r}")
    return raw


def parse_bulk_subscribe(raw: Any, field: str) -> BulkSubscribe | None:
    """The ``bulkSubscribe`` mapping ``{enabled, maxMessagesCount, maxAwaitDurationMs}`` (None when
    absent or not enabled); InvalidArgument naming the field when a value is of the wrong type or
    out of range (maxMessagesCount 1..10000, maxAwaitDurationMs 1..60000; 0 or unset: Dapr's defaults)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidArgument(field, "expected {enabled, maxMessagesCount, maxAwaitDurationMs}")
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InvalidArgument(f"{field}.enabled", f"expected true or false, got {enabled!r}")
    count = _bounded(raw.get("maxMessagesCount"), DEFAULT_MAX_MESSAGES, MAX_MESSAGES_RANGE, f"{field}.maxMessagesCount")
    wait = _bounded(
        raw.get("maxAwaitDurationMs"), DEFAULT_MAX_AWAIT_MS, MAX_AWAIT_MS_RANGE, f"{field}.maxAwaitDurationMs"
    )
    return BulkSubscribe(count, wait) if enabled else None


@dataclass(frozen=True)
class TopicSubscription:
    """One subscription of the app, protocol-neutral. ``path`` is the default route; ``rules`` come
    first; ``scopes``: the app ids a declared subscription is for (empty: every app)."""

    pubsub: str
    topic: str
    metadata: tuple[tuple[str, str], ...]
    dead_letter_topic: str = ""
    path: str = ""
    rules: tuple[RouteRule, ...] = ()
    scopes: tuple[str, ...] = ()
    bulk: BulkSubscribe | None = None

    def route(self, event: Mapping[str, Any]) -> str | None:
        """The path of ``event`` (a CloudEvent as a JSON object); None: no rule nor default takes it."""
        for rule in self.rules:
            if _matches(rule.match, event):
                return rule.path
        return self.path or None

    def applies_to(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes


@functools.lru_cache(maxsize=1024)
def compile_match(expression: str, field: str = "match") -> cel.Program:
    """The compiled CEL ``expression``; InvalidArgument naming ``field`` (one line) when it does not parse."""
    try:
        return cel.compile(expression)
    except (ValueError, RuntimeError, TypeError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidArgument(field, f"cannot parse CEL expression {expression!r}: {first}") from None


def _matches(expression: str, event: Mapping[str, Any]) -> bool:
    if not expression.strip():
        return True
    try:
        return compile_match(expression).execute({"event": dict(event)}) is True
    except Exception as error:  # a field the event lacks, a type mismatch: this rule does not match
        log.debug("rule %r does not apply to event %s: %s", expression, event.get("id"), error)
        return False


def event_json(delivery_event: cloudevents.Event, topic: str, pubsub: str) -> dict[str, Any]:
    """The CloudEvent an app is given for ``delivery_event``: JSON data inline, text as a string,
    anything else (a raw payload included) as ``data_base64``."""
    out: dict[str, Any] = {
        **delivery_event.extensions,
        "specversion": delivery_event.spec_version,
        "id": delivery_event.id,
        "source": delivery_event.source,
        "type": delivery_event.type,
        "datacontenttype": delivery_event.content_type,
        "topic": topic,
        "pubsubname": pubsub,
    }
    data, content_type = delivery_event.data, delivery_event.content_type
    if cloudevents.is_json_type(content_type):
        try:
            out["data"] = json.loads(data) if data else None
            return out
        except (ValueError, UnicodeDecodeError):
            pass
    elif content_type.startswith("text/"):
        try:
            out["data"] = data.decode()
            return out
        except UnicodeDecodeError:
            pass
    out["data_base64"] = base64.b64encode(data).decode()
    return out


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgument(field, f"expected a string, got {type(value).__name__}")
    return value


def _rules(routes: Any, field: str) -> tuple[str, tuple[RouteRule, ...]]:
    """(default path, rules) of Dapr's ``routes: {rules: [{match, path}], default}``."""
    if not isinstance(routes, dict):
        raise InvalidArgument(field, "expected {rules: [{match, path}], default}")
    rules = routes.get("rules") or []
    if not isinstance(rules, list):
        raise InvalidArgument(f"{field}.rules", "expected a list of {match, path}")
    out = []
    for index, rule in enumerate(rules):
        where = f"{field}.rules[{index}]"
        if not isinstance(rule, dict):
            raise InvalidArgument(where, "expected {match, path}")
        match = _text(rule.get("match", ""), f"{where}.match")
        path = _text(rule.get("path", ""), f"{where}.path")
        if not path:
            raise InvalidArgument(f"{where}.path", "required: where matching events go")
        if match.strip():
            compile_match(match, f"{where}.match")
        out.append(RouteRule(match, path))
    return _text(routes.get("default", ""), f"{field}.default"), tuple(out)


def _metadata(raw: Any, field: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise InvalidArgument(field, "expected a mapping of strings")
    return tuple(sorted((str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in raw.items()))


def from_dapr_json(entry: Any, field: str, *, scopes: Sequence[str] = ()) -> TopicSubscription:
    """A subscription of Dapr's JSON shape (``/dapr/subscribe`` entries, a manifest's spec): v1
    ``{pubsubname, topic, route, metadata, deadLetterTopic}`` or v2 with ``routes`` instead of
    ``route``, and ``bulkSubscribe`` (:func:`parse_bulk_subscribe`).
    InvalidArgument naming the field when the shape is wrong."""
    if not isinstance(entry, dict):
        raise InvalidArgument(field, "expected {pubsubname, topic, route | routes}")
    pubsub = _text(entry.get("pubsubname", entry.get("pubsubName", "")), f"{field}.pubsubname")
    topic = _text(entry.get("topic", ""), f"{field}.topic")
    for name, value in (("pubsubname", pubsub), ("topic", topic)):
        if not value:
            raise InvalidArgument(f"{field}.{name}", "required")
    path = _text(entry.get("route", ""), f"{field}.route")
    rules: tuple[RouteRule, ...] = ()
    if entry.get("routes") is not None:
        default, rules = _rules(entry["routes"], f"{field}.routes")
        path = default or path
    metadata = _metadata(entry.get("metadata"), f"{field}.metadata")
    dead_letter = entry.get("deadLetterTopic", "") or dict(metadata).get(DEAD_LETTER_METADATA, "")
    dead_letter = _text(dead_letter, f"{field}.deadLetterTopic")
    bulk = parse_bulk_subscribe(entry.get("bulkSubscribe"), f"{field}.bulkSubscribe")
    return TopicSubscription(pubsub, topic, metadata, dead_letter, path, rules, tuple(scopes), bulk)


def from_subscribe_answer(answer: Any) -> tuple[list[TopicSubscription], list[str]]:
    """(subscriptions, one line per refused entry) of an HTTP app's ``GET /dapr/subscribe`` JSON answer."""
    if not isinstance(answer, list):
        return [], [f"/dapr/subscribe: expected a JSON array of subscriptions, got {type(answer).__name__}"]
    found, refused = [], []
    for index, entry in enumerate(answer):
        try:
            found.append(from_dapr_json(entry, f"/dapr/subscribe[{index}]"))
        except InvalidArgument as error:
            refused.append(error.message)
    return found, refused


def from_listing(response: Any) -> tuple[list[TopicSubscription], list[str]]:
    """(subscriptions, one line per refused entry) of an AppCallback ListTopicSubscriptions answer
    (Layotto's or Dapr's; Dapr's routes rules are kept: an unparsable match refuses its entry)."""
    found, refused = [], []
    for index, sub in enumerate(response.subscriptions):
        metadata = dict(sub.metadata)
        dead_letter = getattr(sub, "dead_letter_topic", "") or metadata.get(DEAD_LETTER_METADATA, "")
        path: str = ""
        rules: tuple[RouteRule, ...] = ()
        if hasattr(sub, "routes"):
            raw_rules = [{"match": r.match, "path": r.path} for r in sub.routes.rules]
            try:
                path, rules = _rules(
                    {"rules": raw_rules, "default": sub.routes.default}, f"subscriptions[{index}].routes"
                )
            except InvalidArgument as error:
                refused.append(error.message)
                continue
        metadata_items = tuple(sorted(metadata.items()))
        try:
            bulk = _listed_bulk(sub, f"subscriptions[{index}].bulk_subscribe")
        except InvalidArgument as error:
            refused.append(error.message)
            continue
        found.append(TopicSubscription(sub.pubsub_name, sub.topic, metadata_items, dead_letter, path, rules, bulk=bulk))
    return found, refused


def _listed_bulk(sub: Any, field: str) -> BulkSubscribe | None:
    if not hasattr(sub, "bulk_subscribe") or not sub.HasField("bulk_subscribe"):
        return None
    config = sub.bulk_subscribe
    raw = {"enabled": config.enabled, "maxMessagesCount": config.max_messages_count}
    raw["maxAwaitDurationMs"] = config.max_await_duration_ms
    return parse_bulk_subscribe(raw, field)


def from_manifest(doc: Mapping[str, Any], where: str) -> TopicSubscription:
    """The subscription of a Dapr ``Subscription`` manifest (v1alpha1 or v2alpha1, ``scopes`` kept);
    InvalidArgument naming the field when it is wrong."""
    if doc.get("apiVersion") not in SUBSCRIPTION_API_VERSIONS:
        raise InvalidArgument(f"{where}: apiVersion", f"expected one of {', '.join(SUBSCRIPTION_API_VERSIONS)}")
    scopes = doc.get("scopes") or []
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidArgument(f"{where}: scopes", "expected a list of app ids")
    return from_dapr_json(doc.get("spec"), f"{where}: spec", scopes=scopes)

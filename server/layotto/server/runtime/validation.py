"""Validation rules shared by every wire API: each raises :class:`InvalidArgument` naming the field.

Every number a client sends is range-checked here before it reaches a component, so
that nothing out of range becomes an INTERNAL error or a stored value a later read
cannot convert. The bounds (all documented in docs/limits.md):

* ``ttlInSeconds`` (state items, published events): 1 .. :data:`MAX_TTL_SECONDS` (10 years), or -1,
  written as plain digits (no spaces, no sign but the one of -1).
* lock expiry: 1 .. :data:`MAX_EXPIRE_SECONDS` (7 days).
* ``maxDeliveryAttempts``: 1 .. :data:`MAX_DELIVERY_ATTEMPTS`.
* ``GetBulkState.parallelism``: 0 .. :data:`MAX_PARALLELISM`.
* component names and app ids: at most :data:`MAX_NAME_BYTES`.
* items of one bulk request (state, bulk publish, configuration items and keys): at most
  :data:`MAX_BULK_ITEMS`.
* enums: only the values the contract names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sized
from typing import TypeAlias

from layotto.server.components.base import Limits
from layotto.server.errors import InvalidArgument
from layotto.server.runtime.keys import SEPARATOR

TTL_KEY = "ttlInSeconds"
NO_TTL = -1
#: the longest time to live a state item or an event may have: 10 years (315,360,000 s), far
#: inside what every store can represent (Redis PEXPIRE, etcd leases, SQL timestamps, datetime)
MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_EXPIRE_SECONDS = 7 * 24 * 3600
MAX_DELIVERY_ATTEMPTS = 1000
MAX_PARALLELISM = 1000
#: items of one bulk request: state items, keys, transaction operations, bulk publish entries,
#: configuration items and keys
MAX_BULK_ITEMS = 10_000
#: the longest component name (store_name, pubsub_name, ...) or app id a request may carry, in UTF-8 bytes
MAX_NAME_BYTES = 256
#: an integer as clients write it: an optional minus sign and at most 19 digits (int64 range)
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_HTTP_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def require_text(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is empty")
    return value


def is_http_token(name: str) -> bool:
    """Whether ``name`` can be an HTTP header field name: a non-empty token of RFC 9110 (section
    5.6.2: letters, digits and ``!#$%&'*+-.^_`|~``)."""
    return _HTTP_TOKEN.fullmatch(name) is not None


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a C0 control character or DEL (none may reach a path or a header)."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def require_name(name: str, field: str) -> str:
    """A component name or an app id of at most :data:`MAX_NAME_BYTES` (the name itself is not
    echoed: it may be of any length)."""
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise InvalidArgument(field, f"{size} bytes is over the {MAX_NAME_BYTES}-byte limit of a name")
    return name


def require_resource(resource: str, field: str = "resource_id") -> str:
    require_text(resource, field)
    if SEPARATOR in resource:
        raise InvalidArgument(field, f"must not contain the reserved separator {SEPARATOR!r}")
    return resource


def require_range(value: int, field: str, minimum: int, maximum: int, unit: str = "") -> int:
    """``value`` if ``minimum <= value <= maximum``, else InvalidArgument naming both bounds."""
    if not minimum <= value <= maximum:
        suffix = f" {unit}" if unit else ""
        raise InvalidArgument(field, f"must be between {minimum} and {maximum}{suffix}, got {value}")
    return value


def require_expire(expire: int, field: str) -> int:
    """A lock's expiry in seconds: 1 .. MAX_EXPIRE_SECONDS."""
    return require_range(expire, field, 1, MAX_EXPIRE_SECONDS, "seconds")


def require_enum(value: int, names: Mapping[int, str], field: str) -> int:
    """``value`` if it is one of the enum's ``names`` (number -> name), else InvalidArgument listing them."""
    if value not in names:
        known = ", ".join(f"{number} ({name})" for number, name in sorted(names.items()))
        raise InvalidArgument(field, f"unknown value {value}, expected one of {known}")
    return value


def require_key(key: str, field: str) -> str:
    if not key:
        raise InvalidArgument(field, "key is empty")
    return key


def require_count(items: Sized, field: str, limit: int = MAX_BULK_ITEMS) -> None:
    """Refuse a repeated field with more than ``limit`` items."""
    if len(items) > limit:
        raise InvalidArgument(field, f"{len(items)} items is over the limit of {limit} in one request")


#: whose limit it is: the name, or a function making it only when a refusal needs it (a hot path's
#: checks then format nothing while the value fits)
Owner: TypeAlias = str | Callable[[], str]


def _named(what: Owner) -> str:
    return what if isinstance(what, str) else what()


def require_size(data: str | bytes, field: str, limit: int | None, what: Owner) -> None:
    """Refuse ``data`` longer than ``limit`` bytes (UTF-8 for text); ``None`` is no limit.

    ``what`` names whose limit it is, e.g. "state store 'mysql'".
    """
    if limit is None:
        return
    size = len(data.encode()) if isinstance(data, str) else len(data)
    if size > limit:
        raise InvalidArgument(field, f"{size} bytes is over the {limit}-byte limit of {_named(what)}")


def require_storable(text: str, field: str, limits: Limits, what: Owner, *, sized: bool = True) -> None:
    """Refuse a key (or other stored text, ``sized=False``: a lock owner) the component cannot
    store: longer than ``limits.max_key_bytes``, or holding NUL where ``limits.text_without_nul``.
    ``what`` names the component, e.g. "state store 's' (postgresql)"."""
    if sized:
        require_size(text, field, limits.max_key_bytes, what)
    if limits.text_without_nul and "\x00" in text:
        at = text.index("\x00")
        raise InvalidArgument(field, f"contains NUL (U+0000, at character {at}), which {_named(what)} cannot store")


def parse_int(raw: str, field: str, minimum: int, maximum: int, unit: str = "") -> int:
    """A decimal integer sent as text (metadata values): ASCII digits with an optional leading
    minus, nothing around them (no spaces, no "+"), range-checked."""
    if not _INTEGER.fullmatch(raw):
        raise InvalidArgument(field, f"expected an integer between {minimum} and {maximum}, got {raw[:40]!r}")
    return require_range(int(raw), field, minimum, maximum, unit)


def parse_ttl(metadata: Mapping[str, str], field: str) -> int | None:
    """``ttlInSeconds`` of ``metadata``: 1 .. MAX_TTL_SECONDS, or -1 (and absent) for no TTL.

    ``field`` is where the metadata is (``states[0].metadata``); errors name ``field.ttlInSeconds``.
    """
    raw = metadata.get(TTL_KEY)
    if raw is None:
        return None
    where = f"{field}.{TTL_KEY}"
    if raw == str(NO_TTL):
        return None
    if not _INTEGER.fullmatch(raw):  # plain ASCII digits: no spaces, no "+", no "1_0"
        raise InvalidArgument(where, f"expected an integer number of seconds, got {raw[:40]!r}")
    seconds = int(raw)
    if not 1 <= seconds <= MAX_TTL_SECONDS:
        raise InvalidArgument(
            where, f"must be -1 (no TTL) or between 1 and {MAX_TTL_SECONDS} seconds (10 years), got {raw[:40]}"
        )
    return seconds


def parse_max_delivery_attempts(metadata: Mapping[str, str], field: str, default: int) -> int:
    """``maxDeliveryAttempts`` of subscription ``metadata``: 1 .. MAX_DELIVERY_ATTEMPTS."""
    raw = metadata.get("maxDeliveryAttempts")
    if raw is None:
        return default
    return parse_int(raw, f"{field}.maxDeliveryAttempts", 1, MAX_DELIVERY_ATTEMPTS)

"""Validation rules shared by every wire API: each raises :class:`InvalidArgument` naming the field."""

from __future__ import annotations

from collections.abc import Mapping

from layotto.server.components.lock import SEPARATOR
from layotto.server.errors import InvalidArgument

TTL_KEY = "ttlInSeconds"
NO_TTL = -1
MAX_EXPIRE_SECONDS = 7 * 24 * 3600


def require_text(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is empty")
    return value


def require_resource(resource: str, field: str = "resource_id") -> str:
    require_text(resource, field)
    if SEPARATOR in resource:
        raise InvalidArgument(field, f"must not contain the reserved separator {SEPARATOR!r}")
    return resource


def require_expire(expire: int, field: str) -> int:
    if expire <= 0:
        raise InvalidArgument(field, f"must be a positive number of seconds, got {expire}")
    if expire > MAX_EXPIRE_SECONDS:
        raise InvalidArgument(field, f"must be at most {MAX_EXPIRE_SECONDS} seconds, got {expire}")
    return expire


def require_key(key: str, field: str) -> str:
    if not key:
        raise InvalidArgument(field, "key is empty")
    return key


def parse_ttl(metadata: Mapping[str, str], field: str) -> int | None:
    """ttlInSeconds: a positive number of seconds, or -1 (and absent) for no TTL."""
    raw = metadata.get(TTL_KEY)
    if raw is None:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        raise InvalidArgument(f"{field}.{TTL_KEY}", f"expected an integer number of seconds, got {raw!r}") from None
    if seconds == NO_TTL:
        return None
    if seconds <= 0:
        raise InvalidArgument(f"{field}.{TTL_KEY}", f"must be a positive number of seconds or -1, got {seconds}")
    return seconds

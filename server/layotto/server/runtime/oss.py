"""The object storage semantics (Layotto's ``ObjectStorageService``), free of any wire format: finding
the store a request names and checking what every store needs, each error naming the request field.

Numbers: a listing's size (``maxKeys``, ``max_uploads``, ``max_parts``) 0 means the most a page holds
(:data:`~layotto.server.components.oss.MAX_LIST_ENTRIES`), larger values are served as that, negative
ones are refused; part numbers are 1 .. 10000; byte ranges, positions and times are never negative;
a signed URL lives 1 s .. 7 days.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime

from layotto.server.components.loader import ComponentSet
from layotto.server.components.oss import (
    CANNED_ACLS,
    MAX_LIST_ENTRIES,
    MAX_PART_NUMBER,
    MAX_SIGN_SECONDS,
    ByteRange,
    Listing,
    ObjectRef,
    ObjectStore,
    check_bucket,
    check_key,
)
from layotto.server.errors import InvalidArgument

#: S3's limits on an object's tags
MAX_TAGS = 10
MAX_TAG_KEY_CHARS = 128
MAX_TAG_VALUE_CHARS = 256
SIGN_METHODS = ("GET", "PUT")
TAG_PUNCTUATION = frozenset("_.:/=+-@")


class ObjectService:
    """The runtime's object stores, as the ObjectStorageService uses them."""

    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    def store(self, name: str, field: str = "store_name") -> ObjectStore:
        store = self._components.find("oss", name, field)
        assert isinstance(store, ObjectStore)
        return store


def object_ref(
    bucket: str,
    key: str,
    version_id: str = "",
    *,
    bucket_field: str = "bucket",
    key_field: str = "key",
    version_field: str = "version_id",
) -> ObjectRef:
    """A checked reference to an object."""
    check_bucket(bucket, bucket_field)
    check_key(key, key_field)
    if "\x00" in version_id:
        raise InvalidArgument(version_field, "must not contain NUL")
    return ObjectRef(bucket, key, version_id, bucket_field, key_field, version_field)


def bucket_ref(bucket: str, field: str = "bucket") -> ObjectRef:
    return ObjectRef(check_bucket(bucket, field), bucket_field=field)


def listing(
    prefix: str, delimiter: str, marker: str, limit: int, limit_field: str, *, second_marker: str = ""
) -> Listing:
    """A checked listing request (``limit`` 0: the most a page holds)."""
    for value, name in ((prefix, "prefix"), (delimiter, "delimiter"), (marker, "marker")):
        if "\x00" in value:
            raise InvalidArgument(name, "must not contain NUL")
    return Listing(prefix, delimiter, marker, page_size(limit, limit_field), second_marker)


def page_size(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(field, f"must not be negative, got {value}")
    return min(value or MAX_LIST_ENTRIES, MAX_LIST_ENTRIES)


def part_number(value: int, field: str = "part_number") -> int:
    if not 1 <= value <= MAX_PART_NUMBER:
        raise InvalidArgument(field, f"must be between 1 and {MAX_PART_NUMBER}, got {value}")
    return value


def not_negative(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument(field, f"must not be negative, got {value}")
    return value


def byte_range(start: int, end: int, start_field: str = "start", end_field: str = "end") -> ByteRange | None:
    """Bytes ``start`` .. ``end`` inclusive (Layotto's GetObject); both 0: the whole object, ``end`` 0: to the end."""
    not_negative(start, start_field)
    not_negative(end, end_field)
    if start == 0 and end == 0:
        return None
    if end and end < start:
        raise InvalidArgument(end_field, f"must not be below {start_field} ({start}), got {end}")
    return ByteRange(start, end or None)


def canned_acl(acl: str, field: str = "acl", *, required: bool = False) -> str:
    if (acl or required) and acl not in CANNED_ACLS:
        raise InvalidArgument(field, f"expected one of {', '.join(CANNED_ACLS)}, got {acl!r}")
    return acl


def tags(values: Mapping[str, str], field: str = "tagging") -> dict[str, str]:
    """Tags within S3's limits: at most 10, keys 1 .. 128 characters, values at most 256, of letters,
    digits, spaces and ``_ . : / = + - @``; InvalidArgument naming ``field`` (and the key) otherwise."""
    if len(values) > MAX_TAGS:
        raise InvalidArgument(field, f"at most {MAX_TAGS} tags, got {len(values)}")
    for key, value in values.items():
        if not key or len(key) > MAX_TAG_KEY_CHARS:
            raise InvalidArgument(f"{field}[{key!r}]", f"a tag key has 1 .. {MAX_TAG_KEY_CHARS} characters")
        if len(value) > MAX_TAG_VALUE_CHARS:
            raise InvalidArgument(f"{field}[{key!r}]", f"a tag value has at most {MAX_TAG_VALUE_CHARS} characters")
        if "\x00" in key + value:
            raise InvalidArgument(f"{field}[{key!r}]", "must not contain NUL")
        if key.lower().startswith("aws:"):
            raise InvalidArgument(f"{field}[{key!r}]", "the prefix aws: is reserved for AWS's own tags")
        odd = next((char for char in key + value if not _is_tag_char(char)), None)
        if odd is not None:
            raise InvalidArgument(
                f"{field}[{key!r}]", f"{odd!r} is not allowed in a tag (letters, digits, spaces and _ . : / = + - @)"
            )
    return dict(values)


def _is_tag_char(char: str) -> bool:
    """S3's tag alphabet: Unicode letters, numbers and spaces, and ``_ . : / = + - @``."""
    return char in TAG_PUNCTUATION or unicodedata.category(char)[0] in "LNZ"


def expiry(seconds: int, field: str = "expires") -> datetime | None:
    """An absolute Unix time in seconds (0: none)."""
    not_negative(seconds, field)
    if not seconds:
        return None
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidArgument(field, f"is not a time in Unix seconds: {seconds}") from None


def sign_method(method: str, field: str = "method") -> str:
    upper = method.upper()
    if upper not in SIGN_METHODS:
        raise InvalidArgument(field, f"expected one of {', '.join(SIGN_METHODS)}, got {method!r}")
    return upper


def sign_seconds(seconds: int, field: str = "expired_in_sec") -> int:
    if not 1 <= seconds <= MAX_SIGN_SECONDS:
        raise InvalidArgument(field, f"must be between 1 and {MAX_SIGN_SECONDS}, got {seconds}")
    return seconds


def bandwidth(bits_per_second: int, field: str = "average_rate_limit_in_bits_per_sec") -> int:
    if bits_per_second < 0:
        raise InvalidArgument(field, f"must not be negative, got {bits_per_second}")
    return bits_per_second

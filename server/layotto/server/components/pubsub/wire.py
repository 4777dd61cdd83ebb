"""What a broker's protocol carries of topics and metadata, and how the rest travels.

Every broker either carries a topic and each metadata entry exactly or refuses it with
:class:`~layotto.server.errors.InvalidArgument` naming ``topic`` or ``metadata.<key>``,
before anything reaches the connection that other requests share.

Metadata entries a protocol cannot carry as they are (a control character in an MQTT user
property, a line break in a NATS header, an AMQP ``CC`` header, an over-long key, ...)
travel together as JSON (ASCII only) in the one reserved entry :data:`PACKED_KEY` and are
unpacked on delivery, so subscribers see exactly what was published.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping

from layotto.server.errors import InvalidArgument

#: the metadata entry carrying, as a JSON object, the entries a protocol cannot carry as they are
PACKED_KEY = "layotto-metadata"
#: the most metadata (keys and values, UTF-8 bytes, as carried) one message may have
MAX_METADATA_BYTES = 64 * 1024

Carries = Callable[[str, str], bool]


def pack_metadata(metadata: Mapping[str, str], carries: Carries, limit: int = MAX_METADATA_BYTES) -> dict[str, str]:
    """The entries to send: those ``carries(key, value)`` accepts as they are, plus
    :data:`PACKED_KEY` holding the others. Raises InvalidArgument (``metadata.<key>`` of the
    largest entry) when the result is over ``limit`` bytes."""
    plain: dict[str, str] = {}
    packed: dict[str, str] = {}
    for key, value in metadata.items():
        if key != PACKED_KEY and carries(key, value):
            plain[key] = value
        else:
            packed[key] = value
    if packed:
        plain[PACKED_KEY] = json.dumps(packed, ensure_ascii=True, separators=(",", ":"))
    size = sum(len(k.encode()) + len(v.encode()) for k, v in plain.items())
    if size > limit:
        largest = max(metadata, key=lambda k: len(k.encode()) + len(metadata[k].encode()))
        raise InvalidArgument(
            f"metadata.{largest}", f"the metadata is {size} bytes as carried, over the {limit}-byte limit"
        )
    return plain


def unpack_metadata(carried: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The metadata as published, from the entries :func:`pack_metadata` sent."""
    metadata: dict[str, str] = {}
    packed = ""
    for key, value in carried:
        if key == PACKED_KEY:
            packed = value
        else:
            metadata[key] = value
    if packed:
        try:
            entries = json.loads(packed)
        except ValueError:
            entries = {PACKED_KEY: packed}  # not ours: kept as it came
        if isinstance(entries, dict):
            metadata.update({str(k): str(v) for k, v in entries.items()})
    return metadata


def describe(char: str) -> str:
    """``U+0009 (a control character)``: a character named for an error message."""
    name = unicodedata.name(char, "a control character" if unicodedata.category(char) == "Cc" else "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def first(text: str, unwanted: Callable[[str], bool]) -> str | None:
    """The first character of ``text`` that is ``unwanted``, if any."""
    return next((char for char in text if unwanted(char)), None)


def is_control(char: str) -> bool:
    """C0 and C1 control characters (U+0000-U+001F, U+007F-U+009F)."""
    return unicodedata.category(char) == "Cc"


def check_topic(
    topic: str,
    broker: str,
    *,
    unwanted: Callable[[str], bool] = is_control,
    wildcards: str = "",
    max_bytes: int | None = None,
    reserved_prefix: str = "",
) -> None:
    """Refuse (InvalidArgument ``topic``) a topic ``broker`` cannot carry exactly: one with an
    ``unwanted`` character, a wildcard character, more than ``max_bytes`` UTF-8 bytes, or the
    ``reserved_prefix`` the broker keeps for itself."""
    bad = first(topic, unwanted)
    if bad is not None:
        raise InvalidArgument("topic", f"contains {describe(bad)}, which {broker} topics cannot carry")
    wildcard = first(topic, lambda char: char in wildcards)
    if wildcard is not None:
        raise InvalidArgument("topic", f"contains {wildcard!r}, a {broker} wildcard, which this topic cannot have")
    if max_bytes is not None and len(topic.encode()) > max_bytes:
        raise InvalidArgument("topic", f"is {len(topic.encode())} bytes, over the {max_bytes}-byte limit of {broker}")
    if reserved_prefix and topic.startswith(reserved_prefix):
        raise InvalidArgument("topic", f"starts with {reserved_prefix!r}, which {broker} reserves")

"""The Sequencer building block: distributed ids, unique and increasing per key.

A component hands out blocks: ``next_block(key, size)`` reserves ``size`` new ids and
returns the last one, so the block is ``last - size + 1 .. last``. STRONG requests take
blocks of one, straight from the store; WEAK requests are served by the runtime from a
cached block (see the Sequencer API), which is why every store must reserve blocks
atomically. Ids start at 1 and a reserved id is never handed out again, even after a
restart: a runtime that stops loses the rest of its cached block, it never reuses it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from layotto.server.components.base import Component, MetadataField

SEGMENT_SIZE = MetadataField(
    "segmentSize",
    "How many ids a runtime reserves at once for WEAK requests.",
    type=int,
    default=1000,
    minimum=1,
    maximum=1_000_000,
)


#: the highest biggerThan floor: ids are int64 on the wire, and this leaves 2**63 - 9e18 (about 2e17) above it
MAX_FLOOR = 9_000_000_000_000_000_000

BIGGER_THAN = MetadataField(
    "biggerThan",
    "Keys whose ids must start above a value, as a JSON object (Layotto's biggerThan), "
    'e.g. {"orders": 100000}; applied to each key before its first id.',
    type=dict,
    default={},
    value_type=int,
    minimum=0,
    maximum=MAX_FLOOR,
)


def floors(metadata: Mapping[str, Any]) -> Mapping[str, int]:
    """The biggerThan floors of a component's parsed metadata (checked to be integers at load)."""
    found: Mapping[str, int] = metadata.get("biggerThan") or {}
    return found


class Sequencer(Component):
    @abstractmethod
    async def next_block(self, key: str, size: int) -> int:
        """Reserve ``size`` consecutive new ids for ``key``; return the last of them."""

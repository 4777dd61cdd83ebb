"""``layotto replay``: send captured unary calls again, in order, to a runtime.

Each record's request bytes go to its method as they were received, with its metadata (but gRPC's
own keys: ``:authority``, ``grpc-*``, ``user-agent``, ``content-type``, ``te``) and, when given, a
``dapr-api-token`` for the target (credentials are never captured). Calls are sent one at a time,
so state changes land in the order they were captured; ``rate`` caps the calls per second.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from layotto.server.traffic.files import ReplayCall, read_calls

_TRANSPORT_KEYS = ("user-agent", "content-type", "te")


@dataclass
class ReplayReport:
    """What a replay did: calls sent, by the status the target answered; how many differ from the capture's."""

    by_status: collections.Counter[str] = field(default_factory=collections.Counter)
    differing: int = 0

    @property
    def sent(self) -> int:
        return sum(self.by_status.values())

    def lines(self) -> list[str]:
        """The report for a person: a total, a line per status (most frequent first), the differences."""
        out = [f"replayed {self.sent} calls"]
        out += [f"  {status} {count}" for status, count in self.by_status.most_common()]
        out.append(f"status different from the captured one: {self.differing}")
        return out


def _sendable(metadata: Iterable[tuple[str, str | bytes]], token: str) -> list[tuple[str, str | bytes]]:
    kept = [
        (key, value) for key, value in metadata if not key.startswith((":", "grpc-")) and key not in _TRANSPORT_KEYS
    ]
    return [*kept, ("dapr-api-token", token)] if token else kept


async def _send(channel: grpc.aio.Channel, call: ReplayCall, token: str, timeout: float) -> str:
    stub: Any = channel.unary_unary(call.method, None, None)  # no serializers: the bytes go as they are
    try:
        await stub(call.request, metadata=_sendable(call.metadata, token), timeout=timeout)
    except grpc.aio.AioRpcError as error:
        return str(error.code().name)
    return "OK"


async def replay(
    paths: Iterable[Path], target: str, *, rate: float = 0.0, token: str = "", timeout: float = 10.0
) -> ReplayReport:
    """Replay the records of ``paths`` (capture files or their directories) to ``target`` (HOST:PORT or unix:PATH).

    ``rate``: at most this many calls a second (0: as fast as the target answers, one at a time);
    ``token``: sent as ``dapr-api-token``; ``timeout``: seconds per call. Raises ValueError for a
    file that is not a capture file (naming the file and line), OSError for one that cannot be read.
    """
    report = ReplayReport()
    loop = asyncio.get_running_loop()
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = loop.time()
    async with grpc.aio.insecure_channel(target) as channel:
        for call in read_calls(list(paths)):
            if interval:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
                next_at = max(next_at, loop.time()) + interval
            status = await _send(channel, call, token, timeout)
            report.by_status[status] += 1
            report.differing += status != call.status
    return report

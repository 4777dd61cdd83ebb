"""The runtime's own Python work per invocation, without the network: what is left to trim.

Sidecar A's ``InvokeService`` (a client's call: validation, the invocation metrics, name
resolution, the hop request and its metadata, the forwarder's message) and sidecar B's (a hop:
the hop's checks, the app channel's ``OnInvoke`` message and metadata), each through the real
``InvokeApi``, ``Invoker`` and channel classes, with the grpc.aio stub replaced by one whose calls
answer at once (the one place this script reaches into the channels' private attributes). CPU
time of this process (``time.process_time``), the best of 5 batches of 20,000 calls.

    python bench/invocation_handler.py

Not covered: the transport, the interceptors and the API adapter around the handler, and the
grpc.aio call itself (bench/floors.py measures those in the running processes).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from invocation import PAYLOAD

from layotto.proto.dapr.common.v1 import common_pb2
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.api.invoke import InvokeApi
from layotto.server.invoke_channels import GrpcAppChannel, GrpcSidecarForwarder
from layotto.server.metrics import RuntimeMetrics
from layotto.server.runtime.invocation import Invoker

SIDECAR_B = "127.0.0.1:1"


class OneSidecar:
    """Static name resolution: app ``b`` is served at :data:`SIDECAR_B`."""

    async def resolve(self, app_id: str) -> Sequence[str]:
        return (SIDECAR_B,)


class AnsweredCall:
    """A finished grpc.aio unary call: awaiting it gives the answer, no initial metadata."""

    def __init__(self, answer: Any) -> None:
        self._answer = answer

    def __await__(self) -> Generator[Any, None, Any]:
        return self._answer
        yield  # a generator: awaitable without suspending

    async def initial_metadata(self) -> tuple[()]:
        return ()


class AnsweringStub:
    """Dapr's ``InvokeService`` and ``OnInvoke``, answered at once with the echo."""

    def __init__(self) -> None:
        self._answer = common_pb2.InvokeResponse(content_type="application/octet-stream")
        self._answer.data.value = PAYLOAD

    def InvokeService(self, message: Any, timeout: float | None = None, metadata: Any = None) -> AnsweredCall:
        return AnsweredCall(self._answer)

    OnInvoke = InvokeService


class Context:
    """What ``InvokeService`` reads of a call's context."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> None:
        return None

    async def send_initial_metadata(self, metadata: Any) -> None:
        return None


async def main() -> None:
    forwarder = GrpcSidecarForwarder(max_message_bytes=4 << 20)
    forwarder._stubs[SIDECAR_B] = (None, AnsweringStub())  # type: ignore[assignment]
    app_channel = GrpcAppChannel("b", SIDECAR_B, max_message_bytes=4 << 20)
    app_channel._stub = AnsweringStub()
    a = Invoker("a", OneSidecar(), forwarder, None)
    a.metrics = RuntimeMetrics("a").invocation
    b = Invoker("b", OneSidecar(), forwarder, app_channel)
    b.metrics = RuntimeMetrics("b").invocation
    request = pb.InvokeServiceRequest(id="b")
    request.message.method, request.message.content_type = "echo", "application/octet-stream"
    request.message.data.value = PAYLOAD
    client = (("user-agent", "grpc-python"),)
    hop = (*client, ("layotto-invoke-hop", "1"), ("layotto-caller-app-id", "a"))
    for name, api, context in (
        ("sidecar A (a client's call, forwarded)", InvokeApi(a, pb.InvokeResponse), Context(client)),
        ("sidecar B (a hop, to the app)", InvokeApi(b, pb.InvokeResponse), Context(hop)),
    ):
        batches = []
        for _ in range(5):
            started = time.process_time()
            for _ in range(20_000):
                await api.InvokeService(request, context)  # type: ignore[arg-type]
            batches.append((time.process_time() - started) / 20_000 * 1e6)
        print(f"{name}: {min(batches):.1f} µs per call (best of 5 x 20,000)")
    await app_channel.aclose()  # the forwarder opened no channel: its one stub is the answering one


if __name__ == "__main__":
    asyncio.run(main())

"""The metrics' cost per call in the server's own per-call path: two runtimes in this process (the
native transport, an in-memory store), metrics off and on, each GetState run through pygrpc-native's
``Server._run`` (its interceptors, decoding, the runtime's handler, encoding) with the call's answer
handed to a stub instead of the network front. CPU time of this thread (``time.thread_time``) per
call, over 40 alternating batches of 2,000 calls: other processes on a shared machine change it far
less than wall time. Reaches into pygrpc-native's and the runtime's private attributes (0.5.x).

    python bench/metrics_per_call.py
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from typing import Any

import pygrpc_native.aio as native

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server import Runtime, embedded_defaults
from layotto.server.config import ComponentConfig

BATCHES, CALLS = 40, 2_000
METHOD = "/spec.proto.runtime.v1.Runtime/GetState"


class _Front:
    """The native front, whose answers go nowhere (the rest is the front's own)."""

    def __init__(self, front: Any) -> None:
        self.front = front

    def respond(self, *args: Any, **kwargs: Any) -> None:
        pass

    def fail(self, *args: Any) -> None:
        raise AssertionError(f"the call failed: {args}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.front, name)


async def _runtime(data_dir: str, metrics: bool) -> tuple[Runtime, Any, Any]:
    """A started runtime, its pygrpc-native server (front stubbed) and its GetState handler."""
    config = embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=data_dir,
        grpc_transport="native",
        metrics_enabled=metrics,
        components={"state": {"bench": ComponentConfig(type="in-memory")}},
    )
    runtime = Runtime(config)
    await runtime.start()
    server = runtime._server
    server._front = _Front(server._front)  # type: ignore[union-attr]
    handler = next(handler for path, handler in server._table if path == METHOD)  # type: ignore[union-attr]
    return runtime, server, handler


async def _calls(server: Any, handler: Any, payload: bytes, count: int) -> None:
    for _ in range(count):
        await server._run(
            native._Call(1, METHOD, handler, (("user-agent", "bench"),), "ipv4:127.0.0.1:1", None), payload
        )


async def main() -> None:
    payload = pb.GetStateRequest(store_name="bench", key="k").SerializeToString()
    with tempfile.TemporaryDirectory() as off_dir, tempfile.TemporaryDirectory() as on_dir:
        runtimes = {"metrics off": await _runtime(off_dir, False), "metrics on": await _runtime(on_dir, True)}
        gc.freeze()  # as `layotto serve` does after start-up
        micros: dict[str, list[float]] = {name: [] for name in runtimes}
        try:
            for _ in range(BATCHES):
                for name, (_, server, handler) in runtimes.items():
                    started = time.thread_time()
                    await _calls(server, handler, payload, CALLS)
                    micros[name].append((time.thread_time() - started) / CALLS * 1e6)
        finally:
            for runtime, server, _ in runtimes.values():
                server._front = server._front.front
                await runtime.stop(grace=0.5)
    print("| GetState through pygrpc-native's Server._run | CPU µs per call, median | 10th percentile |")
    print("|---|---|---|")
    for name, values in micros.items():
        print(f"| {name} | {statistics.median(values):.2f} | {statistics.quantiles(values, n=10)[0]:.2f} |")
    added = statistics.median(micros["metrics on"]) - statistics.median(micros["metrics off"])
    print(f"added by the metrics: {added:.2f} µs per call")


if __name__ == "__main__":
    asyncio.run(main())

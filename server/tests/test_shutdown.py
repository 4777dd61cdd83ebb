"""SIGTERM under a burst of calls: each call is served or answered UNAVAILABLE (never CANCELLED),
and what was acknowledged is there after a restart."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import grpc
from server_helpers import ServerProcess, start_server

from layotto.client import RetryPolicy, RuntimeClient
from layotto.proto.dapr.runtime.v1 import dapr_pb2, dapr_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

BURST = 64


def _restart(stopped: ServerProcess, data_dir: Path) -> ServerProcess:
    """The runtime again on the same addresses and data directory."""
    return start_server(data_dir=data_dir, grpc_address=stopped.grpc_address, http_address=stopped.http_address)


async def test_sigterm_during_a_burst_serves_or_refuses_each_call(tmp_path: Path) -> None:
    server = start_server(data_dir=tmp_path)
    async with grpc.aio.insecure_channel(server.grpc_address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await stub.SaveState(pb.SaveStateRequest(store_name="sqlite", states=[]), timeout=10)  # connected

        refusals: list[str] = []

        async def save(i: int) -> grpc.StatusCode:
            item = pb.StateItem(key=f"burst-{i}", value=f"v{i}".encode())
            try:
                await stub.SaveState(pb.SaveStateRequest(store_name="sqlite", states=[item]), timeout=20)
            except grpc.aio.AioRpcError as error:
                refusals.append(error.details() or "")
                return error.code()
            return grpc.StatusCode.OK

        calls = [asyncio.ensure_future(save(i)) for i in range(BURST)]
        await asyncio.sleep(0.01)  # the calls are on the wire
        code, stderr = server.terminate()
        outcomes = await asyncio.gather(*calls)
    assert code == 0, stderr
    assert set(outcomes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, Counter(outcomes)
    # refused by the runtime (reason RUNTIME_SHUTTING_DOWN), or never connected
    assert all("shutting down" in message or "connect" in message for message in refusals), refusals

    saved = [i for i, outcome in enumerate(outcomes) if outcome is grpc.StatusCode.OK]
    restarted = _restart(server, tmp_path)
    try:
        async with RuntimeClient(restarted.grpc_address, timeout=10) as client:
            for i in saved:  # acknowledged means durable
                assert (await client.state.get("sqlite", f"burst-{i}")).value == f"v{i}".encode()
    finally:
        restarted.terminate()


async def test_the_sdk_retries_a_refused_call_against_the_restarted_runtime(tmp_path: Path) -> None:
    server = start_server(data_dir=tmp_path)
    patient = RetryPolicy(attempts=60, initial_backoff=0.1, max_backoff=1.0)
    restarted: ServerProcess | None = None
    try:
        async with RuntimeClient(server.grpc_address, retry=patient, timeout=10) as client:
            await client.state.save("sqlite", "warm-up", "x")
            calls = [asyncio.ensure_future(client.state.save("sqlite", f"retried-{i}", f"v{i}")) for i in range(BURST)]
            await asyncio.sleep(0.01)
            code, stderr = server.terminate()
            assert code == 0, stderr
            restarted = _restart(server, tmp_path)
            await asyncio.gather(*calls)  # every one succeeded, on the first runtime or the second
            for i in range(BURST):
                assert (await client.state.get("sqlite", f"retried-{i}")).value == f"v{i}".encode()
    finally:
        if restarted is not None:
            restarted.terminate()


async def test_the_log_says_what_asked_the_runtime_to_stop(tmp_path: Path) -> None:
    server = start_server(data_dir=tmp_path / "rpc")
    try:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            await dapr_pb2_grpc.DaprStub(channel).Shutdown(dapr_pb2.ShutdownRequest(), timeout=10)
        _, stderr = server.process.communicate(timeout=30)
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert server.process.returncode == 0, stderr
    assert "shutting down (requested by the Dapr Shutdown RPC)" in stderr, stderr
    code, stderr = start_server(data_dir=tmp_path / "signal").terminate()
    assert code == 0 and "shutting down (requested by SIGTERM)" in stderr, stderr


def test_wrapper_cache_keeps_a_wrapper_while_the_inner_handler_is_the_same() -> None:
    from layotto.server.shutdown_gate import WrapperCache

    cache, made = WrapperCache(limit=2), []

    def wrap(method: str, handler: object) -> object:
        made.append(handler)
        return ("wrapped", handler)

    first, second = object(), object()
    assert cache.get("/a", first, wrap) is cache.get("/a", first, wrap) and made == [first]
    assert cache.get("/a", second, wrap) == ("wrapped", second), "a new inner handler: a new wrapper"
    assert cache.get("/a", second, wrap) is cache.get("/a", second, wrap) and made == [first, second]
    cache.get("/b", first, wrap)
    cache.get("/c", first, wrap)
    cache.get("/c", first, wrap)
    assert made[-2:] == [first, first], "beyond the limit a method's handler is wrapped per call"

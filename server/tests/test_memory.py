"""Memory of a `layotto serve` process returns to its baseline after large requests are refused."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import grpc
import pytest
from server_helpers import start_server

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

MiB = 1024 * 1024
#: how far above its baseline the process may stay; refusals without the malloc settings left 130+ MiB
BOUND_MIB = 40


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
async def test_twenty_refused_50_mib_requests_leave_no_memory_behind(tmp_path: Path) -> None:
    server = start_server(data_dir=tmp_path)
    pid = server.process.pid
    try:
        options = [("grpc.max_send_message_length", 64 * MiB)]
        async with grpc.aio.insecure_channel(server.grpc_address, options=options) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            for i in range(20):  # warm: the first calls' one-time allocations are part of the baseline
                item = pb.StateItem(key=f"warm-{i}", value=b"x" * 1000)
                await stub.SaveState(pb.SaveStateRequest(store_name="in-memory", states=[item]), timeout=10)
            await asyncio.sleep(0.5)
            baseline = rss_mib(pid)
            big = pb.SaveStateRequest(store_name="in-memory", states=[pb.StateItem(key="big", value=b"x" * 50 * MiB)])
            for _ in range(20):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.SaveState(big, timeout=60)
                assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        await asyncio.sleep(1.0)  # the connection is closed
        after = rss_mib(pid)
        assert after - baseline < BOUND_MIB, f"RSS {baseline:.0f} MiB before the refusals, {after:.0f} MiB after"
        assert server.http_get("/actuator/health/liveness")[0] == 200
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr

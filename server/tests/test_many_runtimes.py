"""Several `layotto serve` processes on one real store: no lost update."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import backends
import pytest
import yaml
from server_helpers import ServerProcess, start_server

from layotto.client import EtagMismatch, RuntimeClient

RUNTIMES, CLIENTS, CYCLES = 3, 50, 100


def start_runtimes(tmp_path: Path, backend: str) -> list[ServerProcess]:
    namespace = uuid.uuid4().hex[:10]
    config = {"state": {"shared": {"type": backend, "metadata": backends.state_metadata(backend, namespace)}}}
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(config))
    return [start_server("-c", str(path), data_dir=tmp_path / f"rt{i}") for i in range(RUNTIMES)]


async def increment(client: RuntimeClient, key: str) -> tuple[int, int]:
    """CYCLES etag-guarded read-increment-write cycles: (writes that landed, conflicts)."""
    landed = conflicts = 0
    for _ in range(CYCLES):
        item = await client.state.get("shared", key)
        try:
            await client.state.save("shared", key, str(int(item.value or b"0") + 1), etag=item.etag)
            landed += 1
        except EtagMismatch:
            conflicts += 1  # someone else wrote first: the next cycle retries on fresh data
    return landed, conflicts


@pytest.mark.parametrize("backend", ["redis", "postgresql"])
async def test_three_runtimes_lose_no_update(tmp_path: Path, backend: str) -> None:
    backends.require(backend)
    servers = start_runtimes(tmp_path, backend)
    try:
        clients = [RuntimeClient(servers[i % RUNTIMES].grpc_address) for i in range(CLIENTS)]
        await clients[0].state.save("shared", "counter", "0")
        outcomes = await asyncio.gather(*(increment(c, "counter") for c in clients))
        landed = sum(o[0] for o in outcomes)
        conflicts = sum(o[1] for o in outcomes)
        final = int((await clients[1].state.get("shared", "counter")).value)
        assert final == landed, f"{landed} writes landed but the counter reads {final}: an update was lost"
        assert conflicts > 0, "the clients never contended: the test proved nothing"
        assert landed + conflicts == CLIENTS * CYCLES
        for client in clients:
            await client.aclose()
    finally:
        for server in servers:
            code, stderr = server.terminate()
            assert code == 0, stderr

"""Locks and sequences across three `layotto serve` processes on one Redis and on one etcd."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import backends
import pytest
import yaml
from server_helpers import ServerProcess, start_server

from layotto.client import RuntimeClient

RUNTIMES = 3
CONTENDERS = 30
CONTENTION_SECONDS = float(os.environ.get("LAYOTTO_LOCK_CONTENTION_SECONDS", "20"))


def start_runtimes(tmp_path: Path, backend: str) -> list[ServerProcess]:
    namespace = uuid.uuid4().hex[:10]
    metadata = backends.lock_metadata(backend, namespace)
    config = {
        "app_id": f"app-{namespace}",
        "lock": {"shared": {"type": backend, "metadata": metadata}},
        "sequencer": {"shared": {"type": backend, "metadata": {**metadata, "segmentSize": "500"}}},
    }
    path = tmp_path / "runtime.yaml"
    path.write_text(yaml.safe_dump(config))
    return [start_server("-c", str(path), data_dir=tmp_path / f"rt{i}") for i in range(RUNTIMES)]


def stop(servers: list[ServerProcess]) -> None:
    for server in servers:
        if server.process.poll() is None:
            code, stderr = server.terminate()
            assert code == 0, stderr


@pytest.mark.parametrize("backend", ["redis", "etcd"])
async def test_no_two_holders_ever_overlap(tmp_path: Path, backend: str) -> None:
    backends.require(backend)
    servers = start_runtimes(tmp_path, backend)
    held: list[tuple[float, float, str]] = []
    try:
        clients = [RuntimeClient(servers[i % RUNTIMES].grpc_address) for i in range(CONTENDERS)]
        deadline = time.monotonic() + CONTENTION_SECONDS

        async def contend(index: int, client: RuntimeClient) -> None:
            owner = f"owner-{index}"
            while time.monotonic() < deadline:
                if await client.lock.try_lock("shared", "the-one-lock", owner, ttl=10):
                    start = time.monotonic()
                    await asyncio.sleep(random.uniform(0.002, 0.02))
                    end = time.monotonic()
                    held.append((start, end, owner))
                    assert (await client.lock.unlock("shared", "the-one-lock", owner)).name == "SUCCESS"
                else:
                    await asyncio.sleep(random.uniform(0.001, 0.01))

        await asyncio.gather(*(contend(i, c) for i, c in enumerate(clients)))
        for client in clients:
            await client.aclose()
    finally:
        stop(servers)
    held.sort()
    overlaps = [(a, b) for a, b in itertools.pairwise(held) if b[0] < a[1]]
    assert not overlaps, f"{len(overlaps)} overlapping holds, e.g. {overlaps[0]}"
    assert len(held) > 50, f"only {len(held)} holds in {CONTENTION_SECONDS}s: the test proved little"
    assert len({owner for _, _, owner in held}) > 5, "the lock went to too few contenders"


HOLDER = textwrap.dedent("""
    import asyncio, sys
    from layotto.client import RuntimeClient

    async def main():
        async with RuntimeClient(sys.argv[1]) as client:
            async with client.lock.acquire("shared", "crash-lock", ttl=3, owner="doomed"):
                print("held", flush=True)
                await asyncio.sleep(3600)

    asyncio.run(main())
""")


@pytest.mark.parametrize("backend", ["redis", "etcd"])
async def test_a_killed_holder_loses_the_lock_after_its_expiry(tmp_path: Path, backend: str) -> None:
    backends.require(backend)
    servers = start_runtimes(tmp_path, backend)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, servers[0].grpc_address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        async with RuntimeClient(servers[1].grpc_address) as other:
            await asyncio.sleep(4)  # longer than the ttl: only the holder's keep-alive keeps it
            assert not await other.lock.try_lock("shared", "crash-lock", "survivor", ttl=5), "keep-alive failed"
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            killed_at = time.monotonic()
            while not await other.lock.try_lock("shared", "crash-lock", "survivor", ttl=5):
                assert time.monotonic() - killed_at < 15, "the dead holder's lock never expired"
                await asyncio.sleep(0.1)
            waited = time.monotonic() - killed_at
            assert waited > 0.5, "the lock was free at once: it was not held by the dead process"
    finally:
        if holder.poll() is None:
            holder.kill()
        stop(servers)


@pytest.mark.parametrize("backend", ["redis", "etcd"])
async def test_three_runtimes_draw_distinct_ids(tmp_path: Path, backend: str) -> None:
    backends.require(backend)
    servers = start_runtimes(tmp_path, backend)
    try:
        clients = [RuntimeClient(s.grpc_address) for s in servers]

        async def draw(client: RuntimeClient, count: int, strong: bool) -> list[int]:
            ids: list[int] = []
            for _ in range(count // 10):
                ids += await asyncio.gather(
                    *(client.sequencer.next_id("shared", "ids", strong=strong) for _ in range(10))
                )
            return ids

        weak = await asyncio.gather(*(draw(c, 10_000, strong=False) for c in clients))
        every = [i for ids in weak for i in ids]
        assert len(every) == 30_000 and len(set(every)) == 30_000, "two runtimes handed out the same id"

        async def draw_in_order(client: RuntimeClient) -> list[int]:
            return [await client.sequencer.next_id("shared", "ids", strong=True) for _ in range(300)]

        strong = await asyncio.gather(*(draw_in_order(c) for c in clients))
        for ids in strong:
            assert all(b > a for a, b in itertools.pairwise(ids)), "STRONG ids went backwards"
        strong_all = [i for ids in strong for i in ids]
        assert len(set(strong_all)) == 900 and not set(strong_all) & set(every)
        for client in clients:
            await client.aclose()
    finally:
        stop(servers)

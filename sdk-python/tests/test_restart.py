"""The SDK's retries carry calls across a `layotto serve` restarted on the same port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from layotto.client import RuntimeClient


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def layotto_serve(grpc_port: int, data_dir: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`layotto serve` (embedded defaults) on ``grpc_port``; SIGTERM and waited for on exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "layotto.server",
        "serve",
        "--grpc-address",
        f"127.0.0.1:{grpc_port}",
        "--http-address",
        f"127.0.0.1:{free_port()}",
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def test_calls_made_while_the_runtime_restarts_succeed_against_the_new_one(tmp_path: Path) -> None:
    port = free_port()
    async with RuntimeClient(f"127.0.0.1:{port}", timeout=60) as client:  # the default retry policy
        async with layotto_serve(port, tmp_path) as first:
            await client.state.save("sqlite", "before", "kept")  # waits (retrying) until it is up
            first.send_signal(signal.SIGTERM)
            await asyncio.wait_for(first.wait(), 30)
        # nothing listens on the port: connection refused, retried until the new runtime is there
        read = asyncio.create_task(client.state.get("sqlite", "before"))
        publish = asyncio.create_task(client.pubsub.publish("in-memory", "t", "not idempotent, never sent"))
        await asyncio.sleep(0.5)
        assert not read.done() and not publish.done()
        async with layotto_serve(port, tmp_path):
            assert (await read).text() == "kept"
            await publish

"""Starting `layotto serve` (and other servers) for the benchmarks."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import grpc

from layotto.server.cli import loop_factory


def serve_like_the_runtime(main: Coroutine[Any, Any, None]) -> None:
    """Run a baseline server on the event loop `layotto serve` picks (uvloop when installed),
    so runtime and baseline differ only in what their handlers do."""
    with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
        runner.run(main)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)


def start(command: list[str]) -> subprocess.Popen[bytes]:
    """A server process whose output is discarded."""
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_runtime(
    data_dir: str, config: Path | None = None, extra: Sequence[str] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """`layotto serve` (embedded defaults unless ``config``; ``extra``: more flags) on free ports: the
    process and its gRPC address."""
    address = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "layotto.server", "serve", "--grpc-address", address]
    command += ["--http-address", f"127.0.0.1:{free_port()}", "--data-dir", data_dir, "--log-level", "WARNING"]
    if config is not None:
        command += ["-c", str(config)]
    command += extra
    return start(command), address


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=20)

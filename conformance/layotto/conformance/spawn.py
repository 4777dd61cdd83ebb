"""Starts `layotto serve` as a child process for a self-contained conformance run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import grpc

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeFailed(Exception):
    pass


@contextlib.asynccontextmanager
async def serve(config: Path, env: Mapping[str, str] | None = None) -> AsyncIterator[str]:
    """Run the runtime on free loopback ports, in the config's directory (so relative paths in
    it resolve there) with ``env`` added to its environment; yield its gRPC address.

    On exit the runtime gets SIGTERM and must exit 0 (graceful shutdown), else
    :class:`ServeFailed` is raised.
    """
    command = shutil.which("layotto")
    program = [command] if command else [sys.executable, "-m", "layotto.server"]
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="layotto-conformance-") as data_dir:
        process = await asyncio.create_subprocess_exec(
            *program,
            "serve",
            "-c",
            str(config),
            "--grpc-address",
            f"127.0.0.1:{grpc_port}",
            "--http-address",
            f"127.0.0.1:{http_port}",
            "--data-dir",
            data_dir,
            cwd=config.parent,
            env={**os.environ, **(env or {})},
        )
        address = f"127.0.0.1:{grpc_port}"
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                ready = asyncio.ensure_future(channel.channel_ready())
                exited = asyncio.ensure_future(process.wait())
                done, _ = await asyncio.wait(
                    {ready, exited}, timeout=READY_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                ready.cancel()
                exited.cancel()
                if ready not in done or ready.cancelled():
                    raise ServeFailed(
                        f"layotto serve -c {config} did not become ready (exit code {process.returncode})"
                    )
            yield address
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT_SECONDS)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    raise ServeFailed("layotto serve did not stop within 20 s of SIGTERM") from None
        if process.returncode != 0:
            raise ServeFailed(f"layotto serve exited with {process.returncode} after SIGTERM (expected 0)")

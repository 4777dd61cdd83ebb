"""Helpers of the server tests: a `layotto serve` child process on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A `layotto serve` child process on free loopback ports."""

    process: subprocess.Popen[str]
    grpc_address: str
    http_address: str

    def http_get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.http_address}{path}", timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def terminate(self, timeout: float = 20) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


def start_server(*args: str, data_dir: Path, ready: bool = True) -> ServerProcess:
    grpc_address, http_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    command = [
        sys.executable,
        "-m",
        "layotto.server",
        "serve",
        "--grpc-address",
        grpc_address,
        "--http-address",
        http_address,
        "--data-dir",
        str(data_dir),
        *args,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    server = ServerProcess(process, grpc_address, http_address)
    if ready:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"layotto serve exited early: {process.stderr.read() if process.stderr else ''}")
            try:
                if server.http_get("/actuator/health/readiness")[0] == 200:
                    return server
            except OSError:
                pass
            time.sleep(0.1)
        process.kill()
        raise AssertionError("layotto serve did not become ready in 30 s")
    return server

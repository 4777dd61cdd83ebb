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


def start_server(
    *args: str, data_dir: Path, ready: bool = True, grpc_address: str = "", http_address: str = ""
) -> ServerProcess:
    """Addresses default to free loopback ports; give a stopped server's to restart it in its place."""
    grpc_address = grpc_address or f"127.0.0.1:{free_port()}"
    http_address = http_address or f"127.0.0.1:{free_port()}"
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


class PrivateBackend:
    """A backend server of the test's own on a free port, so a test may stop and restart it."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        if kind == "postgresql":
            # the postgres user must reach the directory: pytest's tmp_path is private to root
            import tempfile

            self.data_dir = Path(tempfile.mkdtemp(prefix="layotto-test-pg-"))
            self._initdb()
        data_dir.mkdir(parents=True, exist_ok=True)

    # -- PostgreSQL needs a cluster first; it refuses to run as root --------------------------

    def _as_postgres(self, *command: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else list(command)

    def _pg_bin(self, name: str) -> str:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        return str(versions[-1] / name)

    def _initdb(self) -> None:
        if os.getuid() == 0:
            import shutil

            shutil.chown(self.data_dir, "postgres")
        subprocess.run(
            self._as_postgres(self._pg_bin("initdb"), "-D", str(self.data_dir), "-U", "layotto", "--auth=trust"),
            check=True,
            capture_output=True,
        )

    @property
    def metadata(self) -> dict[str, str]:
        if self.kind == "redis":
            return {"redisHost": f"127.0.0.1:{self.port}", "timeoutInSeconds": "2"}
        return {
            "connectionString": f"host=127.0.0.1 port={self.port} user=layotto dbname=postgres",
            "timeoutInSeconds": "2",
        }

    def start(self) -> None:
        if self.kind == "redis":
            command = [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.data_dir),
            ]
        else:
            command = self._as_postgres(
                self._pg_bin("postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-k",
                str(self.data_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            )
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    time.sleep(0.3 if self.kind == "postgresql" else 0)
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"private {self.kind} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            if self.kind == "postgresql":  # runuser does not pass signals on: ask pg_ctl
                subprocess.run(
                    self._as_postgres(self._pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"),
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            else:
                self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

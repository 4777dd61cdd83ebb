"""scripts/dev serve as a new user runs it: from any directory, stopped by a signal."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "scripts" / "dev"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _env() -> dict[str, str]:
    # The test runs inside a tox env; scripts/dev must not take that env for its own.
    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "TOX_ENV_DIR", "TOX_ENV_NAME")}


def test_serve_reads_a_relative_config_from_the_callers_directory_and_stops_on_sigterm(tmp_path: Path) -> None:
    grpc_port, http_port = _free_port(), _free_port()
    (tmp_path / "mine.yaml").write_text(
        f"grpc_address: 127.0.0.1:{grpc_port}\nhttp_address: 127.0.0.1:{http_port}\n"
        "state:\n  mine:\n    type: in-memory\n"
    )
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [str(DEV), "serve", "-c", "mine.yaml", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300  # a first run installs the runtime's env
        while not _listening(grpc_port):
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert not _listening(grpc_port), "SIGTERM to scripts/dev serve stops the runtime it started"
    assert "layotto is " in output and "scripts/dev shell" in output, "it says where the layotto command is"
    assert "layotto stopped" in output


def test_a_config_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("no_such_key: 1\n")
    done = subprocess.run(
        [str(DEV), "serve", "-c", "bad.yaml"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if not line.startswith("scripts/dev: ")]
    assert len(errors) == 1 and errors[0].startswith("layotto: config error: bad.yaml: no_such_key"), done.stderr
    assert done.stdout == ""


def test_version() -> None:
    done = subprocess.run(
        [str(DEV), "serve", "--version"], env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0 and done.stdout.startswith("layotto ") and done.stdout.count("\n") == 1

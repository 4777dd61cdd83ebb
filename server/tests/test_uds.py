"""Unix domain socket listeners (``unix:PATH`` addresses, Dapr's ``--unix-domain-socket DIR``): served
on the transport the environment picks, socket files 0600 (or 0660), a stale file replaced at start,
a live or foreign one refused, the files removed at stop."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from layotto.client import RuntimeClient
from layotto.server import Runtime, embedded_defaults
from layotto.server.components.base import ConfigError
from layotto.server.config import default_grpc_transport, from_mapping

pytestmark = pytest.mark.timeout(60)


def _config(tmp_path: Path, **overrides: object) -> Runtime:
    config = embedded_defaults().with_overrides(
        grpc_address=f"unix:{tmp_path}/g.sock", http_address=f"unix://{tmp_path}/h.sock", data_dir=str(tmp_path)
    )
    return Runtime(config.with_overrides(**overrides))


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def _http_get(path: Path, url_path: str) -> int:
    connector = aiohttp.UnixConnector(path=str(path))
    async with aiohttp.ClientSession(connector=connector) as session, session.get(f"http://localhost{url_path}") as got:
        return got.status


async def test_grpc_and_http_on_unix_sockets(tmp_path: Path) -> None:
    grpc_socket, http_socket = tmp_path / "g.sock", tmp_path / "h.sock"
    async with _config(tmp_path) as runtime:
        assert runtime.grpc_transport == ("grpcio" if default_grpc_transport() == "grpcio" else "native")
        assert _mode(grpc_socket) == 0o600 and _mode(http_socket) == 0o600
        async with RuntimeClient(f"unix:{grpc_socket}") as client:
            await client.state.save("in-memory", "k", b"over a unix socket")
            assert (await client.state.get("in-memory", "k")).value == b"over a unix socket"
        assert await _http_get(http_socket, "/v1.0/healthz") == 204
    assert not grpc_socket.exists() and not http_socket.exists()


async def test_socket_mode_0660(tmp_path: Path) -> None:
    async with _config(tmp_path, unix_socket_mode=0o660):
        assert _mode(tmp_path / "g.sock") == 0o660 and _mode(tmp_path / "h.sock") == 0o660


async def test_stale_socket_file_is_replaced_live_and_foreign_files_refused(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "g.sock"))
    stale.close()  # the file stays, nobody listens: what a killed runtime leaves
    async with _config(tmp_path) as runtime:
        async with RuntimeClient(f"unix:{tmp_path}/g.sock") as client:
            assert (await client.say_hello("uds")).greeting
        with pytest.raises(ConfigError, match=r"grpc_address: .*g\.sock is in use"):
            await _config(tmp_path, http_address="127.0.0.1:0").start()
        assert runtime.grpc_port  # the running runtime kept its socket
        async with RuntimeClient(f"unix:{tmp_path}/g.sock") as client:
            assert (await client.say_hello("still")).greeting
    (tmp_path / "g.sock").write_text("not a socket")
    with pytest.raises(ConfigError, match=r"grpc_address: .*g\.sock exists and is not a socket"):
        await _config(tmp_path).start()
    assert (tmp_path / "g.sock").read_text() == "not a socket"


def test_cli_unix_domain_socket_directory(tmp_path: Path) -> None:
    """``layotto serve --unix-domain-socket DIR``: Dapr's socket names, reachable, removed at SIGTERM."""
    command = [sys.executable, "-m", "layotto.server", "serve", "--unix-domain-socket", str(tmp_path)]
    command += ["--app-id", "shop", "--data-dir", str(tmp_path)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    grpc_socket, http_socket = tmp_path / "dapr-shop-grpc.socket", tmp_path / "dapr-shop-http.socket"
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "layotto serving" in line:
                break
        assert f"gRPC on unix:{grpc_socket} and HTTP on unix:{http_socket}" in line
        with socket.socket(socket.AF_UNIX) as probe:
            probe.connect(str(http_socket))
            probe.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert probe.recv(100).startswith(b"HTTP/1.1 204")
        assert _mode(grpc_socket) == 0o600
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    assert process.returncode == 0
    assert not grpc_socket.exists() and not http_socket.exists()


@pytest.mark.parametrize("raw", ["0644", "0777", 600, "rw", True])
def test_socket_mode_other_than_0600_or_0660_is_refused(raw: object) -> None:
    with pytest.raises(ConfigError, match=r"^unix_socket_mode: expected one of 0600, 0660 \(octal\)"):
        from_mapping({"unix_socket_mode": raw})


def test_unix_addresses_in_the_config() -> None:
    config = from_mapping({"grpc_address": "unix:///run/l/g.sock", "unix_socket_mode": "0660"})
    assert (config.grpc_address, config.unix_socket_mode) == ("unix:///run/l/g.sock", 0o660)
    with pytest.raises(ConfigError, match=r"^http_address: expected unix:PATH to a socket file"):
        from_mapping({"http_address": "unix:/run/l/"})


def test_a_socket_path_longer_than_linux_takes_is_refused_naming_the_limit(tmp_path: Path) -> None:
    from layotto.server.listeners import MAX_SOCKET_PATH_BYTES, prepare_socket_path

    long_path = str(tmp_path / ("s" * (MAX_SOCKET_PATH_BYTES - len(str(tmp_path)))))
    assert len(long_path) == MAX_SOCKET_PATH_BYTES + 1
    with pytest.raises(ConfigError, match=r"^grpc_address: .* is 108 bytes; a Unix socket path is at most 107$"):
        prepare_socket_path(long_path, "grpc_address")

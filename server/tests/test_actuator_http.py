"""The actuator's HTTP server and what clients really send: repeated headers, malformed requests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_helpers import ServerProcess, start_server

from layotto.server import Runtime


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = start_server(data_dir=Path(tmp_path_factory.mktemp("actuator")))
    yield process
    process.terminate()


def exchange(server: ServerProcess, raw: bytes) -> bytes:
    """Send ``raw`` on a new connection; what the server answers until it closes (or 10 s)."""
    host, _, port = server.http_address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def test_a_header_repeated_with_the_same_value_is_accepted(server: ServerProcess) -> None:
    # Dapr's Java SDK sends Content-Type twice
    answer = exchange(
        server,
        b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Type: application/json\r\nUser-Agent: a\r\nUser-Agent: a\r\nConnection: close\r\n\r\n",
    )
    assert status(answer) == 204, answer


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n",  # conflicting
        b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /v1.0/healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET /v1.0/healthz HTTP/9.9\r\n\r\n",
        b"GET /actuator/info HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
        b"GET " + b"/x" * 10000 + b" HTTP/1.1\r\n\r\n",  # a request line too long
    ],
)
def test_a_malformed_request_gets_a_4xx(server: ServerProcess, raw: bytes) -> None:
    assert 400 <= status(exchange(server, raw)) < 500


def test_refusals_leave_no_traceback_and_the_runtime_up(tmp_path: Path) -> None:
    process = start_server(data_dir=tmp_path)
    try:
        for raw in (
            b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nContent-Type: a/b\r\nContent-Type: c/d\r\n\r\n",
            b"GET /v1.0/healthz HTTP/1.1\r\nno colon here\r\n\r\n",
        ):
            assert status(exchange(process, raw)) == 400
        assert process.http_get("/actuator/health/liveness")[0] == 200
    finally:
        code, stderr = process.terminate()
    assert code == 0
    assert "Traceback" not in stderr and " ERROR " not in stderr, stderr


async def test_loggers_a_client_can_make_are_bounded(runtime: Runtime) -> None:
    """Loggers are never freed: reading an unknown one is 404 and makes none; setting new ones is capped."""
    import logging

    import aiohttp

    from layotto.server import log_levels

    base = f"http://127.0.0.1:{runtime.http_port}{log_levels.LOGGERS_PATH}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/no.such.logger.read") as read:
            assert read.status == 404
        assert "no.such.logger.read" not in logging.root.manager.loggerDict
        async with session.post(f"{base}/layotto.later", json={"configuredLevel": "DEBUG"}) as made:
            assert made.status == 204
        assert logging.getLogger("layotto.later").level == logging.DEBUG
        async with session.post(f"{base}/{'x' * 201}", json={"configuredLevel": "DEBUG"}) as long_name:
            assert long_name.status == 400
        log_levels._made.update(f"filler-{i}" for i in range(log_levels.MAX_NEW_LOGGERS))
        try:
            async with session.post(f"{base}/one.too.many", json={"configuredLevel": "INFO"}) as refused:
                assert refused.status == 400 and "at most" in (await refused.json())["error"]
            async with session.post(f"{base}/layotto.later", json={"configuredLevel": "INFO"}) as existing:
                assert existing.status == 204, "a logger that exists can always be set"
        finally:
            log_levels._made.difference_update(f"filler-{i}" for i in range(log_levels.MAX_NEW_LOGGERS))

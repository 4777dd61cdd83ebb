"""Structured logs: ``log_format: json`` lines of a `layotto serve` process carry the trace and span
ids of the call they were logged in; levels change at run time through ``/actuator/loggers`` (behind
the API token); no secret is written."""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from server_helpers import free_port

from layotto.server.components.base import ConfigError
from layotto.server.config import from_mapping
from layotto.server.logs import JsonFormatter
from layotto.tracing.testing import OtlpReceiver

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-token-value"
PASSWORD = "hunter2-password"
API_LOGGER = "layotto.server.api"


class JsonLogServer:
    """`layotto serve` with JSON logs; its stderr lines parsed as they come."""

    def __init__(self, tmp_path: Path, endpoint: str) -> None:
        config = {
            "log_format": "json",
            "tracing": {"exporters": ["otlp"], "otlp_endpoint": endpoint},
            "state": {"kv": {"type": "in-memory"}},
        }
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        self.grpc_address, self.http_address = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "layotto.server", "serve", "-c", str(tmp_path / "config.yaml")]
        command += ["--grpc-address", self.grpc_address, "--http-address", self.http_address]
        command += ["--data-dir", str(tmp_path)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "DAPR_API_TOKEN": TOKEN}
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def wait_for(self, wanted: str) -> dict[str, Any]:
        """The first line (parsed) whose message holds ``wanted``; every line before it is kept in ``seen``."""
        while True:
            line = self.lines.get(timeout=30)
            entry = json.loads(line)  # every line is one JSON object
            self.seen.append(entry)
            if wanted in entry["message"]:
                return entry

    def post_level(self, logger: str, body: object, token: str | None = TOKEN) -> int:
        request = urllib.request.Request(
            f"http://{self.http_address}/actuator/loggers/{logger}",
            data=json.dumps(body).encode(),
            headers={"dapr-api-token": token} if token else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code


@pytest.fixture
def server(tmp_path: Path) -> Iterator[JsonLogServer]:
    with OtlpReceiver() as otlp:
        running = JsonLogServer(tmp_path, otlp.endpoint)
        try:
            yield running
        finally:
            running.process.terminate()
            running.process.wait(timeout=20)


def _traceparent(trace_id: str) -> tuple[str, str]:
    return ("traceparent", f"00-{trace_id}-{'1' * 16}-01")


async def _malformed_get_state(server: JsonLogServer, trace_id: str) -> None:
    """A GetState whose bytes are no GetStateRequest: the runtime logs it at DEBUG, in the call's span."""
    async with grpc.aio.insecure_channel(server.grpc_address) as channel:
        get_state = channel.unary_unary("/spec.proto.runtime.v1.Runtime/GetState")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await get_state(b"\xff\xff\xff", metadata=[("dapr-api-token", TOKEN), _traceparent(trace_id)], timeout=5)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_json_lines_with_trace_ids_and_levels_changed_at_run_time(server: JsonLogServer) -> None:
    started = server.wait_for("layotto serving")
    assert {"time", "level", "logger", "message"} <= started.keys() and started["level"] == "INFO"
    assert started["logger"] == "layotto.server.app" and started["time"].endswith("+00:00")

    quiet_trace, debug_trace = "a" * 32, "b" * 32
    await _malformed_get_state(server, quiet_trace)  # INFO: its DEBUG line is not written
    assert server.post_level(API_LOGGER, {"configuredLevel": "DEBUG"}, token=None) == 401
    assert server.post_level(API_LOGGER, {"configuredLevel": "LOUD"}) == 400
    assert server.post_level(API_LOGGER, {"configuredLevel": "DEBUG"}) == 204
    await _malformed_get_state(server, debug_trace)

    line = server.wait_for("GetState")
    assert line["level"] == "DEBUG" and line["logger"].startswith(API_LOGGER)
    assert line["trace_id"] == debug_trace  # the server span of the call, child of the caller's
    assert len(line["span_id"]) == 16 and line["span_id"] != "1" * 16
    assert not any(entry.get("trace_id") == quiet_trace for entry in server.seen)
    assert not any(TOKEN in json.dumps(entry) for entry in server.seen)


def test_json_formatter_masks_passwords_in_messages_and_tracebacks() -> None:
    try:
        raise ConnectionError(f"cannot reach redis://app:{PASSWORD}@127.0.0.1:6379")
    except ConnectionError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "dsn %s", (f"password={PASSWORD}",), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "dsn password=****"
    assert "redis://app:****@127.0.0.1" in line["exception"] and PASSWORD not in json.dumps(line)
    assert "trace_id" not in line  # no span is current here


def test_log_format_other_than_text_or_json_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^log_format: expected one of text, json, got 'xml'"):
        from_mapping({"log_format": "xml"})

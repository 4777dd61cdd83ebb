"""Traffic capture (traffic_capture) and `layotto replay`: capture on one runtime, replay on another."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from layotto.proto.dapr.common.v1 import common_pb2 as dapr_common
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.dapr.runtime.v1 import state_pb2 as dapr_state
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime, embedded_defaults
from layotto.server.cli import main
from layotto.server.components.base import ConfigError
from layotto.server.config import from_mapping
from layotto.server.traffic.capture import TrafficCapture
from layotto.server.traffic.files import FILE_PATTERN, CallRecord, capture_files
from layotto.server.traffic.settings import CaptureSettings, parse_capture_settings

TOKEN_A = "capture-secret-token-a"
TOKEN_B = "capture-secret-token-b"
KEYS = [f"k{n}" for n in range(6)]


def runtime(directory: Path, token: str, capture: dict[str, Any] | None = None) -> Runtime:
    config = embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(directory), api_token=token
    )
    if capture is not None:
        config = config.with_overrides(traffic_capture=parse_capture_settings(capture, "traffic_capture"))
    return Runtime(config)


def lines(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in capture_files(directory) for line in path.read_text().splitlines()]


async def state_of(port: int, token: str, store: str) -> dict[str, bytes]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        got = {}
        for key in KEYS:
            answer = await stub.GetState(
                pb.GetStateRequest(store_name=store, key=key), metadata=(("dapr-api-token", token),)
            )
            got[key] = answer.data
        return got


async def some_traffic(port: int) -> None:
    """Saves, overwrites, deletes and reads keys of both stores through both APIs, with credentials and a tag."""
    metadata = (("dapr-api-token", TOKEN_A), ("authorization", "Bearer hush"), ("cookie", "s=1"), ("x-tenant", "blue"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)
        for store in ("sqlite", "in-memory"):
            items = [pb.StateItem(key=key, value=f"{store}-{key}".encode()) for key in KEYS]
            await layotto.SaveState(pb.SaveStateRequest(store_name=store, states=items), metadata=metadata)
            await dapr.SaveState(
                dapr_state.SaveStateRequest(store_name=store, states=[dapr_common.StateItem(key="k1", value=b"v2")]),
                metadata=metadata,
            )
            await layotto.DeleteState(pb.DeleteStateRequest(store_name=store, key="k2"), metadata=metadata)
            await layotto.GetState(pb.GetStateRequest(store_name=store, key="k1"), metadata=metadata)
        with pytest.raises(grpc.aio.AioRpcError):  # captured with its status
            await layotto.GetState(pb.GetStateRequest(store_name="nope", key="k"), metadata=metadata)


async def test_replay_of_a_capture_reproduces_the_state_on_a_fresh_runtime(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    captured = tmp_path / "capture"
    a = runtime(tmp_path / "a", TOKEN_A, {"dir": str(captured)})
    await a.start()
    try:
        await some_traffic(a.grpc_port)
        assert a.traffic_capture is not None
        await a.traffic_capture.flush()
        records = lines(captured)
        expected = {store: await state_of(a.grpc_port, TOKEN_A, store) for store in ("sqlite", "in-memory")}
    finally:
        await a.stop(grace=1)
    assert [r["method"].rpartition("/")[2] for r in records] == [
        *["SaveState", "SaveState", "DeleteState", "GetState"] * 2,
        "GetState",
    ]
    assert [r["status"] for r in records] == ["OK"] * 8 + ["INVALID_ARGUMENT"]
    assert all(["x-tenant", "blue"] in r["metadata"] for r in records)
    written = b"".join(path.read_bytes() for path in capture_files(captured))
    for secret in (TOKEN_A.encode(), b"Bearer hush", b"s=1", b"dapr-api-token", b"authorization", b"cookie"):
        assert secret not in written
    assert expected["sqlite"]["k1"] == b"v2" and expected["sqlite"]["k2"] == b""  # the traffic did change state

    b = runtime(tmp_path / "b", TOKEN_B)
    await b.start()
    try:
        assert await state_of(b.grpc_port, TOKEN_B, "sqlite") == dict.fromkeys(KEYS, b"")
        argv = ["replay", str(captured), "--target", f"127.0.0.1:{b.grpc_port}", "--token", TOKEN_B, "--rate", "1000"]
        assert await asyncio.to_thread(main, argv) == 0
        report = capsys.readouterr().out.splitlines()
        # the 9 calls of some_traffic, then state_of's 12 reads of A
        assert report == [
            "replayed 21 calls",
            "  OK 20",
            "  INVALID_ARGUMENT 1",
            "status different from the captured one: 0",
        ]
        for store in ("sqlite", "in-memory"):
            assert await state_of(b.grpc_port, TOKEN_B, store) == expected[store]
    finally:
        await b.stop(grace=1)


async def test_replay_without_the_targets_token_reports_unauthenticated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    captured = tmp_path / "capture"
    a = runtime(tmp_path / "a", "", {"dir": str(captured), "methods": ["/spec.proto.runtime.v1.Runtime/SayHello"]})
    await a.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{a.grpc_port}") as channel:
            await runtime_pb2_grpc.RuntimeStub(channel).SayHello(pb.SayHelloRequest(service_name="helloworld"))
    finally:
        await a.stop(grace=1)
    b = runtime(tmp_path / "b", TOKEN_B)
    await b.start()
    try:
        argv = ["replay", str(captured / "capture-000001.jsonl"), "--target", f"127.0.0.1:{b.grpc_port}", "--token", ""]
        assert await asyncio.to_thread(main, argv) == 0
    finally:
        await b.stop(grace=1)
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  UNAUTHENTICATED 1",
        "status different from the captured one: 1",
    ]
    (tmp_path / "bad.jsonl").write_text('{"v": 1}\n')
    assert await asyncio.to_thread(main, ["replay", str(tmp_path / "bad.jsonl"), "--target", "127.0.0.1:1"]) == 2
    assert "bad.jsonl:1: not a capture record" in capsys.readouterr().err


async def test_sampling_and_rotation_keep_to_the_config(tmp_path: Path) -> None:
    captured = tmp_path / "capture"
    settings = {
        "dir": str(captured),
        "sample_ratio": 0.25,
        "max_file_bytes": 1024,
        "max_files": 2,
        "methods": ["/spec.proto.runtime.v1.Runtime/SaveState"],
    }
    a = runtime(tmp_path / "a", "", settings)
    await a.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{a.grpc_port}") as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            for n in range(40):
                item = pb.StateItem(key=f"key-{n:02d}", value=b"x" * 100)
                await stub.SaveState(pb.SaveStateRequest(store_name="in-memory", states=[item]))
                await stub.SayHello(pb.SayHelloRequest(service_name="helloworld"))  # not a captured method
        capture = a.traffic_capture
        assert capture is not None
        await capture.flush()
        assert (capture.eligible, capture.sampled, capture.written, capture.dropped) == (40, 10, 10, 0)
        exported = await capture_metrics(a.http_port)
    finally:
        await a.stop(grace=1)
    files = capture_files(captured)
    assert len(files) == 2 and all(path.stat().st_size <= 1024 for path in files)
    kept = lines_bytes(captured)
    made = int(FILE_PATTERN.match(files[-1].name).group(1))  # type: ignore[union-attr]  # numbered from 1 here
    written_bytes = exported.pop(("written_bytes_total", ""))
    assert exported == {
        ("eligible_count_total", ""): 40,
        ("sampled_count_total", ""): 10,
        ("dropped_count_total", "queue_full"): 0,
        ("dropped_count_total", "too_large"): 0,
        ("written_count_total", ""): 10,
        ("files_count_total", ""): made,  # the first file, then one per rotation
    }
    assert made > 2  # rotated, and the oldest deleted
    # the deleted files' lines were of the kept lines' sizes, give or take the duration's digits
    assert sum(map(len, kept)) < written_bytes
    assert 10 * (min(map(len, kept)) - 4) <= written_bytes <= 10 * (max(map(len, kept)) + 4)
    keys = [pb.SaveStateRequest.FromString(_b64(r["request"])).states[0].key for r in lines(captured)]
    assert keys[-1] == "key-39" and keys == sorted(keys)  # the newest records are kept, in order
    assert all(int(k[-2:]) % 4 == 3 for k in keys)  # of every 4 calls, the 4th
    assert files[0].name > "capture-000002.jsonl"  # the oldest files were deleted


async def capture_metrics(http_port: int) -> dict[tuple[str, str], float]:
    """The traffic capture's samples of /metrics: (name less the prefix, reason label) -> value."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{http_port}/metrics") as answer:
        text = await answer.text()
    prefix = "layotto_traffic_capture_"
    return {
        (sample.name.removeprefix(prefix), sample.labels.get("reason", "")): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith(prefix) and not sample.name.endswith("_created")
    }


def lines_bytes(directory: Path) -> list[bytes]:
    return [line for path in capture_files(directory) for line in path.read_bytes().splitlines(keepends=True)]


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def test_a_full_queue_drops_and_counts_records(tmp_path: Path) -> None:
    capture = TrafficCapture(CaptureSettings(dir=str(tmp_path), queue_size=2))  # not started: nothing empties it
    for _ in range(5):
        capture._offer(CallRecord("/a.B/C", (), b"", "OK", 0.1, 0.0))
    assert (capture.sampled, capture.dropped) == (2, 3)


def test_queued_requests_are_bounded_by_bytes_and_a_request_larger_than_a_file_is_never_queued(
    tmp_path: Path,
) -> None:
    """A writer that falls behind holds at most a file's worth of request bytes (plus the count bound)."""
    capture = TrafficCapture(CaptureSettings(dir=str(tmp_path), max_file_bytes=4096))  # not started
    for _ in range(5):
        capture._offer(CallRecord("/a.B/C", (), b"x" * 1500, "OK", 0.1, 0.0))
    capture._offer(CallRecord("/a.B/C", (), b"x" * 5000, "OK", 0.1, 0.0))
    assert (capture.sampled, capture.dropped, capture.too_large) == (2, 3, 1)
    assert capture._queued_bytes == 3000


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"enabled": True}, r"traffic_capture\.dir: expected the directory"),
        ({"dir": "d", "sample_ratio": 0}, r"traffic_capture\.sample_ratio: expected a number in \(0, 1\], got 0"),
        ({"dir": "d", "max_file_bytes": 10}, r"traffic_capture\.max_file_bytes: expected an integer >= 1024"),
        ({"dir": "d", "max_files": 0}, r"traffic_capture\.max_files: expected an integer >= 1"),
        ({"dir": "d", "methods": ["SaveState"]}, r"traffic_capture\.methods: expected a list"),
        ({"dir": "d", "ratio": 1}, r"traffic_capture\.ratio: unknown key"),
    ],
)
def test_the_section_is_checked(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_mapping({"traffic_capture": section})


def test_the_section_round_trips(tmp_path: Path) -> None:
    section = {"enabled": False, "dir": str(tmp_path), "sample_ratio": 0.5, "methods": ["/dapr.proto.runtime.v1.Dapr/"]}
    config = from_mapping({"traffic_capture": section})
    assert config.traffic_capture == CaptureSettings(
        dir=str(tmp_path), enabled=False, sample_ratio=0.5, methods=("/dapr.proto.runtime.v1.Dapr/",)
    )
    assert from_mapping({"traffic_capture": config.to_dict()["traffic_capture"]}) == config

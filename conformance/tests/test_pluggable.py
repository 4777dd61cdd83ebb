"""The conformance suite against Dapr's pluggable components: the example state store and pub/sub
broker of examples/pluggable-memory (installed by tox), on Unix sockets, behind the runtime."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from layotto_pluggable_memory import MemoryPubSubComponent, MemoryStateComponent, serve_pubsub, serve_state

from layotto.conformance.cli import RunnerConfig, check_target
from layotto.conformance.model import Outcome
from layotto.server import Runtime, RuntimeConfig
from layotto.server.config import ComponentConfig


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[str]:
    folder = Path(tempfile.mkdtemp(prefix="lp-conf-", dir="/tmp"))  # a socket's path holds at most 107 bytes
    config = RuntimeConfig(
        grpc_address="127.0.0.1:0",
        http_address="127.0.0.1:0",
        data_dir=str(tmp_path),
        components={
            "state": {"memstore": ComponentConfig("memstore")},
            "pubsub": {"membus": ComponentConfig("membus")},
        },
        pluggable_components_path=str(folder),
    )
    try:
        async with (
            serve_state(folder / "memstore.sock", MemoryStateComponent(["ETAG", "TRANSACTIONAL"])),
            serve_pubsub(folder / "membus.sock", MemoryPubSubComponent()),
            Runtime(config) as runtime,
        ):
            yield f"127.0.0.1:{runtime.grpc_port}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_pluggable_components_pass_the_suite(address: str) -> None:
    config = RunnerConfig(
        components={
            ("state", "memstore"): frozenset({"ETAG", "FIRST_WRITE", "TRANSACTIONAL"}),
            ("pubsub", "membus"): frozenset(),
        }
    )
    results, problems = await check_target(address, config, None)
    assert problems == []
    failed = [(r.api, r.component, r.case, r.detail) for r in results if r.outcome is Outcome.FAIL]
    assert failed == []
    passed = {(r.block, r.case) for r in results if r.outcome is Outcome.PASS}
    assert ("state", "etag") in passed and ("state", "transaction-atomic") in passed
    assert any(block == "pubsub" for block, _ in passed)

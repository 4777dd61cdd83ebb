"""A Redis restarted under a pool of connections: once it is back, every call succeeds."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path

import backends
import yaml
from server_helpers import PrivateBackend, start_server

from layotto.client import NO_RETRY, RuntimeClient

POOL = 8


async def test_calls_after_a_redis_restart_all_succeed(tmp_path: Path) -> None:
    """The pooled connections Redis closed are not handed to calls (or are replaced once, before the
    command reached any server): no call fails UNAVAILABLE once Redis answers again."""
    if not shutil.which("redis-server"):
        backends.require_installed("redis-server")
    backend = PrivateBackend("redis", tmp_path / "redis")
    backend.start()
    metadata = {**backend.metadata, "keyPrefix": uuid.uuid4().hex, "poolSize": str(POOL)}
    config = tmp_path / "runtime.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "state": {"shared": {"type": "redis", "metadata": metadata}},
                "sequencer": {"ids": {"type": "redis", "metadata": metadata}},
            }
        )
    )
    server = start_server("-c", str(config), data_dir=tmp_path / "rt")
    try:
        async with RuntimeClient(server.grpc_address, retry=NO_RETRY, timeout=8) as client:

            async def burst(round_: int) -> list[BaseException | None]:
                async def one(i: int) -> None:
                    await client.state.save("shared", f"k{i}", f"{round_}")
                    await client.state.get("shared", f"k{i}")
                    await client.sequencer.next_id("ids", "orders")

                results = await asyncio.gather(*(one(i) for i in range(4 * POOL)), return_exceptions=True)
                return [r if isinstance(r, BaseException) else None for r in results]

            assert not [e for e in await burst(0) if e is not None]  # every pooled connection opened
            for round_ in range(1, 4):
                backend.stop()
                backend.start()  # listening again: from here on every call must succeed
                failures = [e for e in await burst(round_) if e is not None]
                assert not failures, [str(e) for e in failures]
    finally:
        code, stderr = server.terminate()
        backend.stop()
    assert code == 0, stderr

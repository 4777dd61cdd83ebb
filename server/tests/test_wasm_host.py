"""The proxy-wasm host calls functions share: shared queues, metrics, HTTP callouts and timers.

One runtime in this process (no backend); modules are compiled here from WAT (tests/wasm_modules.py)
and installed over the admin API; calls go through the trigger on loopback.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import wasm_modules as wat
from test_wasm import _eventually, _start


class Host:
    def __init__(self, runtime: Any, http: aiohttp.ClientSession, tmp_path: Path) -> None:
        self.runtime, self.http, self.dir = runtime, http, tmp_path
        self.trigger = f"http://127.0.0.1:{runtime.wasm_listeners.port}"
        self.admin = f"http://127.0.0.1:{runtime.wasm_listeners.admin_port}"

    async def install(self, function_id: str, source: str, **limits: Any) -> None:
        path = wat.write(self.dir / f"{function_id}.wasm", source)
        entry = {"name": function_id, "instance_num": 1, "vm_config": {"engine": "wasmtime", "path": str(path)}}
        async with self.http.post(f"{self.admin}/wasm/install", json={**entry, **limits}) as response:
            assert response.status == 200, await response.text()

    async def uninstall(self, function_id: str) -> None:
        async with self.http.post(f"{self.admin}/wasm/uninstall", json={"name": function_id}) as response:
            assert response.status == 200, await response.text()

    async def call(self, function_id: str, body: bytes = b"") -> tuple[int, bytes]:
        async with self.http.post(f"{self.trigger}/", data=body, headers={"id": function_id}) as response:
            return response.status, await response.read()

    def exposition(self) -> str:
        return str(self.runtime.metrics.exposition().decode())


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    runtime = await _start(tmp_path, {})
    async with aiohttp.ClientSession() as http:
        yield Host(runtime, http, tmp_path)
    await runtime.stop(grace=1)


@pytest.fixture(autouse=True)
def _small_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Queues of 2 items and 2 metrics per function, so the bounds are reached in a few calls."""
    import test_wasm

    monkeypatch.setitem(test_wasm.LIMITS, "queue_capacity", 2)
    monkeypatch.setitem(test_wasm.LIMITS, "metrics_per_function", 2)


async def test_shared_queues_carry_items_between_functions_and_are_bounded(host: Host) -> None:
    await host.install("keeper", wat.queue_keeper("keeper", "jobs", on_ready=False))
    await host.install("producer", wat.queue_producer("producer", "keeper", "jobs"))
    await host.install("stray", wat.queue_producer("stray", "keeper", "no-such-queue"))
    assert await host.call("producer", b"first") == (200, b"00")
    assert await host.call("producer", b"second") == (200, b"00")
    assert await host.call("producer", b"third") == (200, b"0:")  # full: INTERNAL_FAILURE (10)
    assert await host.call("stray", b"x") == (200, b"1")  # NOT_FOUND
    assert await host.call("keeper", b"next") == (200, b"first")
    assert await host.call("keeper", b"next") == (200, b"second")
    assert await host.call("keeper", b"next") == (200, b"7")  # EMPTY
    await host.uninstall("keeper")
    assert await host.call("producer", b"late") == (200, b"1")  # its queues went with it


async def test_an_enqueue_calls_the_registering_functions_on_queue_ready(host: Host) -> None:
    await host.install("listener", wat.queue_keeper("listener", "events", on_ready=True))
    await host.install("producer", wat.queue_producer("producer", "listener", "events"))
    functions = host.runtime.functions
    for item in (b"one", b"two"):
        assert await host.call("producer", item) == (200, b"00")
        assert await _eventually(lambda: _async(functions.get_shared("last")), lambda v, item=item: v and v[0] == item)


async def test_metrics_are_counted_capped_and_exported_on_prometheus(host: Host) -> None:
    await host.install("metered", wat.METERED)
    status, body = await host.call("metered", b"12345")
    # counter and histogram defined, the third metric refused (2 per function), -1 on a counter refused
    assert (status, body[:4], struct.unpack("<Q", body[4:])) == (200, b"00:2", (1,))
    status, body = await host.call("metered", b"1234567")
    assert (body[:4], struct.unpack("<Q", body[4:])) == (b"00:2", (2,))
    text = host.exposition()
    assert 'layotto_wasm_function_counter_total{function="metered",name="requests"} 2.0' in text
    assert 'layotto_wasm_function_histogram_bucket{function="metered",le="5.0",name="sizes"} 1.0' in text
    assert 'layotto_wasm_function_histogram_count{function="metered",name="sizes"} 2.0' in text
    assert 'layotto_wasm_function_histogram_sum{function="metered",name="sizes"} 12.0' in text
    assert "overflow" not in text
    await host.uninstall("metered")
    assert 'function="metered"' not in host.exposition()


async def test_http_callouts_go_through_service_invocation_within_their_timeout(host: Host) -> None:
    await host.install("echo", wat.echo("echo", "echo:"))
    await host.install("slow", wat.LOOP, deadline_seconds=0.5)
    await host.install("caller", wat.http_caller("caller", "echo", "greet"))
    await host.install("caller2", wat.http_caller("caller2", "echo", "greet", dispatch=True))
    await host.install("lost", wat.http_caller("lost", "nobody", "greet"))
    await host.install("impatient", wat.http_caller("impatient", "slow", "greet", timeout_ms=50))
    assert await host.call("caller", b"hello") == (200, b"echo:hello")
    assert await host.call("caller2", b"hi") == (200, b"echo:hi")  # the 0.2.x name
    assert await host.call("lost", b"x") == (502, b"callout failed")
    assert await host.call("impatient", b"x") == (502, b"callout failed")
    assert await host.call("echo", b"still") == (200, b"echo:still")


async def test_a_tick_period_calls_on_tick_until_uninstalled(host: Host) -> None:
    await host.install("ticker", wat.TICKER)

    def ticks() -> str:
        return next((line for line in host.exposition().splitlines() if 'name="ticks"' in line), "")

    assert await _eventually(lambda: _async(ticks()), lambda line: line and float(line.split()[-1]) >= 3)
    async with host.http.post(
        f"{host.admin}/wasm/install", json={"name": "twin", "path": str(host.dir / "ticker.wasm")}
    ) as response:
        assert response.status != 200  # the same function id: refused, and its instance's ticker with it
    assert set(host.runtime.functions._tickers) == {"ticker"}
    await host.uninstall("ticker")
    assert await _eventually(lambda: _async(ticks()), lambda line: line == "")
    assert not host.runtime.functions._tickers


#: Debian's rustc (rustup's has no wasm32 standard library here) and LLVM's wasm-ld: scripts/toolchains
RUSTC, WASM_LD = Path("/usr/bin/rustc"), Path("/usr/bin/wasm-ld")


def _rust_for_wasm32() -> Path:
    """Debian's rustc when it has the wasm32 standard library; skip (fail under
    LAYOTTO_REQUIRE_BACKENDS=1, as in CI) otherwise."""
    if RUSTC.exists() and WASM_LD.exists():
        sysroot = subprocess.run([RUSTC, "--print", "sysroot"], capture_output=True, text=True, check=True).stdout
        if (Path(sysroot.strip()) / "lib/rustlib/wasm32-unknown-unknown/lib").is_dir():
            return RUSTC
    message = "needs rustc with the wasm32 standard library and wasm-ld (scripts/toolchains up installs them)"
    if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
        pytest.fail(message)
    pytest.skip(message)


async def test_a_function_compiled_from_rust_serves_requests(host: Host) -> None:
    rustc = _rust_for_wasm32()
    source, module = host.dir / "rusty.rs", host.dir / "rusty.wasm"
    source.write_text(wat.RUST_FUNCTION)
    # fmt: off
    subprocess.run(
        [rustc, "--edition", "2021", "--crate-type", "cdylib", "--crate-name", "rusty",
         "--target", "wasm32-unknown-unknown", "-C", "opt-level=1", "-C", "panic=abort", "-C", "strip=symbols",
         "-C", f"linker={WASM_LD}", str(source), "-o", str(module)],
        check=True, capture_output=True, timeout=120,
    )
    # fmt: on
    entry = {"name": "rusty", "instance_num": 1, "vm_config": {"engine": "wasmtime", "path": str(module)}}
    async with host.http.post(f"{host.admin}/wasm/install", json=entry) as response:
        assert response.status == 200, await response.text()
    assert await host.call("rusty", b"hello") == (200, b"rust: HELLO #1")
    assert await host.call("rusty", b"again") == (200, b"rust: AGAIN #2")
    assert 'layotto_wasm_function_counter_total{function="rusty",name="calls"} 2.0' in host.exposition()


async def _async(value: Any) -> Any:
    return value


def test_the_queue_and_metric_bounds_are_checked_naming_the_key() -> None:
    from layotto.server.components.base import ConfigError
    from layotto.server.wasm.settings import parse_wasm_settings

    settings = parse_wasm_settings({"queue_capacity": 8, "metrics_per_function": 0}, "wasm")
    assert (settings.queue_capacity, settings.metrics_per_function) == (8, 0)
    assert settings.to_dict()["queue_capacity"] == 8
    for key, value in (("queue_capacity", 0), ("metrics_per_function", 1001), ("queue_capacity", 1.5)):
        with pytest.raises(ConfigError, match=f"wasm.{key}: expected an integer"):
            parse_wasm_settings({key: value}, "wasm")

"""What start-up imports: a component's driver only when a config names its type.

Each check runs in a fresh interpreter and asserts on ``sys.modules`` (never on time; the
figures are in docs/performance.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from layotto.server.components import registry as registry_module
from layotto.server.components.base import ConfigError
from layotto.server.components.registry import Registry

DRIVERS = ("redis", "psycopg", "aiomysql", "aetcd", "kazoo", "nats", "aio_pika", "paho")


def imported_after(code: str) -> list[str]:
    """Runs ``code`` in a fresh interpreter; the names of DRIVERS (and a few more) it left imported."""
    watched = (*DRIVERS, "aiohttp", "opentelemetry.sdk.trace", "layotto.server.app")
    script = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {watched!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_serving_the_embedded_defaults_imports_no_backend_driver(tmp_path: Path) -> None:
    code = f"""
import asyncio
from layotto.server import Runtime, embedded_defaults
config = embedded_defaults().with_overrides(
    grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir={str(tmp_path)!r}
)
async def main():
    async with Runtime(config) as runtime:
        assert runtime.grpc_port and len(list(runtime.components)) > 5
asyncio.run(main())
"""
    assert imported_after(code) == ["aiohttp", "layotto.server.app"]  # the actuator's HTTP server, the runtime


def test_help_imports_neither_the_runtime_nor_tracing() -> None:
    code = """
import contextlib, io
from layotto.server.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
    main(["--help"])
"""
    assert imported_after(code) == []


def test_listing_the_types_of_a_block_imports_no_component() -> None:
    code = """
from layotto.server.components.registry import registry_for
assert {"redis", "postgresql", "mysql", "etcd", "sqlite"} <= set(registry_for("state").types())
assert "zookeeper" in registry_for("lock").types() and "nats" in registry_for("pubsub").types()
"""
    assert imported_after(code) == []


def test_a_config_naming_a_type_imports_that_driver_only() -> None:
    code = """
from layotto.server.components.registry import registry_for
assert registry_for("lock").get("zookeeper", "lock.zk").spec.type == "zookeeper"
"""
    assert imported_after(code) == ["kazoo"]


def test_a_broken_plugin_fails_only_the_config_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint(name="broken", value="no_such_package.store:Store", group="layotto.components.state")
    monkeypatch.setattr(registry_module, "entry_points", lambda group: [broken])
    registry = Registry("state")
    assert registry.types() == ["broken"]
    with pytest.raises(ConfigError, match=r"^state\.mine\.type: 'broken' cannot be loaded from no_such_package"):
        registry.get("broken", "state.mine")
    with pytest.raises(ConfigError, match=r"unknown state store type 'nope' \(available: broken\)"):
        registry.get("nope", "state.other")

"""An in-process runtime for application tests (needs ``layotto-sdk[testing]``).

::

    from layotto.client.testing import test_runtime

    async def test_my_app():
        async with test_runtime() as runtime, runtime.client() as client:
            await client.state.save("in-memory", "k", "v")

The runtime serves the embedded defaults (state stores ``in-memory`` and ``sqlite``,
the latter in a temporary directory) on free loopback ports, and stops on exit.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from layotto.client._client import RuntimeClient

__all__ = ["TestRuntime", "test_runtime"]


@dataclass(frozen=True)
class TestRuntime:
    """A running in-process runtime."""

    __test__ = False  # not a pytest test class

    address: str
    http_address: str
    runtime: Any  # layotto.server.Runtime

    def client(self, **options: Any) -> RuntimeClient:
        return RuntimeClient(self.address, **options)


@asynccontextmanager
async def test_runtime(config: Any = None, *, port: int = 0) -> AsyncIterator[TestRuntime]:
    """Start a runtime (embedded defaults unless a ``RuntimeConfig`` is given) on loopback
    ``port`` (0: a free one; give one to restart a runtime where clients expect it)."""
    try:
        from layotto.server import Runtime, embedded_defaults
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("layotto.client.testing needs the runtime: pip install 'layotto-sdk[testing]'") from error
    with tempfile.TemporaryDirectory(prefix="layotto-test-") as data_dir:
        base = config if config is not None else embedded_defaults()
        cfg = base.with_overrides(grpc_address=f"127.0.0.1:{port}", http_address="127.0.0.1:0", data_dir=data_dir)
        runtime = Runtime(cfg)
        await runtime.start()
        try:
            yield TestRuntime(f"127.0.0.1:{runtime.grpc_port}", f"127.0.0.1:{runtime.http_port}", runtime)
        finally:
            await runtime.stop(grace=1.0)


test_runtime.__test__ = False  # type: ignore[attr-defined]

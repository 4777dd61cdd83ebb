from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from server_helpers import ServerProcess, start_server

from layotto.server import Runtime, embedded_defaults


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(data_dir=tmp_path)
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    config = embedded_defaults().with_overrides(
        grpc_address="127.0.0.1:0", http_address="127.0.0.1:0", data_dir=str(tmp_path)
    )
    rt = Runtime(config)
    await rt.start()
    yield rt
    await rt.stop(grace=1)

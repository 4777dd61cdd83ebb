from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from backends import require, s3_client
from server_helpers import ServerProcess, start_server

from layotto.server import Runtime, embedded_defaults

#: Modules whose subject lies behind the API (components, backends and their faults, several runtimes
#: sharing a store) or that choose their transports themselves. The -grpcio tox envs set
#: LAYOTTO_TESTS_TRANSPORT_ONLY=1 and deselect them: they run once, in the plain envs, and the second
#: transport's run is spent on what differs between the transports (CI's time budget is 40 minutes).
TRANSPORT_INDEPENDENT_MODULES = frozenset(
    {
        "test_aio",
        "test_api_plugins",
        "test_backend_faults",
        "test_bindings_files",
        "test_config",
        "test_crypto_key_stores",
        "test_cryption_go",
        "test_email",
        "test_invocation_dns",
        "test_invocation_registry",
        "test_jobs",
        "test_layers",
        "test_lock_stores",
        "test_many_runtimes",
        "test_many_runtimes_lock",
        "test_many_runtimes_pubsub",
        "test_many_runtimes_scheduler",
        "test_masking",
        "test_memory",
        "test_mysql_tls",
        "test_pluggable_components",
        "test_pubsub_repair",
        "test_redis_restart",
        "test_sms_phone",
        "test_snowflake",
        "test_startup",
        "test_state_stores",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    here = Path(__file__).parent
    missing = sorted(name for name in TRANSPORT_INDEPENDENT_MODULES if not (here / f"{name}.py").exists())
    if missing:
        raise pytest.UsageError(f"TRANSPORT_INDEPENDENT_MODULES names modules that do not exist: {missing}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LAYOTTO_TESTS_TRANSPORT_ONLY") != "1":
        return
    kept, deselected = [], []
    for item in items:
        module = item.path.stem
        (deselected if module in TRANSPORT_INDEPENDENT_MODULES else kept).append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


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


@pytest.fixture
async def bucket() -> AsyncIterator[str]:
    """A new bucket of the test S3 server, removed with its objects afterwards."""
    require("s3")
    name = f"test-{uuid.uuid4().hex[:12]}"
    async with s3_client() as client:
        await client.create_bucket(Bucket=name)
        yield name
        listed = await client.list_objects(Bucket=name)
        for item in listed.get("Contents") or []:
            await client.delete_object(Bucket=name, Key=item["Key"])
        await client.delete_bucket(Bucket=name)

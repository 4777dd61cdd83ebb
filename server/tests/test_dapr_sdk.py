"""Dapr's own Python SDK (the `dapr` package) against a running `layotto serve`.

The SDK runs in a child process: it registers dapr.proto.* descriptors of its own,
which must not meet this project's copies in one process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from server_helpers import ServerProcess

DAPR_APP = textwrap.dedent("""
    import asyncio
    from dapr.aio.clients import DaprClient
    from dapr.clients.grpc._state import StateOptions, Concurrency
    from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType

    async def main():
        async with DaprClient() as client:
            await client.save_state("sqlite", "order", '{"id": 1}')
            got = await client.get_state("sqlite", "order")
            assert got.data == b'{"id": 1}' and got.etag, got
            try:
                await client.save_state("sqlite", "order", "x", etag="999999")
                raise SystemExit("a stale etag was accepted")
            except Exception as error:  # the async client wraps every gRPC error in DaprInternalError
                assert "states[0].etag: etag mismatch for key 'order'" in str(error), (type(error), error)
            await client.save_state("sqlite", "order", "v2", etag=got.etag,
                                    options=StateOptions(concurrency=Concurrency.first_write))
            await client.execute_state_transaction("sqlite", [
                TransactionalStateOperation(key="a", data="1"),
                TransactionalStateOperation(key="order", operation_type=TransactionOperationType.delete),
            ])
            bulk = await client.get_bulk_state("sqlite", ["a", "order", "missing"])
            assert [(i.key, i.data) for i in bulk.items] == [("a", b"1"), ("order", b""), ("missing", b"")], bulk.items
            await client.delete_state("sqlite", "a")
            assert (await client.get_state("sqlite", "a")).data == b""
            meta = await client.get_metadata()
            names = {c.name: c.type for c in meta.registered_components}
            assert names["sqlite"] == "state.sqlite", names
        print("dapr sdk ok")

    asyncio.run(main())
""")


def test_dapr_python_sdk_state_and_metadata(server_process: ServerProcess) -> None:
    env = {
        **os.environ,
        "DAPR_GRPC_ENDPOINT": server_process.grpc_address,
        "DAPR_HTTP_ENDPOINT": f"http://{server_process.http_address}",
        "DAPR_HEALTH_TIMEOUT": "10",
    }
    done = subprocess.run(
        [sys.executable, "-c", DAPR_APP], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("dapr sdk ok")

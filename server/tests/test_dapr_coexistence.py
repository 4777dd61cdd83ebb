"""The runtime's copy of Dapr's contract and Dapr's own Python SDK in one process.

Apps migrating from Dapr import both SDKs: ``import dapr.clients`` registers
``dapr.proto.*`` in protobuf's default pool, the runtime keeps its copy in a private pool
(layotto.proto.dapr.pool). Each check runs in a fresh interpreter, in both import orders.
Reflection must describe what the runtime serves, never the SDK's copy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from layotto.server import Runtime

BOTH_SDKS_APP = textwrap.dedent("""
    import asyncio, os, sys

    if sys.argv[1] == "dapr-first":
        import dapr.clients
        from layotto.client.testing import test_runtime
    else:
        from layotto.client.testing import test_runtime
        import dapr.clients

    import grpc
    from google.protobuf import descriptor_pb2
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    def with_dapr_sdk(address):
        with dapr.clients.DaprClient(address) as client:
            client.save_state("in-memory", "from-dapr", "written by dapr")
            read = client.get_state("in-memory", "from-layotto").data
            components = {c.name for c in client.get_metadata().registered_components}
        return read, components

    async def reflected_files(address, symbol):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
            async for answer in stub.ServerReflectionInfo(iter([request]), timeout=10):
                files = answer.file_descriptor_response.file_descriptor_proto
                return [descriptor_pb2.FileDescriptorProto.FromString(f) for f in files]

    async def main():
        async with test_runtime() as runtime, runtime.client() as client:
            os.environ["DAPR_HTTP_ENDPOINT"] = f"http://{runtime.http_address}"
            await client.state.save("in-memory", "from-layotto", "written by layotto")
            read, components = await asyncio.to_thread(with_dapr_sdk, runtime.address)
            assert read == b"written by layotto", read
            assert {"in-memory", "sqlite"} <= components, components
            got = await client.state.get("in-memory", "from-dapr")
            assert got.value == b"written by dapr", got
            files = await reflected_files(runtime.address, "dapr.proto.runtime.v1.Dapr")
            names = [f.name for f in files]
            assert "layotto/proto/dapr/runtime/v1/dapr.proto" in names, names
            assert not any(name.startswith("dapr/proto/") for name in names), names
        print("both sdks ok")

    asyncio.run(main())
""")


@pytest.mark.parametrize("first", ["dapr-first", "layotto-first"])
def test_dapr_sdk_and_in_process_runtime_share_one_interpreter(first: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BOTH_SDKS_APP, first],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "DAPR_HEALTH_TIMEOUT": "10"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("both sdks ok")


def _build_pool(files: list[descriptor_pb2.FileDescriptorProto]) -> descriptor_pool.DescriptorPool:
    """A pool from reflection's answer; fails unless every import of every file is in it."""
    pool = descriptor_pool.DescriptorPool()
    pending = {f.name: f for f in files}
    while pending:
        ready = [f for f in pending.values() if all(d not in pending for d in f.dependency)]
        assert ready, f"imports missing from the answer: {sorted(pending)}"
        for file in ready:
            pool.Add(file)
            del pending[file.name]
    return pool


@pytest.mark.parametrize(
    ("service", "method", "request_type"),
    [
        ("dapr.proto.runtime.v1.Dapr", "GetState", "dapr.proto.runtime.v1.GetStateRequest"),
        ("spec.proto.runtime.v1.Runtime", "GetState", "spec.proto.runtime.v1.GetStateRequest"),
        ("grpc.health.v1.Health", "Check", "grpc.health.v1.HealthCheckRequest"),
    ],
)
async def test_reflection_describes_every_served_service_completely(
    runtime: Runtime, service: str, method: str, request_type: str
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        by_symbol = reflection_pb2.ServerReflectionRequest(file_containing_symbol=service)
        answers = [a async for a in stub.ServerReflectionInfo(iter([listing, by_symbol]), timeout=10)]
    assert service in {s.name for s in answers[0].list_services_response.service}
    files = answers[1].file_descriptor_response.file_descriptor_proto
    pool = _build_pool([descriptor_pb2.FileDescriptorProto.FromString(f) for f in files])
    assert pool.FindServiceByName(service).methods_by_name[method].input_type.full_name == request_type

"""The localstorage and s3 output bindings (Dapr's operations create, get, list, delete) through
InvokeBinding on both wire APIs; they run on the File API's stores, so a file one writes the other reads."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from backends import s3_metadata
from test_api import call_error, error_info

from layotto.proto.dapr.runtime.v1 import binding_pb2 as dapr_binding
from layotto.proto.dapr.runtime.v1 import dapr_pb2_grpc
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime
from layotto.server.config import from_mapping


@pytest.fixture
async def channel(tmp_path: Path, bucket: str) -> AsyncIterator[grpc.aio.Channel]:
    root = str(tmp_path / "files")
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "bindings": {
                "disk": {"type": "localstorage", "metadata": {"rootPath": root, "maxGetBytes": "1000"}},
                "objects": {"type": "s3", "metadata": s3_metadata(bucket)},
            },
            "file": {"local": {"type": "local", "metadata": {"rootPath": root}}},
        }
    )
    async with Runtime(config) as rt, grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as opened:
        yield opened


async def test_localstorage_creates_gets_lists_and_deletes_on_both_apis(channel: grpc.aio.Channel) -> None:
    layotto, dapr = runtime_pb2_grpc.RuntimeStub(channel), dapr_pb2_grpc.DaprStub(channel)

    async def invoke(operation: str, data: bytes = b"", **metadata: str) -> pb.InvokeBindingResponse:
        return await layotto.InvokeBinding(
            pb.InvokeBindingRequest(name="disk", operation=operation, data=data, metadata=metadata)
        )

    created = await invoke("create", b"hello", fileName="notes/a.txt")
    assert json.loads(created.data) == {"fileName": "notes/a.txt"}
    await dapr.InvokeBinding(
        dapr_binding.InvokeBindingRequest(
            name="disk",
            operation="create",
            data=base64.b64encode(b"\x00\xffbin"),
            metadata={"fileName": "notes/b.bin", "decodeBase64": "true"},
        )
    )
    assert (await invoke("get", fileName="notes/b.bin")).data == b"\x00\xffbin"
    generated = (await invoke("create", b"abcd")).metadata["fileName"]  # valid base64, stored as given
    assert uuid.UUID(generated) and (await invoke("get", fileName=generated)).data == b"abcd"
    assert json.loads((await invoke("list", fileName="notes")).data) == ["notes/a.txt", "notes/b.bin"]
    assert json.loads((await invoke("list")).data) == sorted(["notes/a.txt", "notes/b.bin", generated])
    # the File API reads what the binding wrote: one store underneath
    file = [m.data async for m in layotto.GetFile(pb.GetFileRequest(store_name="local", name="notes/a.txt"))]
    assert file == [b"hello"]
    await invoke("delete", fileName="notes/a.txt")
    missing = await call_error(invoke("get", fileName="notes/a.txt"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and error_info(missing).metadata["field"] == "metadata.fileName"
    escape = await call_error(invoke("create", b"x", fileName="../escape"))
    assert escape.code() == grpc.StatusCode.INVALID_ARGUMENT and escape.details().startswith("metadata.fileName:")
    unnamed = await call_error(invoke("get"))
    assert unnamed.details().startswith("metadata.fileName: required")
    await invoke("create", b"x" * 1001, fileName="big")
    too_big = await call_error(invoke("get", fileName="big"))
    assert too_big.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "1001 bytes" in too_big.details()
    bad = await call_error(invoke("create", b"not base64!", fileName="c", decodeBase64="true"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and bad.details().startswith("data:")


async def test_s3_binding_pages_lists_with_daprs_request(channel: grpc.aio.Channel) -> None:
    dapr = dapr_pb2_grpc.DaprStub(channel)

    async def invoke(operation: str, data: bytes = b"", **metadata: str) -> dapr_binding.InvokeBindingResponse:
        return await dapr.InvokeBinding(
            dapr_binding.InvokeBindingRequest(name="objects", operation=operation, data=data, metadata=metadata)
        )

    for key in ("logs/1", "logs/2", "logs/3", "other"):
        assert (await invoke("create", key.encode(), key=key)).metadata["key"] == key
    assert (await invoke("get", key="logs/2")).data == b"logs/2"
    first = json.loads((await invoke("list", json.dumps({"prefix": "logs/", "maxResults": 2}).encode())).data)
    assert [item["Key"] for item in first["Contents"]] == ["logs/1", "logs/2"] and first["IsTruncated"]
    request = {"prefix": "logs/", "maxResults": 2, "marker": first["NextMarker"]}
    rest = json.loads((await invoke("list", json.dumps(request).encode())).data)
    assert [(item["Key"], item["Size"]) for item in rest["Contents"]] == [("logs/3", 6)] and not rest["IsTruncated"]
    everything = json.loads((await invoke("list")).data)
    assert len(everything["Contents"]) == 4
    await invoke("delete", key="logs/1")
    missing = await call_error(invoke("delete", key="logs/1"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    refused = await call_error(invoke("list", b'{"maxResults": 0}'))
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and refused.details().startswith("data.maxResults:")
    wrong = await call_error(invoke("append", b"x", key="k"))
    assert "its operations: create, get, list, delete" in wrong.details()

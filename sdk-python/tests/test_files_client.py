"""client.files against an in-process runtime with a `local` file store in a temporary directory,
and against MockTransport."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest

from layotto.client import (
    FileInfo,
    FileMeta,
    FileNotFound,
    InvalidArgument,
    NotFound,
    RuntimeClient,
    StoreNotFound,
)
from layotto.client.testing import MockTransport, TestRuntime, test_runtime
from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server import embedded_defaults
from layotto.server.config import ComponentConfig, RuntimeConfig

MiB = 1024 * 1024
STORE = "files"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[TestRuntime]:
    files = {STORE: ComponentConfig("local", {"rootPath": str(tmp_path / "files")})}
    config = RuntimeConfig(components={**embedded_defaults().components, "file": files})
    async with test_runtime(config) as running:
        yield running


async def test_a_file_put_from_bytes_comes_back_in_chunks_with_its_metadata(runtime: TestRuntime) -> None:
    data = os.urandom(3 * MiB + 12345)
    async with runtime.client() as client:
        assert await client.files.put(STORE, "a/b.bin", data, {"owner": "alice"}, chunk_size=MiB) == len(data)
        chunks = [chunk async for chunk in client.files.get(STORE, "a/b.bin")]
        assert b"".join(chunks) == data and len(chunks) >= 4 and max(map(len, chunks)) <= MiB
        assert await client.files.read(STORE, "a/b.bin") == data
        meta = await client.files.get_meta(STORE, "a/b.bin")
        assert isinstance(meta, FileMeta) and meta.size == len(data) and meta.metadata == {"owner": "alice"}
        assert meta.last_modified.endswith("Z")
        with pytest.raises(dataclasses.FrozenInstanceError):
            meta.size = 0  # type: ignore[misc]


async def test_put_takes_sync_and_async_iterables_and_empty_data(runtime: TestRuntime) -> None:
    async def produce() -> AsyncIterator[bytes]:
        for part in (b"one,", b"", b"two,", b"three"):
            yield part

    async with runtime.client() as client:
        assert await client.files.put(STORE, "async.txt", produce()) == 13
        assert await client.files.read(STORE, "async.txt") == b"one,two,three"
        big = os.urandom(3 * MiB)  # a chunk over chunk_size is cut, not sent as one message
        assert await client.files.put(STORE, "sync.bin", [big, b"!"], chunk_size=MiB) == len(big) + 1
        assert await client.files.read(STORE, "sync.bin") == big + b"!"
        assert await client.files.put(STORE, "empty", b"") == 0
        assert (await client.files.get_meta(STORE, "empty")).size == 0
        assert await client.files.read(STORE, "empty") == b""


async def test_listing_pages_by_marker_and_list_all_walks_every_page(runtime: TestRuntime) -> None:
    async with runtime.client() as client:
        for name in ("r/1", "r/2", "r/3", "s/1"):
            await client.files.put(STORE, name, name.encode())
        page = await client.files.list(STORE, "r/", page_size=2)
        assert [f.name for f in page.files] == ["r/1", "r/2"] and page.is_truncated and page.marker == "r/2"
        assert page.files[0] == FileInfo("r/1", 3, page.files[0].last_modified)
        rest = await client.files.list(STORE, "r/", page_size=2, marker=page.marker)
        assert [f.name for f in rest.files] == ["r/3"] and not rest.is_truncated
        assert [f.name async for f in client.files.list_all(STORE, page_size=1)] == ["r/1", "r/2", "r/3", "s/1"]


async def test_errors_are_the_sdks(runtime: TestRuntime) -> None:
    async with runtime.client() as client:
        with pytest.raises(FileNotFound) as missing:
            await client.files.read(STORE, "nope.txt")
        assert missing.value.metadata["file"] == "nope.txt" and isinstance(missing.value, NotFound)
        with pytest.raises(FileNotFound):
            await client.files.get_meta(STORE, "nope.txt")
        with pytest.raises(FileNotFound):
            await client.files.delete(STORE, "nope.txt")
        with pytest.raises(InvalidArgument) as escape:
            await client.files.put(STORE, "../outside", b"x")
        assert escape.value.field == "name"
        with pytest.raises(StoreNotFound):
            await client.files.get_meta("no-such-store", "x")
        for call, field in (
            (client.files.put(STORE, "x", b"x", chunk_size=0), "chunk_size"),
            (client.files.list(STORE, page_size=-1), "page_size"),
            (client.files.put(STORE, "x", "text"), "data"),  # type: ignore[arg-type]
            (client.files.put(STORE, "x", [b"a", 1]), "data"),  # type: ignore[list-item]
            (client.files.put(STORE, "x", b"x", {"n": 1}), "metadata['n']"),  # type: ignore[dict-item]
        ):
            with pytest.raises(InvalidArgument) as refused:
                await call
            assert refused.value.field == field


async def test_a_failing_source_cancels_the_put_and_leaves_the_old_file(runtime: TestRuntime) -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b"new data, "
        raise RuntimeError("the source broke")

    async with runtime.client() as client:
        await client.files.put(STORE, "kept.txt", b"old")
        with pytest.raises(RuntimeError, match="the source broke"):
            await client.files.put(STORE, "kept.txt", failing())
        assert await client.files.read(STORE, "kept.txt") == b"old"
        await client.files.delete(STORE, "kept.txt")
        with pytest.raises(FileNotFound):
            await client.files.get_meta(STORE, "kept.txt")


async def test_stopping_a_get_early_leaves_the_client_usable(runtime: TestRuntime) -> None:
    async with runtime.client() as client:
        await client.files.put(STORE, "long.bin", os.urandom(4 * MiB), chunk_size=MiB)
        async with aclosing(client.files.get(STORE, "long.bin")) as chunks:
            async for _ in chunks:
                break
        assert len(await client.files.read(STORE, "long.bin")) == 4 * MiB


async def test_mock_transport_serves_both_stream_shapes() -> None:
    def handler(method: str, request: Any) -> Any:
        if method.endswith(".GetFile"):
            return [pb.GetFileResponse(data=b"ab"), pb.GetFileResponse(data=b"c")]
        if method.endswith(".GetFileMeta"):
            values = {"tag": pb.FileMetaValue(value=["a", "b"])}
            return pb.GetFileMetaResponse(size=3, response=pb.FileMeta(metadata=values))
        assert method.endswith(".PutFile") and isinstance(request, list)
        assert [m.data for m in request] == [b"xy", b"z"] and request[0].name == "f"
        return None

    transport = MockTransport(handler)
    async with RuntimeClient(transport=transport) as client:
        assert await client.files.read("s", "f") == b"abc"
        assert await client.files.put("s", "f", b"xyz", chunk_size=2) == 3
        assert (await client.files.get_meta("s", "f")).metadata == {"tag": "a, b"}  # RFC 9110's join
    sent = [name.rsplit(".", 1)[1] for name, _ in transport.requests]
    assert sent == ["GetFile", "PutFile", "PutFile", "GetFileMeta"]

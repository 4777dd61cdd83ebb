"""The File API (PutFile, GetFile, ListFile, GetFileMeta, DelFile) on the `local` and `s3` file stores,
through a Layotto client built from the generated stubs; s3 against the real S3 server scripts/backends
starts (moto's, LAYOTTO_TEST_S3)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from backends import s3_client, s3_metadata
from server_helpers import start_server
from test_api import call_error, error_info

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc
from layotto.server import Runtime
from layotto.server.config import from_mapping

MiB = 1024 * 1024
STORES = ("local", "s3")


@pytest.fixture
async def runtime(tmp_path: Path, bucket: str) -> AsyncIterator[Runtime]:
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "file": {
                "local": {"type": "local", "metadata": {"rootPath": str(tmp_path / "files"), "chunkSize": "65536"}},
                "s3": {"type": "s3", "metadata": s3_metadata(bucket)},
            },
        }
    )
    async with Runtime(config) as rt:
        yield rt


@pytest.fixture
async def stub(runtime: Runtime) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


async def put(stub: runtime_pb2_grpc.RuntimeStub, store: str, name: str, parts: list[bytes], **meta: str) -> None:
    messages = [pb.PutFileRequest(store_name=store, name=name, data=parts[0] if parts else b"", metadata=meta)]
    messages += [pb.PutFileRequest(data=part) for part in parts[1:]]
    await stub.PutFile(iter(messages))


async def get(stub: runtime_pb2_grpc.RuntimeStub, store: str, name: str) -> list[bytes]:
    return [answer.data async for answer in stub.GetFile(pb.GetFileRequest(store_name=store, name=name))]


def ref(store: str, name: str) -> pb.FileRequest:
    return pb.FileRequest(store_name=store, name=name)


@pytest.mark.parametrize("store", STORES)
async def test_round_trip_in_bounded_chunks_with_metadata(stub: runtime_pb2_grpc.RuntimeStub, store: str) -> None:
    parts = [os.urandom(100_000), b"", os.urandom(70_000), os.urandom(800_000)]
    await put(stub, store, "docs/report.bin", parts, owner="alice", kind="pdf")
    chunks = await get(stub, store, "docs/report.bin")
    assert b"".join(chunks) == b"".join(parts)
    assert [len(chunk) for chunk in chunks[:-1]] == [64 * 1024] * (len(chunks) - 1)  # full chunkSize messages
    assert 0 < len(chunks[-1]) <= 64 * 1024
    meta = await stub.GetFileMeta(pb.GetFileMetaRequest(request=ref(store, "docs/report.bin")))
    assert meta.size == 970_000
    assert meta.last_modified.endswith("Z") and meta.last_modified[:2] == "20"
    assert {key: list(value.value) for key, value in meta.response.metadata.items()} == {
        "owner": ["alice"],
        "kind": ["pdf"],
    }
    await put(stub, store, "docs/report.bin", [b"v2"])  # a put replaces the file and its metadata
    assert b"".join(await get(stub, store, "docs/report.bin")) == b"v2"
    meta = await stub.GetFileMeta(pb.GetFileMetaRequest(request=ref(store, "docs/report.bin")))
    assert (meta.size, dict(meta.response.metadata)) == (2, {})
    await put(stub, store, "docs/report.bin.json/x", [b"x"], owner="bob")  # its own metadata, no collision
    meta = await stub.GetFileMeta(pb.GetFileMetaRequest(request=ref(store, "docs/report.bin.json/x")))
    assert list(meta.response.metadata["owner"].value) == ["bob"]
    await put(stub, store, "empty", [b""])
    assert await get(stub, store, "empty") == []


@pytest.mark.parametrize("store", STORES)
async def test_list_pages_by_marker_in_name_order(stub: runtime_pb2_grpc.RuntimeStub, store: str) -> None:
    for name in ("dir/e", "dir/a", "dir/sub/c", "dir/b", "dir/d", "other"):
        await put(stub, store, name, [name.encode()])
    seen, marker, pages = [], "", []
    while True:
        page = await stub.ListFile(pb.ListFileRequest(request=ref(store, "dir/"), page_size=2, marker=marker))
        names = [file.file_name for file in page.files]
        pages.append((names, page.is_truncated))
        seen += page.files
        assert page.marker == names[-1]
        if not page.is_truncated:
            break
        marker = page.marker
    assert pages == [(["dir/a", "dir/b"], True), (["dir/d", "dir/e"], True), (["dir/sub/c"], False)]
    partial = await stub.ListFile(pb.ListFileRequest(request=ref(store, "dir/s")))  # a prefix, not only a directory
    assert [file.file_name for file in partial.files] == ["dir/sub/c"]
    assert [file.size for file in seen] == [5, 5, 5, 5, 9]
    everything = await stub.ListFile(pb.ListFileRequest(request=ref(store, "")))
    assert [file.file_name for file in everything.files][-1] == "other" and not everything.is_truncated
    after_all = await stub.ListFile(pb.ListFileRequest(request=ref(store, "dir/"), marker="dir/sub/c"))
    assert (list(after_all.files), after_all.marker, after_all.is_truncated) == ([], "", False)
    error = await call_error(stub.ListFile(pb.ListFileRequest(request=ref(store, "dir/"), page_size=-1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("page_size:")


@pytest.mark.parametrize("store", STORES)
async def test_delete_and_missing_files_answer_not_found_naming_them(
    stub: runtime_pb2_grpc.RuntimeStub, store: str
) -> None:
    await put(stub, store, "gone.txt", [b"x"])
    await stub.DelFile(pb.DelFileRequest(request=ref(store, "gone.txt")))
    missing = [
        stub.DelFile(pb.DelFileRequest(request=ref(store, "gone.txt"))),
        stub.GetFileMeta(pb.GetFileMetaRequest(request=ref(store, "gone.txt"))),
    ]
    for call in missing:
        error = await call_error(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == f"request.name: file store '{store}' has no file 'gone.txt'"
        assert error_info(error).reason == "FILE_NOT_FOUND" and error_info(error).metadata["file"] == "gone.txt"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get(stub, store, "gone.txt")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "'gone.txt'" in caught.value.details()
    assert error_info(caught.value).metadata["field"] == "name"
    listed = await stub.ListFile(pb.ListFileRequest(request=ref(store, "")))
    assert list(listed.files) == []


ESCAPES = ["../outside", "/etc/passwd", "a/../../outside", "a//b", "./a", "", "a\x00b"]


@pytest.mark.parametrize("store", STORES)
async def test_names_that_escape_or_are_malformed_are_refused(
    stub: runtime_pb2_grpc.RuntimeStub, store: str, tmp_path: Path
) -> None:
    for name in ESCAPES:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await put(stub, store, name, [b"evil"])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
        assert error_info(caught.value).metadata["field"] == "name", name
        error = await call_error(stub.GetFileMeta(pb.GetFileMetaRequest(request=ref(store, name))))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("request.name:"), name
    assert not (tmp_path / "outside").exists() and not (tmp_path / "files" / "a").exists()
    listed = await stub.ListFile(pb.ListFileRequest(request=ref(store, "")))
    assert list(listed.files) == []


async def test_local_refuses_symlinks_out_of_the_root_fifos_and_devices(
    stub: runtime_pb2_grpc.RuntimeStub, tmp_path: Path
) -> None:
    root = tmp_path / "files"
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key").write_bytes(b"private")
    (root / "linkdir").symlink_to(outside)
    (root / "linkfile").symlink_to(outside / "key")
    (root / "zero").symlink_to("/dev/zero")
    os.mkfifo(root / "fifo")
    os.mknod(root / "null", 0o600 | 0o020000, os.makedev(1, 3))  # a character device (root: as in CI)
    (root / "inside").write_bytes(b"fine")
    (root / "alias").symlink_to(root / "inside")  # a symlink that stays inside is followed
    refused = {"linkdir/key": "leads out", "linkfile": "leads out", "zero": "leads out"}
    refused |= {"fifo": "not a regular file", "null": "not a regular file", ".layotto/meta/x": "reserved"}
    for name, why in refused.items():
        for call in (
            get(stub, "local", name),
            stub.GetFileMeta(pb.GetFileMetaRequest(request=ref("local", name))),
            stub.DelFile(pb.DelFileRequest(request=ref("local", name))),
        ):
            error = await call_error(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and why in error.details(), (name, error)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await put(stub, "local", name, [b"overwrite"])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
    assert (outside / "key").read_bytes() == b"private"
    under_a_file = await call_error(put(stub, "local", "inside/child", [b"x"]))
    assert (
        under_a_file.code() == grpc.StatusCode.INVALID_ARGUMENT and "a parent of it is a file" in under_a_file.details()
    )
    error = await call_error(stub.GetFileMeta(pb.GetFileMetaRequest(request=ref("local", "inside/child"))))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert b"".join(await get(stub, "local", "alias")) == b"fine"
    listed = await stub.ListFile(pb.ListFileRequest(request=ref("local", "")))
    assert [file.file_name for file in listed.files] == ["inside"]  # no links, FIFOs, devices or .layotto


async def test_local_refuses_a_segment_longer_than_the_filesystem_takes(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    name = "n" * 300  # under the 1024-byte limit on names, over NAME_MAX (255) of one segment
    error = await call_error(put(stub, "local", name, [b"x"]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("name:"), error


async def until(condition: Callable[[], Any], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("store", STORES)
async def test_a_put_cancelled_mid_stream_leaves_nothing(
    stub: runtime_pb2_grpc.RuntimeStub, store: str, tmp_path: Path, bucket: str
) -> None:
    """The server sees the cancel as the stream's end first, then the cancel: without the 50 ms wait
    at the end of the stream (adapter.CANCEL_GRACE_SECONDS) the partial file was stored (native
    transport, 1 of 2 stores in one run)."""
    temp_dir = tmp_path / "files" / ".layotto" / "tmp"

    async def uploading() -> bool:
        if store == "local":
            return any(entry.stat().st_size > 0 for entry in temp_dir.iterdir())
        async with s3_client() as client:
            return bool((await client.list_multipart_uploads(Bucket=bucket)).get("Uploads"))

    async def cleaned() -> bool:
        if store == "local":
            return not any(temp_dir.iterdir())
        async with s3_client() as client:
            return not (await client.list_multipart_uploads(Bucket=bucket)).get("Uploads")

    call = stub.PutFile()
    await call.write(pb.PutFileRequest(store_name=store, name="partial.bin", data=b"x" * MiB))
    for _ in range(6):  # past one 5 MiB part: the s3 store has begun a multipart upload
        await call.write(pb.PutFileRequest(data=b"y" * MiB))
    await until(uploading, "the upload to begin")
    call.cancel()
    await until(cleaned, "the partial upload to be removed")
    error = await call_error(stub.GetFileMeta(pb.GetFileMetaRequest(request=ref(store, "partial.bin"))))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert list((await stub.ListFile(pb.ListFileRequest(request=ref(store, "")))).files) == []


def test_file_stores_are_configured_with_their_metadata_checked(tmp_path: Path) -> None:
    from layotto.server.components.base import ConfigError
    from layotto.server.components.registry import registry_for

    spec = registry_for("file").spec("s3")
    with pytest.raises(ConfigError, match=r"partSize: must be between 5242880 and"):
        spec.parse_metadata({"bucket": "b", "partSize": "1024"}, "file.s3.metadata")
    with pytest.raises(ConfigError, match=r"bucket: required"):
        spec.parse_metadata({}, "file.s3.metadata")


def chunks_of(total: int, size: int) -> Iterator[bytes]:
    block = os.urandom(size)
    for index in range(total // size):
        yield index.to_bytes(8, "big") + block[8:]


def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])


def reset_peak_rss(pid: int) -> None:
    """Resets the process's VmHWM (peak RSS) to its current RSS."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")


async def put_stream(stub: runtime_pb2_grpc.RuntimeStub, store: str, name: str, total: int) -> str:
    """PutFile of ``total`` bytes in 1 MiB messages; the sha256 of what was sent."""
    digest = hashlib.sha256()

    async def messages() -> AsyncIterator[pb.PutFileRequest]:
        for index, chunk in enumerate(chunks_of(total, MiB)):
            digest.update(chunk)
            yield (
                pb.PutFileRequest(store_name=store, name=name, data=chunk)
                if index == 0
                else pb.PutFileRequest(data=chunk)
            )

    await stub.PutFile(messages(), timeout=300)
    return digest.hexdigest()


async def get_digest(
    stub: runtime_pb2_grpc.RuntimeStub, store: str, name: str, pause_after_first: float = 0
) -> tuple[str, int]:
    """GetFile's (sha256, size); ``pause_after_first`` seconds without reading after the first message
    (nothing to await: a runtime without back-pressure would read the whole file into memory meanwhile)."""
    digest, size = hashlib.sha256(), 0
    async for answer in stub.GetFile(pb.GetFileRequest(store_name=store, name=name), timeout=300):
        if pause_after_first and size == 0:
            await asyncio.sleep(pause_after_first)
        digest.update(answer.data)
        size += len(answer.data)
    return digest.hexdigest(), size


#: the most a runtime's resident memory may grow while a large file goes through it (put, then got)
RSS_GROWTH_BOUND_MIB = 64
#: the large file's size through the local store: 1 GiB, as issue #17 names it (about 9 s here);
#: LAYOTTO_TEST_LARGE_FILE_MIB sets another size
LARGE_FILE_MIB = int(os.environ.get("LAYOTTO_TEST_LARGE_FILE_MIB", "1024"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
async def test_large_files_go_through_with_bounded_memory(tmp_path: Path, bucket: str) -> None:
    """LARGE_FILE_MIB (1024) MiB through the local store and 80 MiB (sixteen 5 MiB parts) through s3, on a
    `layotto serve` process: its peak resident memory (VmHWM, reset first) grows by less than
    RSS_GROWTH_BOUND_MIB, also while a GetFile client stops reading for a while (back-pressure)."""
    config = {
        "file": {
            "local": {"type": "local", "metadata": {"rootPath": str(tmp_path / "files")}},
            "s3": {"type": "s3", "metadata": s3_metadata(bucket)},
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    server = start_server("-c", str(tmp_path / "config.json"), data_dir=tmp_path)
    pid = server.process.pid
    try:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            for store, total in (("local", LARGE_FILE_MIB * MiB), ("s3", 80 * MiB)):
                await put_stream(stub, store, "warm", MiB)  # one-time allocations belong to the baseline
                await get_digest(stub, store, "warm")
                reset_peak_rss(pid)
                baseline = vm_kib(pid, "VmRSS")
                sent = await put_stream(stub, store, "big.bin", total)
                assert await get_digest(stub, store, "big.bin", pause_after_first=0.5) == (sent, total)
                growth_mib = (vm_kib(pid, "VmHWM") - baseline) / 1024
                assert growth_mib < RSS_GROWTH_BOUND_MIB, f"{store}: the runtime's RSS peaked {growth_mib:.0f} MiB up"
                await stub.DelFile(pb.DelFileRequest(request=ref(store, "big.bin")))
    finally:
        server.process.kill()
        server.process.wait()


async def test_an_s3_store_without_its_bucket_stops_start_up_naming_it(tmp_path: Path, bucket: str) -> None:
    from layotto.server.components.base import ConfigError

    metadata = {**s3_metadata(bucket), "bucket": f"{bucket}-missing"}
    config = from_mapping({"data_dir": str(tmp_path), "file": {"files": {"type": "s3", "metadata": metadata}}})
    with pytest.raises(ConfigError, match=rf"file\.files\.metadata\.bucket: bucket '{bucket}-missing'"):
        async with Runtime(config.with_overrides(grpc_address="127.0.0.1:0", http_address="127.0.0.1:0")):
            pass


async def test_a_relative_root_path_is_below_the_data_dir(tmp_path: Path) -> None:
    config = from_mapping(
        {
            "data_dir": str(tmp_path / "data"),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "file": {"local": {"type": "local", "metadata": {"rootPath": "files"}}},
        }
    )
    async with Runtime(config) as rt, grpc.aio.insecure_channel(f"127.0.0.1:{rt.grpc_port}") as channel:
        await put(runtime_pb2_grpc.RuntimeStub(channel), "local", "a/b.txt", [b"here"])
    assert (tmp_path / "data" / "files" / "a" / "b.txt").read_bytes() == b"here"


@pytest.mark.parametrize(
    ("block", "root", "message"),
    [
        ("file", "", r"file\.local\.metadata\.rootPath: required, a directory"),
        ("file", ".", r"file\.local\.metadata\.rootPath: '\.' is the data directory itself"),
        ("oss", "", r"oss\.local\.metadata\.rootPath: required, a directory"),
        ("oss", "DATA_DIR", r"oss\.local\.metadata\.rootPath: '.*' is the data directory itself"),
    ],
    ids=["file-empty", "file-dot", "oss-empty", "oss-data-dir"],
)
async def test_a_local_root_that_is_the_data_dir_is_refused(
    tmp_path: Path, block: str, root: str, message: str
) -> None:
    """An empty rootPath was the data directory: ListFile showed state.db, and DelFile could delete it."""
    from layotto.server.components.base import ConfigError

    data_dir = tmp_path / "data"
    metadata = {"rootPath": str(data_dir) if root == "DATA_DIR" else root}
    config = from_mapping(
        {
            "data_dir": str(data_dir),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "state": {"s": {"type": "sqlite"}},
            block: {"local": {"type": "local", "metadata": metadata}},
        }
    )
    with pytest.raises(ConfigError, match=message):
        async with Runtime(config):
            pass

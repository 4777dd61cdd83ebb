"""The File API's edges found by trying to break it: listings of the `local` store's reserved
directory, S3 metadata that HTTP headers would alter or lose, markers longer than any name."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import pytest
from test_api import call_error, error_info
from test_files import STORES, put, ref, runtime, stub  # noqa: F401 (fixtures)

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc


async def test_local_listings_never_show_the_reserved_directory(stub: runtime_pb2_grpc.RuntimeStub) -> None:  # noqa: F811
    await put(stub, "local", "kept.txt", [b"x"], owner="alice")  # leaves a sidecar in .layotto/meta
    for prefix in (".layotto/", ".layotto/meta/", ".layotto/tmp/", ".layotto", ".lay"):
        listed = await stub.ListFile(pb.ListFileRequest(request=ref("local", prefix)))
        assert [file.file_name for file in listed.files] == [], prefix


BAD_S3_METADATA = {"a b": "v", "a:b": "v", "": "v", "clé": "v", "k": " padded ", "t": "tab\there"}


async def test_s3_refuses_metadata_headers_would_alter_naming_the_entry(stub: runtime_pb2_grpc.RuntimeStub) -> None:  # noqa: F811
    for key, value in BAD_S3_METADATA.items():
        error = await call_error(put(stub, "s3", "m.txt", [b"x"], **{key: value}))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (key, error)
        assert error_info(error).metadata["field"] == f"metadata[{key!r}]", key
    error = await call_error(put(stub, "s3", "m.txt", [b"x"], **{f"k{i}": "v" * 100 for i in range(30)}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("metadata: holds")
    missing = await call_error(stub.GetFileMeta(pb.GetFileMetaRequest(request=ref("s3", "m.txt"))))
    assert missing.code() == grpc.StatusCode.NOT_FOUND  # nothing stored by a refused put
    await put(stub, "s3", "m.txt", [b"x"], **{"Owner-Id_1.x": "a b: c", "big": "v" * 1900})
    meta = await stub.GetFileMeta(pb.GetFileMetaRequest(request=ref("s3", "m.txt")))
    assert {key: list(value.value) for key, value in meta.response.metadata.items()} == {
        "owner-id_1.x": ["a b: c"],
        "big": ["v" * 1900],
    }


@pytest.mark.parametrize("store", STORES)
async def test_a_marker_longer_than_any_name_is_refused(stub: runtime_pb2_grpc.RuntimeStub, store: str) -> None:  # noqa: F811
    error = await call_error(stub.ListFile(pb.ListFileRequest(request=ref(store, ""), marker="z" * 1025)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("marker: is over 1024")
    listed = await stub.ListFile(pb.ListFileRequest(request=ref(store, ""), marker="z" * 1024))
    assert list(listed.files) == [] and not listed.is_truncated


async def test_local_concurrent_writers_of_one_file_leave_one_writers_data_and_metadata(
    stub: runtime_pb2_grpc.RuntimeStub,  # noqa: F811
) -> None:
    for _ in range(25):  # the writers race to their renames; before the fix, data and metadata mixed often
        await asyncio.gather(*(put(stub, "local", "same", [str(i).encode()], v=str(i)) for i in range(8)))
        data = b"".join(
            [answer.data async for answer in stub.GetFile(pb.GetFileRequest(store_name="local", name="same"))]
        )
        meta = await stub.GetFileMeta(pb.GetFileMetaRequest(request=ref("local", "same")))
        assert list(meta.response.metadata["v"].value) == [data.decode()]


async def test_local_listings_skip_a_file_whose_name_is_not_utf8(
    stub: runtime_pb2_grpc.RuntimeStub,  # noqa: F811
    tmp_path: Path,
) -> None:
    (tmp_path / "files" / "d").mkdir()
    for name in (b"d/bad\xff", b"d/good"):  # put there by other means: one name no answer can carry
        (tmp_path / "files" / os.fsdecode(name)).write_bytes(b"x")
    listed = await stub.ListFile(pb.ListFileRequest(request=ref("local", "")))
    assert [file.file_name for file in listed.files] == ["d/good"]

"""Layotto's ObjectStorageService on the `s3` object store, against the real S3 server scripts/backends
starts (moto's, LAYOTTO_TEST_S3), through a client built from the generated stubs as Layotto's Go SDK
calls it."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio
from backends import address, require, s3_client
from server_helpers import start_server
from test_api import call_error, error_info
from test_files import RSS_GROWTH_BOUND_MIB, chunks_of, reset_peak_rss, vm_kib
from test_pubsub import wait_for

from layotto.proto.extension.v1.s3 import oss_pb2 as pb
from layotto.proto.extension.v1.s3 import oss_pb2_grpc
from layotto.server import Runtime
from layotto.server.config import from_mapping

MiB = 1024 * 1024
Stub = oss_pb2_grpc.ObjectStorageServiceStub
STORES = ("s3", "local")


def s3_store_metadata() -> dict[str, str]:
    return {
        "endpoint": address("s3"),
        "accessKey": "test",
        "secretKey": "test",
        "forcePathStyle": "true",
        "partSize": str(5 * MiB),
        "maxPartSize": str(5 * MiB),
        "chunkSize": str(64 * 1024),
    }


async def _empty_bucket(client: object, name: str) -> None:
    versions = await client.list_object_versions(Bucket=name)  # type: ignore[attr-defined]
    for item in [*(versions.get("Versions") or []), *(versions.get("DeleteMarkers") or [])]:
        await client.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])  # type: ignore[attr-defined]
    uploads = await client.list_multipart_uploads(Bucket=name)  # type: ignore[attr-defined]
    for item in uploads.get("Uploads") or []:
        await client.abort_multipart_upload(Bucket=name, Key=item["Key"], UploadId=item["UploadId"])  # type: ignore[attr-defined]
    await client.delete_bucket(Bucket=name)  # type: ignore[attr-defined]


pytestmark = pytest.mark.asyncio(loop_scope="module")  # one runtime serves the module's tests


@pytest.fixture(scope="module")
def oss_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local store's root; each test's buckets are directories made below it."""
    return tmp_path_factory.mktemp("oss-module") / "oss"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(oss_root: Path) -> AsyncIterator[Runtime]:
    require("s3")
    config = from_mapping(
        {
            "data_dir": str(oss_root.parent),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "oss": {
                "s3": {"type": "s3", "metadata": s3_store_metadata()},
                "local": {"type": "local", "metadata": {"rootPath": str(oss_root), "chunkSize": "65536"}},
            },
        }
    )
    async with Runtime(config) as rt:
        yield rt


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stub(runtime: Runtime) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel:
        yield oss_pb2_grpc.ObjectStorageServiceStub(channel)


@pytest_asyncio.fixture(loop_scope="module")
async def buckets(oss_root: Path) -> AsyncIterator[list[str]]:
    """Two new buckets of the test S3 server (the second versioned) and of the local store, removed with
    everything in them."""
    require("s3")
    names = [f"oss-{uuid.uuid4().hex[:12]}", f"oss-{uuid.uuid4().hex[:12]}"]
    for name in names:
        (oss_root / name).mkdir(parents=True)
    async with s3_client() as client:
        for name in names:
            await client.create_bucket(Bucket=name)
        await client.put_bucket_versioning(Bucket=names[1], VersioningConfiguration={"Status": "Enabled"})
        yield names
        for name in names:
            await _empty_bucket(client, name)


async def put(
    stub: Stub, store: str, bucket: str, key: str, parts: list[bytes], **fields: object
) -> pb.PutObjectOutput:
    first = pb.PutObjectInput(store_name=store, bucket=bucket, key=key, body=parts[0] if parts else b"", **fields)
    return await stub.PutObject(iter([first, *(pb.PutObjectInput(body=part) for part in parts[1:])]))


async def get(stub: Stub, store: str, bucket: str, key: str, **fields: object) -> list[pb.GetObjectOutput]:
    return [
        message
        async for message in stub.GetObject(pb.GetObjectInput(store_name=store, bucket=bucket, key=key, **fields))
    ]


@pytest.mark.parametrize("store", STORES)
async def test_put_get_head_copy_list_delete(stub: Stub, buckets: list[str], store: str) -> None:
    bucket = buckets[0]
    parts = [os.urandom(100_000), b"", os.urandom(70_000)]
    written = await put(stub, store, bucket, "docs/a.bin", parts, meta={"owner": "alice"})
    assert written.etag
    answers = await get(stub, store, bucket, "docs/a.bin")
    assert b"".join(a.body for a in answers) == b"".join(parts)
    assert max(len(a.body) for a in answers) <= 64 * 1024 and len(answers) == 3
    assert all(a.metadata == {"owner": "alice"} and a.content_length == 170_000 for a in answers)
    assert answers[0].etag == written.etag and answers[0].last_modified > 1_700_000_000
    ranged = await get(stub, store, bucket, "docs/a.bin", start=10, end=19)
    assert b"".join(a.body for a in ranged) == parts[0][10:20]
    head = await stub.HeadObject(pb.HeadObjectInput(store_name=store, bucket=bucket, key="docs/a.bin"))
    assert head.result_metadata["Content-Length"] == "170000" and head.result_metadata["x-amz-meta-owner"] == "alice"
    exists = await stub.IsObjectExist(pb.IsObjectExistInput(store_name=store, bucket=bucket, key="docs/a.bin"))
    assert exists.file_exist
    copied = await stub.CopyObject(
        pb.CopyObjectInput(
            store_name=store,
            bucket=buckets[1],
            key="copy.bin",
            copy_source=pb.CopySource(copy_source_bucket=bucket, copy_source_key="docs/a.bin"),
        )
    )
    assert copied.copy_object_result.etag == written.etag and (copied.version_id or store == "local")
    assert b"".join(a.body for a in await get(stub, store, buckets[1], "copy.bin")) == b"".join(parts)
    for key in ("docs/b", "docs/sub/c", "docs/sub/d", "top"):
        await put(stub, store, bucket, key, [key.encode()])
    page = await stub.ListObjects(pb.ListObjectsInput(store_name=store, bucket=bucket, prefix="docs/", delimiter="/"))
    assert [o.key for o in page.contents] == ["docs/a.bin", "docs/b"] and list(page.common_prefixes) == ["docs/sub/"]
    first = await stub.ListObjects(pb.ListObjectsInput(store_name=store, bucket=bucket, maxKeys=2))
    assert [o.key for o in first.contents] == ["docs/a.bin", "docs/b"] and first.is_truncated
    rest = await stub.ListObjects(pb.ListObjectsInput(store_name=store, bucket=bucket, marker=first.next_marker))
    assert [o.key for o in rest.contents] == ["docs/sub/c", "docs/sub/d", "top"] and not rest.is_truncated
    await stub.DeleteObject(pb.DeleteObjectInput(store_name=store, bucket=bucket, key="top"))
    deleted = await stub.DeleteObjects(
        pb.DeleteObjectsInput(
            store_name=store,
            bucket=bucket,
            delete=pb.Delete(objects=[pb.ObjectIdentifier(key="docs/b"), pb.ObjectIdentifier(key="docs/sub/c")]),
        )
    )
    assert sorted(d.key for d in deleted.deleted) == ["docs/b", "docs/sub/c"]
    left = await stub.ListObjects(pb.ListObjectsInput(store_name=store, bucket=bucket))
    assert [o.key for o in left.contents] == ["docs/a.bin", "docs/sub/d"]
    gone = await stub.IsObjectExist(pb.IsObjectExistInput(store_name=store, bucket=bucket, key="top"))
    assert not gone.file_exist


@pytest.mark.parametrize("store", STORES)
async def test_missing_bucket_and_key_answer_not_found_naming_them(stub: Stub, buckets: list[str], store: str) -> None:
    bucket = buckets[0]
    calls = {
        "key": [
            stub.HeadObject(pb.HeadObjectInput(store_name=store, bucket=bucket, key="nope")),
            stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name=store, bucket=bucket, key="nope")),
        ],
        "bucket": [
            stub.HeadObject(pb.HeadObjectInput(store_name=store, bucket="no-such-bucket-x", key="k")),
            stub.ListObjects(pb.ListObjectsInput(store_name=store, bucket="no-such-bucket-x")),
            stub.IsObjectExist(pb.IsObjectExistInput(store_name=store, bucket="no-such-bucket-x", key="k")),
        ],
    }
    for field, pending in calls.items():
        for call in pending:
            error = await call_error(call)
            assert error.code() == grpc.StatusCode.NOT_FOUND, error.details()
            assert error.details().startswith(f"{field}: object store '{store}' has no ")
            assert error_info(error).reason == "OBJECT_NOT_FOUND" and error_info(error).metadata["field"] == field
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get(stub, store, bucket, "nope")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND and "'nope'" in caught.value.details()
    missing = await call_error(stub.HeadObject(pb.HeadObjectInput(store_name=store, bucket=bucket, key="nope")))
    assert missing.details() == f"key: object store '{store}' has no object 'nope' in bucket '{bucket}'"
    no_upload = pb.AbortMultipartUploadInput(store_name=store, bucket=bucket, key="k", upload_id="nope")
    missing = await call_error(stub.AbortMultipartUpload(no_upload))
    assert missing.details() == f"upload_id: object store '{store}' has no multipart upload 'nope' of 'k'"
    source = pb.CopySource(copy_source_bucket=bucket, copy_source_key="nope")
    error = await call_error(
        stub.CopyObject(pb.CopyObjectInput(store_name=store, bucket=bucket, key="t", copy_source=source))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and error.details().startswith("copy_source.copy_source_key:")


@pytest.mark.parametrize("store", STORES)
async def test_bad_input_is_invalid_argument_naming_the_field(stub: Stub, buckets: list[str], store: str) -> None:
    bucket = buckets[0]
    cases = {
        "bucket": stub.HeadObject(pb.HeadObjectInput(store_name=store, bucket="", key="k")),
        "key": stub.HeadObject(pb.HeadObjectInput(store_name=store, bucket=bucket, key="")),
        "maxKeys": stub.ListObjects(pb.ListObjectsInput(store_name=store, bucket=bucket, maxKeys=-1)),
        "end": stub.GetObject(pb.GetObjectInput(store_name=store, bucket=bucket, key="k", start=5, end=2)).read(),
        "acl": stub.PutObjectCannedAcl(pb.PutObjectCannedAclInput(store_name=store, bucket=bucket, key="k", acl="all")),
        "part_number": stub.UploadPart(
            iter([pb.UploadPartInput(store_name=store, bucket=bucket, key="k", upload_id="u")])
        ),
        "expired_in_sec": stub.SignURL(pb.SignURLInput(store_name=store, bucket=bucket, key="k", method="GET")),
        "method": stub.SignURL(
            pb.SignURLInput(store_name=store, bucket=bucket, key="k", method="DELETE", expired_in_sec=9)
        ),
        "store_name": stub.HeadObject(pb.HeadObjectInput(store_name="nope", bucket=bucket, key="k")),
        "max_parts": stub.ListParts(
            pb.ListPartsInput(store_name=store, bucket=bucket, key="k", upload_id="u", max_parts=-3)
        ),
        "content_length": stub.PutObject(
            iter([pb.PutObjectInput(store_name=store, bucket=bucket, key="k", body=b"abc", content_length=4)])
        ),
    }
    if store == "s3":  # S3 needs a part whole before sending it: the store holds at most maxPartSize
        big = [pb.UploadPartInput(store_name=store, bucket=bucket, key="k", upload_id="u", part_number=1)]
        big += [pb.UploadPartInput(body=bytes(MiB)) for _ in range(5)] + [pb.UploadPartInput(body=b"x")]
        cases["body"] = stub.UploadPart(iter(big))
        for key, value in (("a:b", "v"), ("k", " padded")):  # a header would split or strip it: refused
            put = pb.PutObjectInput(store_name=store, bucket=bucket, key="k", body=b"x", meta={key: value})
            cases[f"meta[{key!r}]"] = stub.PutObject(iter([put]))
    for field, call in cases.items():
        error = await call_error(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, error.details())
        assert error.details().startswith(f"{field}:"), error.details()
    assert not (await stub.IsObjectExist(pb.IsObjectExistInput(store_name=store, bucket=bucket, key="k"))).file_exist


async def test_unsupported_rpcs_answer_unimplemented_naming_rpc_and_store(stub: Stub, buckets: list[str]) -> None:
    calls = {
        "AppendObject": stub.AppendObject(iter([pb.AppendObjectInput(store_name="s3", bucket=buckets[0], key="k")])),
        "UpdateDownloadBandwidthRateLimit": stub.UpdateDownloadBandwidthRateLimit(
            pb.UpdateBandwidthRateLimitInput(store_name="s3", average_rate_limit_in_bits_per_sec=8000)
        ),
        "UpdateUploadBandwidthRateLimit": stub.UpdateUploadBandwidthRateLimit(
            pb.UpdateBandwidthRateLimitInput(store_name="s3", average_rate_limit_in_bits_per_sec=8000)
        ),
    }
    for rpc, call in calls.items():
        error = await call_error(call)
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert rpc in error.details() and "s3 object store" in error.details() and "'s3'" in error.details()


@pytest.mark.parametrize("store", STORES)
async def test_multipart_upload_with_part_copy_list_and_abort(stub: Stub, buckets: list[str], store: str) -> None:
    bucket = buckets[0]
    source = os.urandom(6 * MiB)
    await put(stub, store, bucket, "source", [source])
    created = await stub.CreateMultipartUpload(
        pb.CreateMultipartUploadInput(store_name=store, bucket=bucket, key="joined", meta_data={"k": "v"})
    )
    upload = created.upload_id
    assert upload and created.key == "joined"
    part1 = os.urandom(5 * MiB)
    messages = [pb.UploadPartInput(store_name=store, bucket=bucket, key="joined", upload_id=upload, part_number=1)]
    messages += [pb.UploadPartInput(body=part1[i : i + MiB]) for i in range(0, len(part1), MiB)]
    sent = await stub.UploadPart(iter(messages))
    copied = await stub.UploadPartCopy(
        pb.UploadPartCopyInput(
            store_name=store,
            bucket=bucket,
            key="joined",
            upload_id=upload,
            part_number=2,
            copy_source=pb.CopySource(copy_source_bucket=bucket, copy_source_key="source"),
            start_position=100,
            part_size=1000,
        )
    )
    uploads = await stub.ListMultipartUploads(pb.ListMultipartUploadsInput(store_name=store, bucket=bucket))
    assert [(u.key, u.upload_id) for u in uploads.uploads] == [("joined", upload)]
    parts = await stub.ListParts(pb.ListPartsInput(store_name=store, bucket=bucket, key="joined", upload_id=upload))
    assert [(p.part_number, p.size) for p in parts.parts] == [(1, 5 * MiB), (2, 1000)]
    done = await stub.CompleteMultipartUpload(
        pb.CompleteMultipartUploadInput(
            store_name=store,
            bucket=bucket,
            key="joined",
            upload_id=upload,
            multipart_upload=pb.CompletedMultipartUpload(
                parts=[
                    pb.CompletedPart(part_number=1, etag=sent.etag),
                    pb.CompletedPart(part_number=2, etag=copied.copy_part_result.etag),
                ]
            ),
        )
    )
    assert done.etag
    assert b"".join(a.body for a in await get(stub, store, bucket, "joined")) == part1 + source[100:1100]
    other = await stub.CreateMultipartUpload(pb.CreateMultipartUploadInput(store_name=store, bucket=bucket, key="x"))
    await stub.AbortMultipartUpload(
        pb.AbortMultipartUploadInput(store_name=store, bucket=bucket, key="x", upload_id=other.upload_id)
    )
    error = await call_error(
        stub.ListParts(pb.ListPartsInput(store_name=store, bucket=bucket, key="x", upload_id=other.upload_id))
    )
    assert error.code() == grpc.StatusCode.NOT_FOUND and error.details().startswith("upload_id:")


async def test_tagging_acl_versions_and_restore(stub: Stub, buckets: list[str]) -> None:
    bucket = buckets[1]  # versioned
    first = await put(stub, "s3", bucket, "t", [b"one"], tagging={"team": "a"})
    second = await put(stub, "s3", bucket, "t", [b"two"])
    assert first.version_id and second.version_id and first.version_id != second.version_id
    tags = await stub.GetObjectTagging(
        pb.GetObjectTaggingInput(store_name="s3", bucket=bucket, key="t", version_id=first.version_id)
    )
    assert dict(tags.tags) == {"team": "a"}
    await stub.PutObjectTagging(
        pb.PutObjectTaggingInput(store_name="s3", bucket=bucket, key="t", tags={"x": "1", "y": "2"})
    )
    assert dict(
        (await stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name="s3", bucket=bucket, key="t"))).tags
    ) == {"x": "1", "y": "2"}
    await stub.DeleteObjectTagging(pb.DeleteObjectTaggingInput(store_name="s3", bucket=bucket, key="t"))
    assert (
        dict((await stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name="s3", bucket=bucket, key="t"))).tags)
        == {}
    )
    old = await get(stub, "s3", bucket, "t", version_id=first.version_id)
    assert old[0].body == b"one" and old[0].version_id == first.version_id
    acl = pb.GetObjectCannedAclInput(store_name="s3", bucket=bucket, key="t")
    assert (await stub.GetObjectCannedAcl(acl)).canned_acl == "private"
    await stub.PutObjectCannedAcl(
        pb.PutObjectCannedAclInput(store_name="s3", bucket=bucket, key="t", acl="public-read")
    )
    assert (await stub.GetObjectCannedAcl(acl)).canned_acl == "public-read"
    await stub.DeleteObject(pb.DeleteObjectInput(store_name="s3", bucket=bucket, key="t"))
    versions = await stub.ListObjectVersions(pb.ListObjectVersionsInput(store_name="s3", bucket=bucket))
    assert {v.version_id for v in versions.versions} == {first.version_id, second.version_id}
    assert [m.is_latest for m in versions.delete_markers] == [True]
    await put(stub, "s3", bucket, "cold", [b"frozen"], storage_class="GLACIER")
    await stub.RestoreObject(
        pb.RestoreObjectInput(store_name="s3", bucket=bucket, key="cold", restore_request=pb.RestoreRequest(days=1))
    )
    error = await call_error(
        stub.RestoreObject(
            pb.RestoreObjectInput(store_name="s3", bucket=bucket, key="cold", restore_request=pb.RestoreRequest())
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("restore_request.days:")


async def test_signed_urls_work_with_a_plain_http_client(stub: Stub, buckets: list[str]) -> None:
    bucket = buckets[0]
    put_url = await stub.SignURL(
        pb.SignURLInput(store_name="s3", bucket=bucket, key="signed", method="PUT", expired_in_sec=60)
    )
    get_url = await stub.SignURL(
        pb.SignURLInput(store_name="s3", bucket=bucket, key="signed", method="get", expired_in_sec=60)
    )
    assert "X-Amz-Signature=" in get_url.signed_url and "X-Amz-Expires=60" in get_url.signed_url
    async with aiohttp.ClientSession() as session:
        async with session.put(put_url.signed_url, data=b"through a signed url") as answer:
            assert answer.status == 200
        async with session.get(get_url.signed_url) as answer:
            assert answer.status == 200 and await answer.read() == b"through a signed url"
    assert b"".join(a.body for a in await get(stub, "s3", bucket, "signed")) == b"through a signed url"


async def test_local_refuses_keys_and_buckets_leading_out_of_its_root(
    stub: Stub, buckets: list[str], oss_root: Path
) -> None:
    secret = oss_root.parent / f"secret-{buckets[0]}"
    secret.write_text("outside")
    os.symlink(secret, oss_root / buckets[0] / "link")
    cases = {
        "key": [
            stub.HeadObject(pb.HeadObjectInput(store_name="local", bucket=buckets[0], key=f"../../{secret.name}")),
            stub.GetObject(pb.GetObjectInput(store_name="local", bucket=buckets[0], key="link")).read(),
            stub.PutObject(iter([pb.PutObjectInput(store_name="local", bucket=buckets[0], key="/etc/x", body=b"x")])),
            stub.PutObject(
                iter([pb.PutObjectInput(store_name="local", bucket=buckets[0], key=".layotto/x", body=b"x")])
            ),
            stub.CreateMultipartUpload(
                pb.CreateMultipartUploadInput(store_name="local", bucket=buckets[0], key="a/../../b")
            ),
        ],
        "bucket": [
            stub.ListObjects(pb.ListObjectsInput(store_name="local", bucket="..")),
            stub.HeadObject(pb.HeadObjectInput(store_name="local", bucket=".layotto", key="k")),
        ],
        "copy_source.copy_source_key": [
            stub.CopyObject(
                pb.CopyObjectInput(
                    store_name="local",
                    bucket=buckets[0],
                    key="t",
                    copy_source=pb.CopySource(copy_source_bucket=buckets[0], copy_source_key=f"../../{secret.name}"),
                )
            )
        ],
    }
    for field, calls in cases.items():
        for call in calls:
            error = await call_error(call)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert error.details().startswith(f"{field}:"), error.details()
    assert secret.read_text() == "outside"
    assert not (oss_root / "etc").exists()


async def test_local_refuses_keys_that_alias_another_key(stub: Stub, buckets: list[str]) -> None:
    """As paths 'x//y', 'x/./y' and 'x/' name the file of 'x/y' or 'x': stored, they would share it."""
    await put(stub, "local", buckets[0], "x/y", [b"first"])
    for key in ("x//y", "x/./y", "x/", "x/z/../y"):
        error = await call_error(put(stub, "local", buckets[0], key, [b"second"]))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("key:"), key
    assert b"".join(a.body for a in await get(stub, "local", buckets[0], "x/y")) == b"first"


async def test_local_part_of_an_upload_aborted_mid_stream_is_not_found(
    stub: Stub, buckets: list[str], oss_root: Path
) -> None:
    bucket = buckets[0]
    upload = await stub.CreateMultipartUpload(pb.CreateMultipartUploadInput(store_name="local", bucket=bucket, key="k"))
    aborted = asyncio.Event()

    async def part() -> AsyncIterator[pb.UploadPartInput]:
        yield pb.UploadPartInput(
            store_name="local", bucket=bucket, key="k", upload_id=upload.upload_id, part_number=1, body=b"a"
        )
        await aborted.wait()
        yield pb.UploadPartInput(body=b"b")

    sending = asyncio.ensure_future(stub.UploadPart(part()))
    directory = oss_root / ".layotto" / "uploads" / upload.upload_id
    await wait_for(lambda: list(directory.glob("*.tmp")))  # the part is being written
    abort = pb.AbortMultipartUploadInput(store_name="local", bucket=bucket, key="k", upload_id=upload.upload_id)
    await stub.AbortMultipartUpload(abort)
    aborted.set()
    error = await call_error(sending)
    assert error.code() == grpc.StatusCode.NOT_FOUND and error.details().startswith("upload_id:"), error.details()


async def test_local_concurrent_writers_of_one_part_leave_its_etag_beside_its_bytes(
    stub: Stub, buckets: list[str]
) -> None:
    """Writers of one part number finishing together: the part listed and completed is one writer's,
    etag and bytes alike (the etag of one beside the bytes of another passed CompleteMultipartUpload)."""
    bucket = buckets[0]
    for _ in range(8):
        create = pb.CreateMultipartUploadInput(store_name="local", bucket=bucket, key="k")
        upload_id = (await stub.CreateMultipartUpload(create)).upload_id
        together = asyncio.Event()

        async def part(
            byte: int, upload_id: str = upload_id, together: asyncio.Event = together
        ) -> pb.UploadPartOutput:
            async def messages() -> AsyncIterator[pb.UploadPartInput]:
                yield pb.UploadPartInput(
                    store_name="local", bucket=bucket, key="k", upload_id=upload_id, part_number=1, body=bytes([byte])
                )
                await together.wait()
                yield pb.UploadPartInput(body=bytes([byte]) * 100_000)

            return await stub.UploadPart(messages())

        writers = [asyncio.ensure_future(part(byte)) for byte in range(12)]
        await asyncio.sleep(0.05)
        together.set()
        await asyncio.gather(*writers)
        listed = await stub.ListParts(
            pb.ListPartsInput(store_name="local", bucket=bucket, key="k", upload_id=upload_id)
        )
        completed = pb.CompletedMultipartUpload(parts=[pb.CompletedPart(part_number=1, etag=listed.parts[0].etag)])
        await stub.CompleteMultipartUpload(
            pb.CompleteMultipartUploadInput(
                store_name="local", bucket=bucket, key="k", upload_id=upload_id, multipart_upload=completed
            )
        )
        data = b"".join(a.body for a in await get(stub, "local", bucket, "k"))
        assert listed.parts[0].etag.strip('"') == hashlib.md5(data).hexdigest()


async def test_local_concurrent_writers_of_one_key_leave_one_writers_etag_and_attributes(
    stub: Stub, buckets: list[str]
) -> None:
    """PutObject calls of one key finishing together: the object's etag and attributes are those of the
    writer whose bytes it holds (its attributes were written after the data, each writer on its own)."""
    bucket = buckets[0]
    for _ in range(10):
        together = asyncio.Event()

        async def write(byte: int, together: asyncio.Event = together) -> pb.PutObjectOutput:
            async def messages() -> AsyncIterator[pb.PutObjectInput]:
                first = bytes([byte])
                yield pb.PutObjectInput(
                    store_name="local", bucket=bucket, key="k", body=first, cache_control=f"c{byte}"
                )
                await together.wait()
                yield pb.PutObjectInput(body=bytes([byte]) * 100_000)

            return await stub.PutObject(messages())

        writers = [asyncio.ensure_future(write(byte)) for byte in range(16)]
        await asyncio.sleep(0.05)
        together.set()
        await asyncio.gather(*writers)
        answers = await get(stub, "local", bucket, "k")
        data = b"".join(a.body for a in answers)
        assert answers[0].etag.strip('"') == hashlib.md5(data).hexdigest()
        assert answers[0].cache_control == f"c{data[0]}"


async def test_local_concurrent_tagging_acl_and_put_calls_of_one_key_lose_no_update(
    stub: Stub, buckets: list[str]
) -> None:
    """PutObjectTagging, PutObjectCannedAcl and PutObject calls of one key at once: an attribute update
    reads and rewrites the attributes in one step, so it undoes neither another update (an ACL update
    that read before a tagging update wrote put the old tags back) nor a put (a stale etag and headers
    written back beside the new bytes)."""
    bucket = buckets[0]
    ref = {"store_name": "local", "bucket": bucket, "key": "k"}

    async def write(byte: int, together: asyncio.Event) -> None:
        async def messages() -> AsyncIterator[pb.PutObjectInput]:
            yield pb.PutObjectInput(**ref, body=bytes([byte]), cache_control=f"c{byte}")
            await together.wait()
            yield pb.PutObjectInput(body=bytes([byte]) * 10_000)

        await stub.PutObject(messages())

    async def tag(value: str, together: asyncio.Event) -> None:
        await together.wait()
        await stub.PutObjectTagging(pb.PutObjectTaggingInput(**ref, tags={"w": value}))

    async def acl(value: str, together: asyncio.Event) -> None:
        await together.wait()
        await stub.PutObjectCannedAcl(pb.PutObjectCannedAclInput(**ref, acl=value))

    async def at_once(*calls: Coroutine[Any, Any, None], together: asyncio.Event) -> None:
        running = [asyncio.ensure_future(call) for call in calls]
        await asyncio.sleep(0.02)  # the puts' first messages are in
        together.set()
        await asyncio.gather(*running)

    for round_ in range(16):
        await put(stub, "local", bucket, "k", [b"x"], tagging={"w": "old"}, acl="private")
        together = asyncio.Event()
        await at_once(tag(f"new{round_}", together), acl("public-read", together), together=together)
        tags = dict((await stub.GetObjectTagging(pb.GetObjectTaggingInput(**ref))).tags)
        canned = (await stub.GetObjectCannedAcl(pb.GetObjectCannedAclInput(**ref))).canned_acl
        assert (tags, canned) == ({"w": f"new{round_}"}, "public-read"), f"round {round_}: an update was undone"
    for _ in range(6):
        await put(stub, "local", bucket, "k", [b"x"])
        together = asyncio.Event()
        updates = [*(tag(f"t{n}", together) for n in range(6)), *(acl("public-read", together) for _ in range(6))]
        await at_once(*(write(byte, together) for byte in range(4)), *updates, together=together)
        answers = await get(stub, "local", bucket, "k")
        data = b"".join(a.body for a in answers)
        assert answers[0].etag.strip('"') == hashlib.md5(data).hexdigest()
        assert answers[0].cache_control == f"c{data[0]}"


@pytest.mark.parametrize("store", STORES)
async def test_tags_outside_s3s_alphabet_are_invalid_argument(stub: Stub, buckets: list[str], store: str) -> None:
    await put(stub, store, buckets[0], "t", [b"x"])
    for tags in ({"a#b": "v"}, {"k": "line\nbreak"}, {"aws:x": "v"}):
        request = pb.PutObjectTaggingInput(store_name=store, bucket=buckets[0], key="t", tags=tags)
        error = await call_error(stub.PutObjectTagging(request))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("tags["), error.details()
    fine = {"é ü": "a+b-c=d.e_f:g/h@i 1"}
    await stub.PutObjectTagging(pb.PutObjectTaggingInput(store_name=store, bucket=buckets[0], key="t", tags=fine))
    got = await stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name=store, bucket=buckets[0], key="t"))
    assert dict(got.tags) == fine


async def test_s3_copy_onto_itself_changing_nothing_is_invalid_argument(stub: Stub, buckets: list[str]) -> None:
    await put(stub, "s3", buckets[0], "same", [b"x"])
    source = pb.CopySource(copy_source_bucket=buckets[0], copy_source_key="same")
    request = pb.CopyObjectInput(store_name="s3", bucket=buckets[0], key="same", copy_source=source)
    error = await call_error(stub.CopyObject(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error.details().startswith("copy_source:")


async def test_local_tags_acls_and_unimplemented_rpcs(stub: Stub, buckets: list[str]) -> None:
    bucket = buckets[0]
    await put(stub, "local", bucket, "t", [b"x"], tagging={"team": "a"}, acl="public-read")
    ref = {"store_name": "local", "bucket": bucket, "key": "t"}
    assert dict((await stub.GetObjectTagging(pb.GetObjectTaggingInput(**ref))).tags) == {"team": "a"}
    await stub.PutObjectTagging(pb.PutObjectTaggingInput(**ref, tags={"x": "1"}))
    assert dict((await stub.GetObjectTagging(pb.GetObjectTaggingInput(**ref))).tags) == {"x": "1"}
    await stub.DeleteObjectTagging(pb.DeleteObjectTaggingInput(**ref))
    assert dict((await stub.GetObjectTagging(pb.GetObjectTaggingInput(**ref))).tags) == {}
    assert (await stub.GetObjectCannedAcl(pb.GetObjectCannedAclInput(**ref))).canned_acl == "public-read"
    await stub.PutObjectCannedAcl(pb.PutObjectCannedAclInput(**ref, acl="private"))
    assert (await stub.GetObjectCannedAcl(pb.GetObjectCannedAclInput(**ref))).canned_acl == "private"
    calls = {
        "SignURL": stub.SignURL(pb.SignURLInput(**ref, method="GET", expired_in_sec=60)),
        "ListObjectVersions": stub.ListObjectVersions(pb.ListObjectVersionsInput(store_name="local", bucket=bucket)),
        "AppendObject": stub.AppendObject(iter([pb.AppendObjectInput(**ref, body=b"y")])),
        "RestoreObject": stub.RestoreObject(pb.RestoreObjectInput(**ref, restore_request=pb.RestoreRequest(days=1))),
        "version_id": stub.GetObjectTagging(pb.GetObjectTaggingInput(**ref, version_id="v1")),
        "UpdateUploadBandwidthRateLimit": stub.UpdateUploadBandwidthRateLimit(
            pb.UpdateBandwidthRateLimitInput(store_name="local", average_rate_limit_in_bits_per_sec=1)
        ),
    }
    for rpc, call in calls.items():
        error = await call_error(call)
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED, (rpc, error.details())
        assert rpc in error.details() and "local object store" in error.details()
    assert b"".join(a.body for a in await get(stub, "local", bucket, "t")) == b"x"  # AppendObject changed nothing


async def test_s3_takes_layottos_type_name_and_basic_config_and_creates_the_buckets_it_lists(tmp_path: Path) -> None:
    require("s3")
    made = f"oss-made-{uuid.uuid4().hex[:10]}"
    config = from_mapping(
        {
            "data_dir": str(tmp_path),
            "grpc_address": "127.0.0.1:0",
            "http_address": "127.0.0.1:0",
            "oss": {
                "s3": {
                    "type": "aws.oss",  # Layotto's configs/config_oss.json names the S3 store so
                    "metadata": {  # Layotto's basic_config object names the connection
                        "basic_config": {
                            "region": "us-east-1",
                            "endpoint": address("s3"),
                            "accessKeyID": "test",
                            "accessKeySecret": "test",
                        },
                        "forcePathStyle": "true",
                        "buckets": f"{made}, {made}",
                    },
                }
            },
        }
    )
    async with s3_client() as client:
        try:
            async with (
                Runtime(config) as runtime,
                grpc.aio.insecure_channel(f"127.0.0.1:{runtime.grpc_port}") as channel,
            ):
                stub = oss_pb2_grpc.ObjectStorageServiceStub(channel)
                await put(stub, "s3", made, "k", [b"v"])
            assert (await client.get_object(Bucket=made, Key="k"))["ContentLength"] == 1
        finally:
            await _empty_bucket(client, made)


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("store", STORES)
async def test_a_put_cancelled_mid_stream_leaves_nothing(
    stub: Stub, buckets: list[str], store: str, oss_root: Path
) -> None:
    bucket = buckets[0]
    temp_dir = oss_root / bucket / ".layotto" / "tmp"

    async def uploads() -> list[object]:
        async with s3_client() as client:
            return list((await client.list_multipart_uploads(Bucket=bucket)).get("Uploads") or [])

    async def uploading() -> bool:
        if store == "local":
            return temp_dir.is_dir() and any(entry.stat().st_size > 0 for entry in temp_dir.iterdir())
        return bool(await uploads())

    async def cleaned() -> bool:
        if store == "local":
            return not any(temp_dir.iterdir())
        return not await uploads()

    call = stub.PutObject()
    await call.write(pb.PutObjectInput(store_name=store, bucket=bucket, key="partial.bin", body=b"x" * MiB))
    for _ in range(6):  # past one 5 MiB part: the s3 store has begun a multipart upload
        await call.write(pb.PutObjectInput(body=b"y" * MiB))
    await until(uploading, "the upload to begin")
    call.cancel()
    await until(cleaned, "the partial upload to be removed")
    exists = await stub.IsObjectExist(pb.IsObjectExistInput(store_name=store, bucket=bucket, key="partial.bin"))
    assert not exists.file_exist


async def _put_stream(stub: Stub, store: str, bucket: str, key: str, total: int) -> str:
    """PutObject of ``total`` bytes in 1 MiB messages; the sha256 of what was sent."""
    digest = hashlib.sha256()

    async def messages() -> AsyncIterator[pb.PutObjectInput]:
        for index, chunk in enumerate(chunks_of(total, MiB)):
            digest.update(chunk)
            first = pb.PutObjectInput(store_name=store, bucket=bucket, key=key) if index == 0 else pb.PutObjectInput()
            first.body = chunk
            yield first

    await stub.PutObject(messages(), timeout=300)
    return digest.hexdigest()


async def _get_digest(stub: Stub, store: str, bucket: str, key: str, pause_after_first: float = 0) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    request = pb.GetObjectInput(store_name=store, bucket=bucket, key=key)
    async for answer in stub.GetObject(request, timeout=300):
        if pause_after_first and size == 0:
            await asyncio.sleep(pause_after_first)  # a runtime without back-pressure would read it all meanwhile
        digest.update(answer.body)
        size += len(answer.body)
    return digest.hexdigest(), size


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
async def test_large_objects_go_through_with_bounded_memory(tmp_path: Path, buckets: list[str]) -> None:
    """96 MiB through the local store and 80 MiB (sixteen 5 MiB parts) through s3, on a `layotto serve`
    process: its peak resident memory (VmHWM, reset first) grows by less than RSS_GROWTH_BOUND_MIB, also
    while a GetObject client stops reading for a while (back-pressure)."""
    (tmp_path / "oss" / buckets[0]).mkdir(parents=True)
    config = {
        "oss": {
            "local": {"type": "local", "metadata": {"rootPath": str(tmp_path / "oss")}},
            "s3": {"type": "s3", "metadata": s3_store_metadata()},
        }
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    server = start_server("-c", str(tmp_path / "config.json"), data_dir=tmp_path)
    pid = server.process.pid
    try:
        async with grpc.aio.insecure_channel(server.grpc_address) as channel:
            stub = oss_pb2_grpc.ObjectStorageServiceStub(channel)
            for store, total in (("local", 96 * MiB), ("s3", 80 * MiB)):
                await _put_stream(stub, store, buckets[0], "warm", MiB)  # one-time allocations: the baseline's
                await _get_digest(stub, store, buckets[0], "warm")
                reset_peak_rss(pid)
                baseline = vm_kib(pid, "VmRSS")
                sent = await _put_stream(stub, store, buckets[0], "big.bin", total)
                got = await _get_digest(stub, store, buckets[0], "big.bin", pause_after_first=0.5)
                assert got == (sent, total)
                growth_mib = (vm_kib(pid, "VmHWM") - baseline) / 1024
                assert growth_mib < RSS_GROWTH_BOUND_MIB, f"{store}: the runtime's RSS peaked {growth_mib:.0f} MiB up"
        async with s3_client() as client:  # the s3 put was a multipart upload, completed
            assert not (await client.list_multipart_uploads(Bucket=buckets[0])).get("Uploads")
    finally:
        server.process.kill()
        server.process.wait()

"""Object store cases, through Layotto's ObjectStorageService (api ``layotto``: Dapr has no such API).

The object store under test must hold a bucket ``conformance`` (its ``buckets`` metadata creates it).
Every key is unique to the run, so stores shared by several runs never interfere.
"""

from __future__ import annotations

import os
from typing import Any

import grpc

from layotto.conformance.model import Case, CaseContext, check
from layotto.proto.extension.v1.s3 import oss_pb2 as pb
from layotto.proto.extension.v1.s3 import oss_pb2_grpc

BUCKET = "conformance"
SERVICE = "spec.proto.extension.v1.s3.ObjectStorageService"


def _rpcs(*names: str) -> tuple[str, ...]:
    return tuple(f"{SERVICE}/{name}" for name in names)


def _stub(ctx: CaseContext) -> Any:
    return oss_pb2_grpc.ObjectStorageServiceStub(ctx.channel)


async def _put(ctx: CaseContext, key: str, parts: list[bytes], **fields: Any) -> pb.PutObjectOutput:
    first = pb.PutObjectInput(store_name=ctx.component, bucket=BUCKET, key=key, body=parts[0], **fields)
    rest = [pb.PutObjectInput(body=part) for part in parts[1:]]
    answer: pb.PutObjectOutput = await _stub(ctx).PutObject(iter([first, *rest]), timeout=ctx.timeout)
    return answer


async def _get(ctx: CaseContext, key: str) -> bytes:
    request = pb.GetObjectInput(store_name=ctx.component, bucket=BUCKET, key=key)
    return b"".join([m.body async for m in _stub(ctx).GetObject(request, timeout=ctx.timeout)])


async def _exists(ctx: CaseContext, key: str) -> bool:
    request = pb.IsObjectExistInput(store_name=ctx.component, bucket=BUCKET, key=key)
    return bool((await _stub(ctx).IsObjectExist(request, timeout=ctx.timeout)).file_exist)


async def _expect(ctx: CaseContext, call: Any, code: grpc.StatusCode, starts: str) -> None:
    try:
        answer = await call
    except grpc.aio.AioRpcError as error:
        check(error.code() == code, f"expected {code.name}, got {error.code().name}: {error.details()}")
        check((error.details() or "").startswith(starts), f"the message {error.details()!r} does not name {starts!r}")
        return
    check(False, f"expected {code.name}, but the call answered {answer!r}")


async def _round_trip(ctx: CaseContext) -> None:
    key = ctx.key("object/a.bin")
    parts = [os.urandom(70_000), os.urandom(30_000)]
    await _put(ctx, key, parts, meta={"owner": "conformance"})
    check(await _get(ctx, key) == b"".join(parts), "GetObject answered other bytes than PutObject stored")
    head = pb.HeadObjectInput(store_name=ctx.component, bucket=BUCKET, key=key)
    headers = (await _stub(ctx).HeadObject(head, timeout=ctx.timeout)).result_metadata
    check(headers.get("Content-Length") == "100000", f"HeadObject's Content-Length is {headers.get('Content-Length')}")
    check(headers.get("x-amz-meta-owner") == "conformance", "HeadObject lost the user metadata")
    check(await _exists(ctx, key), "IsObjectExist says a stored object is missing")
    delete = pb.DeleteObjectInput(store_name=ctx.component, bucket=BUCKET, key=key)
    await _stub(ctx).DeleteObject(delete, timeout=ctx.timeout)
    check(not await _exists(ctx, key), "IsObjectExist says a deleted object exists")


async def _listing(ctx: CaseContext) -> None:
    prefix = ctx.key("list/")
    for name in ("a", "b", "sub/c", "sub/d"):
        await _put(ctx, prefix + name, [name.encode()])
    request = pb.ListObjectsInput(store_name=ctx.component, bucket=BUCKET, prefix=prefix, delimiter="/")
    page = await _stub(ctx).ListObjects(request, timeout=ctx.timeout)
    keys = [o.key for o in page.contents]
    check(keys == [prefix + "a", prefix + "b"], f"ListObjects with a delimiter answered {keys}")
    check(list(page.common_prefixes) == [prefix + "sub/"], f"common prefixes {list(page.common_prefixes)}")
    first = await _stub(ctx).ListObjects(
        pb.ListObjectsInput(store_name=ctx.component, bucket=BUCKET, prefix=prefix, maxKeys=3), timeout=ctx.timeout
    )
    check(first.is_truncated and len(first.contents) == 3, "a page of 3 of 4 objects is not truncated")
    rest = await _stub(ctx).ListObjects(
        pb.ListObjectsInput(store_name=ctx.component, bucket=BUCKET, prefix=prefix, marker=first.next_marker),
        timeout=ctx.timeout,
    )
    check([o.key for o in rest.contents] == [prefix + "sub/d"], "the page after next_marker is not the rest")
    objects = [pb.ObjectIdentifier(key=prefix + name) for name in ("a", "b", "sub/c", "sub/d")]
    delete = pb.DeleteObjectsInput(store_name=ctx.component, bucket=BUCKET, delete=pb.Delete(objects=objects))
    await _stub(ctx).DeleteObjects(delete, timeout=ctx.timeout)
    check(not await _exists(ctx, prefix + "a"), "DeleteObjects left an object")


async def _tagging(ctx: CaseContext) -> None:
    key = ctx.key("tagged")
    await _put(ctx, key, [b"x"], tagging={"team": "a"})
    ref = {"store_name": ctx.component, "bucket": BUCKET, "key": key}
    tags = await _stub(ctx).GetObjectTagging(pb.GetObjectTaggingInput(**ref), timeout=ctx.timeout)
    check(dict(tags.tags) == {"team": "a"}, f"tags put with the object read back as {dict(tags.tags)}")
    await _stub(ctx).PutObjectTagging(pb.PutObjectTaggingInput(**ref, tags={"x": "1"}), timeout=ctx.timeout)
    tags = await _stub(ctx).GetObjectTagging(pb.GetObjectTaggingInput(**ref), timeout=ctx.timeout)
    check(dict(tags.tags) == {"x": "1"}, f"PutObjectTagging's tags read back as {dict(tags.tags)}")
    await _stub(ctx).DeleteObject(pb.DeleteObjectInput(**ref), timeout=ctx.timeout)


async def _multipart(ctx: CaseContext) -> None:
    key = ctx.key("multipart")
    stub = _stub(ctx)
    create = pb.CreateMultipartUploadInput(store_name=ctx.component, bucket=BUCKET, key=key)
    upload = (await stub.CreateMultipartUpload(create, timeout=ctx.timeout)).upload_id
    part = pb.UploadPartInput(
        store_name=ctx.component, bucket=BUCKET, key=key, upload_id=upload, part_number=1, body=b"only part"
    )
    etag = (await stub.UploadPart(iter([part]), timeout=ctx.timeout)).etag
    completed = pb.CompletedMultipartUpload(parts=[pb.CompletedPart(part_number=1, etag=etag)])
    complete = pb.CompleteMultipartUploadInput(
        store_name=ctx.component, bucket=BUCKET, key=key, upload_id=upload, multipart_upload=completed
    )
    await stub.CompleteMultipartUpload(complete, timeout=ctx.timeout)
    check(await _get(ctx, key) == b"only part", "the completed upload is not the part uploaded")
    await stub.DeleteObject(pb.DeleteObjectInput(store_name=ctx.component, bucket=BUCKET, key=key), timeout=ctx.timeout)


async def _missing(ctx: CaseContext) -> None:
    head = pb.HeadObjectInput(store_name=ctx.component, bucket=BUCKET, key=ctx.key("never-put"))
    await _expect(ctx, _stub(ctx).HeadObject(head, timeout=ctx.timeout), grpc.StatusCode.NOT_FOUND, "key:")
    absent = pb.ListObjectsInput(store_name=ctx.component, bucket="conformance-no-such-bucket")
    await _expect(ctx, _stub(ctx).ListObjects(absent, timeout=ctx.timeout), grpc.StatusCode.NOT_FOUND, "bucket:")


async def _bad_input(ctx: CaseContext) -> None:
    stub = _stub(ctx)
    empty = pb.HeadObjectInput(store_name=ctx.component, bucket=BUCKET, key="")
    await _expect(ctx, stub.HeadObject(empty, timeout=ctx.timeout), grpc.StatusCode.INVALID_ARGUMENT, "key:")
    negative = pb.ListObjectsInput(store_name=ctx.component, bucket=BUCKET, maxKeys=-1)
    await _expect(ctx, stub.ListObjects(negative, timeout=ctx.timeout), grpc.StatusCode.INVALID_ARGUMENT, "maxKeys:")
    part = pb.UploadPartInput(store_name=ctx.component, bucket=BUCKET, key="k", upload_id="u", part_number=10_001)
    await _expect(
        ctx, stub.UploadPart(iter([part]), timeout=ctx.timeout), grpc.StatusCode.INVALID_ARGUMENT, "part_number:"
    )


async def _append_refused(ctx: CaseContext) -> None:
    append = pb.AppendObjectInput(store_name=ctx.component, bucket=BUCKET, key=ctx.key("append"), body=b"x")
    try:
        await _stub(ctx).AppendObject(iter([append]), timeout=ctx.timeout)
    except grpc.aio.AioRpcError as error:
        check(error.code() == grpc.StatusCode.UNIMPLEMENTED, f"expected UNIMPLEMENTED, got {error.code().name}")
        check("AppendObject" in (error.details() or ""), f"{error.details()!r} does not name AppendObject")
        check(ctx.component in (error.details() or ""), f"{error.details()!r} does not name the store")
        return
    check(await _exists(ctx, append.key), "AppendObject answered OK without storing anything")


def _case(case_id: str, description: str, rpcs: tuple[str, ...], run: Any) -> Case:
    return Case(case_id, "oss", description, _rpcs(*rpcs), run, apis=("layotto",))


OSS_CASES = [
    _case(
        "oss-round-trip",
        "PutObject (a stream) then GetObject, HeadObject, IsObjectExist and DeleteObject agree",
        ("PutObject", "GetObject", "HeadObject", "IsObjectExist", "DeleteObject"),
        _round_trip,
    ),
    _case(
        "oss-list",
        "ListObjects rolls up at the delimiter and pages by next_marker; DeleteObjects removes",
        ("ListObjects", "DeleteObjects"),
        _listing,
    ),
    _case(
        "oss-tagging",
        "tags put with an object and by PutObjectTagging read back",
        ("PutObjectTagging", "GetObjectTagging"),
        _tagging,
    ),
    _case(
        "oss-multipart",
        "a multipart upload completed from its parts is the object",
        ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"),
        _multipart,
    ),
    _case(
        "oss-not-found",
        "a missing key or bucket is NOT_FOUND naming the field",
        ("HeadObject", "ListObjects"),
        _missing,
    ),
    _case(
        "oss-invalid-argument",
        "an empty key, a negative maxKeys, a part number over 10000 are INVALID_ARGUMENT naming the field",
        ("HeadObject", "ListObjects", "UploadPart"),
        _bad_input,
    ),
    _case(
        "oss-append-honoured-or-unimplemented",
        "AppendObject stores, or answers UNIMPLEMENTED naming the RPC and the store",
        ("AppendObject",),
        _append_refused,
    ),
]

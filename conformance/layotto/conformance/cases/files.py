"""File API cases (Layotto's ``Runtime``: PutFile, GetFile, ListFile, GetFileMeta, DelFile), per file store.

Dapr's API has no file RPCs, so these run on api ``layotto`` only. Every file a case writes is named
below :meth:`CaseContext.key`, so stores shared between runs (one S3 bucket) never mix runs' files.
A refused name's error must start with the request field holding it (``name:`` in PutFile and GetFile,
``request.name:`` in the nested requests); a missing file's must name the file.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from layotto.conformance.model import Case, CaseContext, CaseFailed, check
from layotto.proto.runtime.v1 import runtime_pb2 as pb

SERVICE = "spec.proto.runtime.v1.Runtime"
PUT, GET, LIST, META, DELETE = (f"{SERVICE}/{n}" for n in ("PutFile", "GetFile", "ListFile", "GetFileMeta", "DelFile"))
KiB = 1024
MiB = 1024 * KiB
#: how long a cancelled upload is watched for a file appearing after the cancel (none may, ever)
CANCEL_WATCH_SECONDS = 0.5
#: the most a store's clock and this process's may differ when last_modified is checked
CLOCK_SLACK = timedelta(minutes=5)
ESCAPES = ("../outside", "a/../../outside", "/etc/passwd", "/absolute/name")


def _ref(ctx: CaseContext, name: str) -> pb.FileRequest:
    return pb.FileRequest(store_name=ctx.component, name=name)


async def _messages(ctx: CaseContext, name: str, parts: Sequence[bytes], meta: dict[str, str]) -> AsyncIterator[Any]:
    yield pb.PutFileRequest(store_name=ctx.component, name=name, data=parts[0] if parts else b"", metadata=meta)
    for part in parts[1:]:
        yield pb.PutFileRequest(data=part)


async def put(ctx: CaseContext, name: str, parts: Sequence[bytes], **meta: str) -> None:
    """PutFile of ``parts``, one message each (the first also names the store, file and metadata)."""
    await ctx.api.stub.PutFile(_messages(ctx, name, parts, meta), timeout=ctx.timeout)


async def get(ctx: CaseContext, name: str) -> list[bytes]:
    """GetFile's messages' data."""
    request = pb.GetFileRequest(store_name=ctx.component, name=name)
    return [message.data async for message in ctx.api.stub.GetFile(request, timeout=ctx.timeout)]


async def meta(ctx: CaseContext, name: str) -> Any:
    return await ctx.call("GetFileMeta", pb.GetFileMetaRequest(request=_ref(ctx, name)))


async def listing(ctx: CaseContext, prefix: str, page_size: int = 0, marker: str = "") -> Any:
    return await ctx.call("ListFile", pb.ListFileRequest(request=_ref(ctx, prefix), page_size=page_size, marker=marker))


def _names(page: Any) -> list[str]:
    return [file.file_name for file in page.files]


async def _error_of(what: str, call: Any) -> grpc.aio.AioRpcError:
    """The error ``call`` (a coroutine) ends with; CaseFailed when it succeeds."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return error
    raise CaseFailed(f"{what}: expected an error, but the call succeeded")


async def _expect_not_found(what: str, call: Any, name: str) -> None:
    error = await _error_of(what, call)
    check(error.code() == grpc.StatusCode.NOT_FOUND, f"{what}: expected NOT_FOUND, got {error.code().name}")
    check(name in (error.details() or ""), f"{what}: the message {error.details()!r} does not name {name!r}")


async def _expect_refused(what: str, call: Any, field: str) -> None:
    error = await _error_of(what, call)
    details = error.details() or ""
    check(
        error.code() == grpc.StatusCode.INVALID_ARGUMENT,
        f"{what}: expected INVALID_ARGUMENT, got {error.code().name}: {details}",
    )
    check(details.startswith(f"{field}:"), f"{what}: the message {details!r} does not start with {field!r}")


def _check_time(what: str, text: str) -> None:
    try:
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise CaseFailed(f"{what}: last_modified {text!r} is not RFC 3339 in UTC (2026-11-30T00:12:03Z)") from None
    now = datetime.now(UTC)
    check(now - CLOCK_SLACK <= when <= now + CLOCK_SLACK, f"{what}: last_modified {text} is not about now ({now})")


async def _round_trip(ctx: CaseContext) -> None:
    name = ctx.key("files/round-trip.bin")
    parts = [os.urandom(300 * KiB), b"", os.urandom(1), os.urandom(700 * KiB + 3)]
    await put(ctx, name, parts)
    chunks = await get(ctx, name)
    check(b"".join(chunks) == b"".join(parts), f"GetFile of {sum(map(len, parts))} bytes answered different data")
    check(all(chunks), "GetFile sent a message without data")
    await put(ctx, name, [b"second ", b"version"])  # a put replaces the file
    check(b"".join(await get(ctx, name)) == b"second version", "a second PutFile did not replace the file")
    empty = ctx.key("files/empty")
    await put(ctx, empty, [b""])
    check(await get(ctx, empty) == [], "GetFile of an empty file answered data")
    check((await meta(ctx, empty)).size == 0, "GetFileMeta of an empty file: size is not 0")
    for leftover in (name, empty):
        await ctx.call("DelFile", pb.DelFileRequest(request=_ref(ctx, leftover)))


async def _metadata(ctx: CaseContext) -> None:
    name = ctx.key("files/with-metadata.txt")
    data = os.urandom(10_000)
    await put(ctx, name, [data[:4000], data[4000:]], owner="alice", kind="report")  # lower-case: S3 lower-cases
    answer = await meta(ctx, name)
    check(answer.size == len(data), f"GetFileMeta: size {answer.size}, expected {len(data)}")
    _check_time("GetFileMeta", answer.last_modified)
    got = {key: list(value.value) for key, value in answer.response.metadata.items()}
    check(got == {"owner": ["alice"], "kind": ["report"]}, f"GetFileMeta: metadata {got}, expected owner and kind")
    listed = [file for file in (await listing(ctx, name)).files if file.file_name == name]
    check(len(listed) == 1, f"ListFile of its name does not list {name!r}")
    check(listed[0].size == len(data), f"ListFile: size {listed[0].size}, expected {len(data)}")
    _check_time("ListFile", listed[0].last_modified)
    await put(ctx, name, [b"plain"])  # a put replaces the metadata too
    replaced = await meta(ctx, name)
    check((replaced.size, dict(replaced.response.metadata)) == (5, {}), "a second PutFile kept the old metadata")
    await ctx.call("DelFile", pb.DelFileRequest(request=_ref(ctx, name)))


async def _list_paging(ctx: CaseContext) -> None:
    base = ctx.key("list")
    prefix = f"{base}/"
    inside = [f"{prefix}{n}" for n in ("a", "b", "d", "e", "sub/c")]  # in name (byte) order
    for name in (*reversed(inside), f"{base}-outside", f"{base}x"):
        await put(ctx, name, [name.encode()])
    pages, marker = [], ""
    for _ in range(len(inside) + 1):
        page = await listing(ctx, prefix, page_size=2, marker=marker)
        names = _names(page)
        check(page.marker == (names[-1] if names else ""), f"ListFile marker {page.marker!r} after page {names}")
        pages.append((names, page.is_truncated))
        if not page.is_truncated:
            break
        marker = page.marker
    expected = [(inside[0:2], True), (inside[2:4], True), (inside[4:], False)]
    check(pages == expected, f"ListFile pages of 2: {pages}, expected {expected}")
    sizes = {file.file_name: file.size for file in (await listing(ctx, prefix)).files}
    check(sizes == {n: len(n.encode()) for n in inside}, f"ListFile page_size 0 (all): {sizes}")
    for size, truncated in ((len(inside), False), (len(inside) - 1, True)):
        page = await listing(ctx, prefix, page_size=size)
        check(page.is_truncated is truncated, f"ListFile page_size {size} of {len(inside)}: is_truncated {truncated}")
    after = await listing(ctx, prefix, marker=f"{prefix}b0")  # a marker need not be a file's name
    check(_names(after) == inside[2:], f"ListFile after marker 'b0': {_names(after)}")
    end = await listing(ctx, prefix, marker=inside[-1])
    check((_names(end), end.marker, end.is_truncated) == ([], "", False), "ListFile past the last file is not empty")
    partial = await listing(ctx, f"{prefix}s")
    check(_names(partial) == inside[4:], f"ListFile of prefix 's' (not a directory): {_names(partial)}")
    for name in (*inside, f"{base}-outside", f"{base}x"):
        await ctx.call("DelFile", pb.DelFileRequest(request=_ref(ctx, name)))


async def _delete(ctx: CaseContext) -> None:
    name = ctx.key("files/deleted.txt")
    await put(ctx, name, [b"soon gone"])
    await ctx.call("DelFile", pb.DelFileRequest(request=_ref(ctx, name)))
    await _expect_not_found("GetFileMeta after DelFile", meta(ctx, name), name)
    await _expect_not_found("GetFile after DelFile", get(ctx, name), name)
    delete_again = ctx.call("DelFile", pb.DelFileRequest(request=_ref(ctx, name)))
    await _expect_not_found("DelFile after DelFile", delete_again, name)
    check(name not in _names(await listing(ctx, name)), "ListFile still lists a deleted file")


async def _missing(ctx: CaseContext) -> None:
    name = ctx.key("files/never-put.txt")
    await _expect_not_found("GetFile of a missing file", get(ctx, name), name)
    await _expect_not_found("GetFileMeta of a missing file", meta(ctx, name), name)
    delete = ctx.call("DelFile", pb.DelFileRequest(request=_ref(ctx, name)))
    await _expect_not_found("DelFile of a missing file", delete, name)


async def _path_escapes(ctx: CaseContext) -> None:
    for name in ESCAPES:
        await _expect_refused(f"PutFile {name!r}", put(ctx, name, [b"evil"]), "name")
        await _expect_refused(f"GetFile {name!r}", get(ctx, name), "name")
        await _expect_refused(f"GetFileMeta {name!r}", meta(ctx, name), "request.name")
        delete = ctx.call("DelFile", pb.DelFileRequest(request=_ref(ctx, name)))
        await _expect_refused(f"DelFile {name!r}", delete, "request.name")
    await _expect_refused("ListFile '../'", listing(ctx, "../"), "request.name")


async def _absent(ctx: CaseContext, name: str, when: str) -> None:
    """``name`` is neither readable nor listed."""
    await _expect_not_found(f"GetFileMeta {when}", meta(ctx, name), name)
    check(_names(await listing(ctx, name)) == [], f"ListFile lists a partial file {when}")


async def _cancelled_put(ctx: CaseContext) -> None:
    name = ctx.key("files/cancelled.bin")
    call = ctx.api.stub.PutFile(timeout=ctx.timeout)
    await call.write(pb.PutFileRequest(store_name=ctx.component, name=name, data=os.urandom(MiB)))
    for _ in range(6):  # past an S3 multipart upload's first 5 MiB part
        await call.write(pb.PutFileRequest(data=os.urandom(MiB)))
    await _absent(ctx, name, "while its upload is under way")
    call.cancel()
    deadline = asyncio.get_running_loop().time() + CANCEL_WATCH_SECONDS
    while asyncio.get_running_loop().time() < deadline:  # nothing to await: a broken store commits later
        await _absent(ctx, name, "after its upload was cancelled")
        await asyncio.sleep(0.1)


FILE_CASES = [
    Case(
        "file-round-trip",
        "file",
        "a file put in several messages (0 B to 700 KiB) comes back whole; a put replaces; an empty file",
        (PUT, GET, META, DELETE),
        _round_trip,
        apis=("layotto",),
    ),
    Case(
        "file-metadata",
        "file",
        "GetFileMeta answers the size, an RFC 3339 UTC time and the metadata put; ListFile the size and time",
        (PUT, META, LIST, DELETE),
        _metadata,
        apis=("layotto",),
    ),
    Case(
        "file-list-paging",
        "file",
        "ListFile pages in name order under a prefix: marker is the page's last name, is_truncated exact",
        (PUT, LIST, DELETE),
        _list_paging,
        apis=("layotto",),
    ),
    Case(
        "file-delete",
        "file",
        "after DelFile, GetFile, GetFileMeta and DelFile are NOT_FOUND naming the file; ListFile omits it",
        (PUT, DELETE, META, GET, LIST),
        _delete,
        apis=("layotto",),
    ),
    Case(
        "file-missing",
        "file",
        "GetFile, GetFileMeta and DelFile of a file never put are NOT_FOUND naming it",
        (GET, META, DELETE),
        _missing,
        apis=("layotto",),
    ),
    Case(
        "file-path-escape",
        "file",
        "names with '..' or absolute are INVALID_ARGUMENT naming name (request.name) in every RPC",
        (PUT, GET, META, DELETE, LIST),
        _path_escapes,
        apis=("layotto",),
    ),
    Case(
        "file-put-cancelled",
        "file",
        "a PutFile the client cancels after 7 MiB leaves no file, neither during the upload nor after",
        (PUT, META, LIST),
        _cancelled_put,
        apis=("layotto",),
    ),
]

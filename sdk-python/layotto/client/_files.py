"""Files: Layotto's File API (``PutFile``, ``GetFile``, ``ListFile``, ``GetFileMeta``, ``DelFile``)
on a file store of the runtime (``local``, ``s3``)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass

from layotto.client._transport import DEFAULT_MAX_MESSAGE_BYTES, Transport
from layotto.client._values import invalid, string_map
from layotto.proto.runtime.v1 import runtime_pb2 as pb

__all__ = ["FileData", "FileInfo", "FileMeta", "FilePage", "FilesClient"]

#: the bytes of a put: all at once, or chunk by chunk from a (synchronous or async) iterable
FileData = bytes | Iterable[bytes] | AsyncIterable[bytes]

#: the default size of the messages ``put`` cuts ``bytes`` into (the runtime's own ``chunkSize``)
CHUNK_BYTES = 1024 * 1024
#: the largest ``chunk_size``: half the runtime's default message limit, leaving room for the rest
MAX_CHUNK_BYTES = DEFAULT_MAX_MESSAGE_BYTES // 2
#: ``page_size`` is an int32 on the wire
MAX_PAGE_SIZE = 2**31 - 1


@dataclass(frozen=True)
class FileInfo:
    """One file of a listing: its ``name`` (the path in the store), ``size`` in bytes and
    ``last_modified`` (RFC 3339 in UTC, ``2026-11-30T00:12:03Z``)."""

    name: str
    size: int
    last_modified: str


@dataclass(frozen=True)
class FilePage:
    """One page of ``list``: its ``files`` in name order; while ``is_truncated``, pass ``marker``
    to the next call to get the files after it."""

    files: tuple[FileInfo, ...]
    marker: str
    is_truncated: bool


@dataclass(frozen=True)
class FileMeta:
    """What ``get_meta`` answers: ``size`` in bytes, ``last_modified`` (RFC 3339 in UTC) and the
    ``metadata`` the file was put with. The wire allows several values per key; they are joined
    with ", " as HTTP joins a repeated header (RFC 9110, section 5.3)."""

    size: int
    last_modified: str
    metadata: Mapping[str, str]


class FilesClient:
    """Reads and writes files of the runtime's file stores, streaming them in chunks so that
    neither side holds a large file whole.

    ``timeout`` of a transfer (``put``, ``get``, ``read``) is for the whole transfer, in seconds;
    None means no deadline, whatever the client's default (a file's size has no bound). The other
    calls take the client's default. Errors: ``NotFound`` for a file the store does not hold,
    ``InvalidArgument`` for a bad name or metadata (the message names the field),
    ``StoreNotFound`` for an unknown store, ``BackendUnavailable``/``BackendError`` when the store
    fails.
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    async def put(
        self,
        store: str,
        name: str,
        data: FileData,
        metadata: Mapping[str, str] | None = None,
        *,
        chunk_size: int = CHUNK_BYTES,
        timeout: float | None = None,
    ) -> int:
        """Store ``data`` as the file ``name`` of ``store`` with ``metadata``, replacing a file of
        that name; answers the bytes sent.

        ``bytes`` are sent in messages of ``chunk_size`` bytes (1 to 8 MiB, else InvalidArgument
        naming ``chunk_size``); the chunks of an iterable are sent as they come (larger ones cut).
        The file appears whole when the transfer ends, or not at all: when ``data`` raises, the
        call is cancelled, nothing is stored and its exception propagates. Not retried.
        """
        if not 1 <= chunk_size <= MAX_CHUNK_BYTES:
            raise invalid("chunk_size", f"must be 1 to {MAX_CHUNK_BYTES} bytes, got {chunk_size!r}")
        first = pb.PutFileRequest(store_name=store, name=name, metadata=string_map(metadata, "metadata"))
        sent = 0

        async def requests() -> AsyncIterator[pb.PutFileRequest]:
            nonlocal sent
            pending: pb.PutFileRequest | None = first
            async for chunk in _chunks(data, chunk_size):
                message = pending or pb.PutFileRequest()
                message.data = chunk
                pending = None
                sent += len(chunk)
                yield message
            if pending is not None:  # no data at all: an empty file
                yield pending

        await self._t.stream_unary("PutFile", requests(), timeout)
        return sent

    async def get(
        self, store: str, name: str, metadata: Mapping[str, str] | None = None, *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """The contents of the file ``name`` of ``store``, chunk by chunk (each at most the store's
        ``chunkSize``): ``async for chunk in client.files.get(...)``. Closing the iterator early
        (``break`` inside ``contextlib.aclosing``) cancels the call. Raises NotFound when the store
        does not hold the file."""
        request = pb.GetFileRequest(store_name=store, name=name, metadata=string_map(metadata, "metadata"))
        async for response in self._t.unary_stream("GetFile", request, timeout):
            yield response.data

    async def read(self, store: str, name: str, *, timeout: float | None = None) -> bytes:
        """The whole file ``name`` of ``store`` in memory (``get`` streams it instead)."""
        return b"".join([chunk async for chunk in self.get(store, name, timeout=timeout)])

    async def list(
        self, store: str, prefix: str = "", *, page_size: int = 0, marker: str = "", timeout: float | None = None
    ) -> FilePage:
        """One page of the files of ``store`` whose names start with ``prefix`` ("" for all), in
        name order, after ``marker`` (the previous page's), at most ``page_size`` of them (0: the
        runtime's default, 1000). InvalidArgument naming ``page_size`` outside 0 to 2**31 - 1."""
        if not 0 <= page_size <= MAX_PAGE_SIZE:
            raise invalid("page_size", f"must be 0 to {MAX_PAGE_SIZE}, got {page_size!r}")
        request = pb.ListFileRequest(
            request=pb.FileRequest(store_name=store, name=prefix), page_size=page_size, marker=marker
        )
        response = await self._t.unary("ListFile", request, timeout, idempotent=True)
        files = tuple(FileInfo(f.file_name, f.size, f.last_modified) for f in response.files)
        return FilePage(files=files, marker=response.marker, is_truncated=response.is_truncated)

    async def list_all(
        self, store: str, prefix: str = "", *, page_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[FileInfo]:
        """Every file of ``store`` whose name starts with ``prefix``, page after page (``timeout``
        applies to each page)."""
        marker = ""
        while True:
            page = await self.list(store, prefix, page_size=page_size, marker=marker, timeout=timeout)
            for info in page.files:
                yield info
            if not page.is_truncated or not page.files:
                return
            marker = page.marker

    async def get_meta(self, store: str, name: str, *, timeout: float | None = None) -> FileMeta:
        """The size, modification time and metadata of the file ``name`` of ``store``; raises
        NotFound when the store does not hold it."""
        request = pb.GetFileMetaRequest(request=pb.FileRequest(store_name=store, name=name))
        response = await self._t.unary("GetFileMeta", request, timeout, idempotent=True)
        metadata = {key: ", ".join(values.value) for key, values in response.response.metadata.items()}
        return FileMeta(size=response.size, last_modified=response.last_modified, metadata=metadata)

    async def delete(self, store: str, name: str, *, timeout: float | None = None) -> None:
        """Remove the file ``name`` of ``store``; raises NotFound when the store does not hold it.
        Not retried (a retry of a delete that took effect would raise NotFound)."""
        request = pb.DelFileRequest(request=pb.FileRequest(store_name=store, name=name))
        await self._t.unary("DelFile", request, timeout)


async def _chunks(data: FileData, chunk_size: int) -> AsyncIterator[bytes]:
    """``data``'s bytes as messages of at most ``chunk_size`` bytes: ``bytes`` cut into pieces, an
    iterable's chunks as they come (empty ones skipped, larger ones cut); InvalidArgument naming
    ``data`` for anything else."""
    if isinstance(data, bytes | bytearray | memoryview):
        for piece in _cut(data, chunk_size):
            yield piece
    elif isinstance(data, AsyncIterable):
        async for chunk in data:
            for piece in _cut(chunk, chunk_size):
                yield piece
    elif isinstance(data, Iterable) and not isinstance(data, str):
        for chunk in data:
            for piece in _cut(chunk, chunk_size):
                yield piece
    else:
        raise invalid("data", f"expected bytes or an iterable of bytes, got {type(data).__name__}")


def _cut(chunk: object, chunk_size: int) -> Iterator[bytes]:
    if not isinstance(chunk, bytes | bytearray | memoryview):
        raise invalid("data", f"a chunk is a {type(chunk).__name__}, not bytes")
    if len(chunk) <= chunk_size:
        if chunk:
            yield bytes(chunk)
        return
    view = memoryview(chunk)
    for start in range(0, len(view), chunk_size):
        yield bytes(view[start : start + chunk_size])

"""Layotto's File API on ``spec.proto.runtime.v1.Runtime``: PutFile (client stream), GetFile (server
stream), ListFile, GetFileMeta, DelFile. The semantics are :mod:`layotto.server.runtime.files`'s.

PutFile takes ``store_name``, ``name`` and ``metadata`` from the stream's first message (the later
messages' ``data`` only, as Layotto does); an empty stream stores nothing and answers OK. Each message is
read as the store takes the previous one's data, so a client is held back by gRPC's flow control
instead of filling the runtime's memory; GetFile likewise sends one chunk at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf import empty_pb2

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.server.api.adapter import Context, stream_data
from layotto.server.runtime.files import FileRef, FileService


def _nested(request: pb.FileRequest) -> FileRef:
    return FileRef(request.store_name, request.name, "request.store_name", "request.name")


class FilesApi:
    """Serves the File API's five RPCs from one :class:`FileService`."""

    def __init__(self, files: FileService) -> None:
        self._files = files

    async def PutFile(self, requests: AsyncIterator[Any], context: Context) -> empty_pb2.Empty:
        first = await anext(requests, None)
        if first is None:
            return empty_pb2.Empty()
        await self._files.put(
            FileRef(first.store_name, first.name), stream_data(first, requests, context), dict(first.metadata)
        )
        return empty_pb2.Empty()

    async def GetFile(self, request: pb.GetFileRequest, context: Context) -> AsyncIterator[pb.GetFileResponse]:
        chunks = await self._files.get(FileRef(request.store_name, request.name))
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield pb.GetFileResponse(data=chunk)

    async def ListFile(self, request: pb.ListFileRequest, context: Context) -> pb.ListFileResp:
        page = await self._files.list(_nested(request.request), request.page_size, request.marker)
        files = [
            pb.FileInfo(file_name=file.name, size=file.size, last_modified=file.last_modified_text)
            for file in page.files
        ]
        return pb.ListFileResp(files=files, marker=page.marker, is_truncated=page.is_truncated)

    async def GetFileMeta(self, request: pb.GetFileMetaRequest, context: Context) -> pb.GetFileMetaResponse:
        info = await self._files.stat(_nested(request.request))
        meta = pb.FileMeta(metadata={key: pb.FileMetaValue(value=[value]) for key, value in info.metadata.items()})
        return pb.GetFileMetaResponse(size=info.size, last_modified=info.last_modified_text, response=meta)

    async def DelFile(self, request: pb.DelFileRequest, context: Context) -> empty_pb2.Empty:
        await self._files.delete(_nested(request.request))
        return empty_pb2.Empty()

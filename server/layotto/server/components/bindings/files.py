"""Output bindings over a file store (Dapr's ``bindings.localstorage`` and ``bindings.aws.s3``): the
``create``, ``get``, ``list`` and ``delete`` operations run on the File API's stores
(:mod:`layotto.server.components.file`), so names are checked, writes are atomic and a missing file is
NOT_FOUND in the same way.

Request metadata: the file's name under the binding's key (``fileName`` for localstorage, ``key`` for
s3); ``create`` without one stores under a new UUID. ``create`` stores ``data`` as given, or
base64-decoded with ``decodeBase64: "true"`` (Dapr's localstorage guesses instead, and so corrupts text
that happens to be valid base64). ``get`` answers the contents, up to the binding's ``maxGetBytes``
(the File API's GetFile streams larger files).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

from layotto.server.components.base import ComponentContext, MetadataField, MiB
from layotto.server.components.bindings import BindingRequest, BindingResponse, OutputBinding
from layotto.server.components.file import MAX_PAGE_SIZE, FileInfo, FileStore, check_name, check_prefix
from layotto.server.errors import InvalidArgument, PayloadTooLarge

OPERATIONS = ("create", "get", "list", "delete")
MAX_GET_BYTES = MetadataField(
    "maxGetBytes",
    "The largest file `get` answers (bigger ones: PAYLOAD_TOO_LARGE; the File API's GetFile streams them); "
    "keep it below the runtime's max_message_bytes.",
    type=int,
    default=16 * MiB - 64 * 1024,
    minimum=1,
    maximum=2**31 - 1,
)


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


class FileBinding(OutputBinding):
    """An output binding whose operations run on a file store of type ``store_class``, configured with
    the binding's own metadata (less ``maxGetBytes``)."""

    store_class: ClassVar[type[FileStore]]
    #: the request metadata key naming the file (Dapr's: ``fileName``, ``key``)
    name_key: ClassVar[str]

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.store: FileStore = self.store_class(name)

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        store_metadata = {key: value for key, value in metadata.items() if key != MAX_GET_BYTES.name}
        self.store.metadata = store_metadata
        await self.store.init(store_metadata, context)

    async def close(self) -> None:
        await self.store.close()

    def _field(self) -> str:
        return f"metadata.{self.name_key}"

    def _name(self, request: BindingRequest) -> str:
        return check_name(request.required(self.name_key), self._field())

    async def invoke(self, request: BindingRequest) -> BindingResponse:
        if request.operation == "create":
            return await self._create(request)
        if request.operation == "get":
            return await self._get(request)
        if request.operation == "delete":
            await self.store.delete(self._name(request), self._field())
            return BindingResponse()
        return await self.list_files(request)

    async def _create(self, request: BindingRequest) -> BindingResponse:
        name = check_name(request.metadata.get(self.name_key) or str(uuid.uuid4()), self._field())
        data = request.data
        if request.metadata.get("decodeBase64", "").lower() == "true":
            try:
                data = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArgument("data", "is not base64 (decodeBase64 is true)") from None
        await self.store.put(name, _one(data), {}, self._field())
        return BindingResponse(json.dumps({self.name_key: name}).encode(), {self.name_key: name})

    async def _get(self, request: BindingRequest) -> BindingResponse:
        name = self._name(request)
        info = await self.store.stat(name, self._field())
        limit = int(self.metadata.get(MAX_GET_BYTES.name) or MAX_GET_BYTES.default)
        if info.size > limit:
            raise PayloadTooLarge(self._field(), info.size, limit)
        data = bytearray()
        async with contextlib.aclosing(await self.store.get(name, self._field())) as chunks:
            async for chunk in chunks:
                data += chunk
                if len(data) > limit:  # grown since the stat
                    raise PayloadTooLarge(self._field(), len(data), limit)
        return BindingResponse(bytes(data), {self.name_key: name})

    async def list_files(self, request: BindingRequest) -> BindingResponse:
        """Every file under the request's prefix (``fileName``: a directory), as a JSON list of names."""
        prefix = check_prefix(request.metadata.get(self.name_key, ""), self._field())
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        names: list[str] = []
        marker = ""
        while True:
            page = await self.store.list(prefix, MAX_PAGE_SIZE, marker)
            names += [file.name for file in page.files]
            if not page.is_truncated:
                return BindingResponse(json.dumps(names).encode())
            marker = page.marker


def s3_listing(files: list[FileInfo], request: Mapping[str, Any], truncated: bool, bucket: str) -> dict[str, Any]:
    """A page of files as Dapr's s3 binding answers ``list`` (the fields of S3's ListObjects output)."""
    return {
        "Name": bucket,
        "Prefix": request.get("prefix", ""),
        "Marker": request.get("marker", ""),
        "MaxKeys": request.get("maxResults", MAX_PAGE_SIZE),
        "IsTruncated": truncated,
        "NextMarker": files[-1].name if truncated and files else "",
        "Contents": [{"Key": file.name, "Size": file.size, "LastModified": file.last_modified_text} for file in files],
    }

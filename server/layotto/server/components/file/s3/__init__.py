"""Files as objects of one bucket of an S3-compatible store (AWS S3, MinIO, moto, Ceph, ...).

A file's name is its object key in ``bucket``. PutFile streams: a file up to ``partSize`` bytes is
one PutObject; a larger one is a multipart upload of ``partSize`` parts, each sent while the next is
received (so at most two parts are held in memory per upload), completed when the stream ends and
aborted on any error or cancellation, so no partial object is ever visible. PutFile's metadata
becomes the object's user metadata (``x-amz-meta-*``: keys HTTP tokens, lower-cased by S3; values printable
ASCII without spaces at either end; 2 KiB in all): other metadata is refused with INVALID_ARGUMENT naming
the entry, rather than stored altered or lost.
Metadata names are those of Dapr's ``bindings.aws.s3``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

from layotto.server.components.base import CHUNK_SIZE, ComponentContext, ComponentSpec, MetadataField, MiB
from layotto.server.components.file import FileInfo, FilePage, FileStore
from layotto.server.components.s3_client import (
    CONNECTION_FIELDS,
    backend_errors,
    check_bucket,
    check_user_metadata,
    open_client,
    part_size_field,
    read_chunks,
    upload_stream,
)
from layotto.server.errors import FileNotFound


class S3FileStore(FileStore):
    spec = ComponentSpec(
        type="s3",
        building_block="file",
        description="Files as objects of one bucket of an S3-compatible store (aiobotocore). Large files go up "
        "as multipart uploads of `partSize` parts, aborted if the stream fails, so a partial file is never "
        "visible; PutFile's metadata is the object's user metadata (ASCII, keys lower-cased).",
        metadata=(
            MetadataField("bucket", "The bucket holding the files (it must exist).", required=True, example="files"),
            *CONNECTION_FIELDS,
            CHUNK_SIZE,
            part_size_field("file"),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None
        self._bucket = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._bucket = str(metadata["bucket"])
        self._client = await open_client(metadata, self._exit)
        try:
            await check_bucket(self._client, self._bucket, f"file.{self.name}.metadata")
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._exit.aclose()

    @property
    def _part_size(self) -> int:
        return int(self.metadata.get("partSize") or 8 * MiB)

    def _errors(self, field: str = "", name: str = "") -> contextlib.AbstractContextManager[None]:
        """Backend failures as the catalogue's errors (a missing object: FileNotFound of ``field``)."""
        return backend_errors(self.name, (lambda _: FileNotFound(field, self.name, name)) if name else None)

    async def put(self, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str], field: str) -> None:
        check_user_metadata(metadata, "metadata")
        await upload_stream(
            self._client, self.name, chunks, self._part_size, Bucket=self._bucket, Key=name, Metadata=dict(metadata)
        )

    async def get(self, name: str, field: str) -> AsyncGenerator[bytes, None]:
        with self._errors(field, name):
            response = await self._client.get_object(Bucket=self._bucket, Key=name)
        return read_chunks(response["Body"], self.chunk_size, self.name)

    async def stat(self, name: str, field: str) -> FileInfo:
        with self._errors(field, name):
            head = await self._client.head_object(Bucket=self._bucket, Key=name)
        return FileInfo(name, int(head["ContentLength"]), head["LastModified"], dict(head.get("Metadata") or {}))

    async def delete(self, name: str, field: str) -> None:
        await self.stat(name, field)  # S3 deletes a missing key without a word; the API says NOT_FOUND
        with self._errors(field, name):
            await self._client.delete_object(Bucket=self._bucket, Key=name)

    async def list(self, prefix: str, page_size: int, marker: str) -> FilePage:
        with self._errors():
            listed = await self._client.list_objects(
                Bucket=self._bucket, Prefix=prefix, Marker=marker, MaxKeys=page_size
            )
        files = [
            FileInfo(item["Key"], int(item["Size"]), item["LastModified"]) for item in listed.get("Contents") or []
        ]
        return FilePage(files, files[-1].name if files else "", bool(listed.get("IsTruncated")))

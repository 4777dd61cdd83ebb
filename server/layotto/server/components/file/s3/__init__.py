"""Files as objects of one bucket of an S3-compatible store (AWS S3, MinIO, moto, Ceph, ...).

A file's name is its object key in ``bucket``. PutFile streams: a file up to ``partSize`` bytes is
one PutObject; a larger one is a multipart upload of ``partSize`` parts, each sent while the next is
received (so at most two parts are held in memory per upload), completed when the stream ends and
aborted on any error or cancellation, so no partial object is ever visible. PutFile's metadata
becomes the object's user metadata (``x-amz-meta-*``: ASCII only, keys lower-cased by S3).
Metadata names are those of Dapr's ``bindings.aws.s3``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from layotto.server.components.base import ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.file import CHUNK_SIZE, FileInfo, FilePage, FileStore, MiB
from layotto.server.errors import BackendError, BackendUnavailable, FileNotFound, InvalidArgument

MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


def _is_missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code", "")) in MISSING_CODES


class S3FileStore(FileStore):
    spec = ComponentSpec(
        type="s3",
        building_block="file",
        description="Files as objects of one bucket of an S3-compatible store (aiobotocore). Large files go up "
        "as multipart uploads of `partSize` parts, aborted if the stream fails, so a partial file is never "
        "visible; PutFile's metadata is the object's user metadata (ASCII, keys lower-cased).",
        metadata=(
            MetadataField("bucket", "The bucket holding the files (it must exist).", required=True, example="files"),
            MetadataField("endpoint", "The store's URL; unset: AWS's endpoint for `region`."),
            MetadataField("region", "The region of the bucket.", default="us-east-1"),
            MetadataField(
                "accessKey",
                "Access key id; unset: botocore's default credentials (environment, config files, instance role).",
                secret=True,
            ),
            MetadataField("secretKey", "Secret access key.", secret=True),
            MetadataField("sessionToken", "Session token of temporary credentials.", secret=True),
            MetadataField(
                "forcePathStyle",
                "Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key` (MinIO, moto).",
                type=bool,
                default=False,
            ),
            CHUNK_SIZE,
            MetadataField(
                "partSize",
                "Bytes of one part of a multipart upload, and the largest file sent in one PutObject; an upload "
                "holds at most two parts in memory (one sent while the next is received).",
                type=int,
                default=8 * MiB,
                minimum=5 * MiB,
                maximum=512 * MiB,
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None
        self._bucket = ""

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        self._bucket = str(metadata["bucket"])
        config = AioConfig(s3={"addressing_style": "path" if metadata["forcePathStyle"] else "auto"})
        credentials = {
            "aws_access_key_id": metadata["accessKey"] or None,
            "aws_secret_access_key": metadata["secretKey"] or None,
            "aws_session_token": metadata["sessionToken"] or None,
        }
        self._client = await self._exit.enter_async_context(
            get_session().create_client(
                "s3",
                region_name=metadata["region"],
                endpoint_url=metadata["endpoint"] or None,
                config=config,
                **credentials,
            )
        )
        try:
            await self._client.head_bucket(Bucket=self._bucket)
        except ClientError as error:
            await self.close()
            raise ConfigError(f"file.{self.name}.metadata.bucket: bucket {self._bucket!r}: {error}") from None
        except (BotoCoreError, aiohttp.ClientError, OSError) as error:
            await self.close()
            raise ConfigError(f"file.{self.name}.metadata.endpoint: cannot reach the store: {error}") from None

    async def close(self) -> None:
        await self._exit.aclose()

    @property
    def _part_size(self) -> int:
        return int(self.metadata.get("partSize") or 8 * MiB)

    @contextlib.contextmanager
    def _errors(self, field: str = "", name: str = "") -> Any:
        """Backend failures as the catalogue's errors (a missing object: FileNotFound of ``field``)."""
        try:
            yield
        except ClientError as error:
            if name and _is_missing(error):
                raise FileNotFound(field, self.name, name) from None
            raise BackendError(self.name, str(error)) from None
        except (BotoCoreError, aiohttp.ClientError, OSError) as error:
            raise BackendUnavailable(self.name, str(error) or type(error).__name__) from None

    async def put(self, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str], field: str) -> None:
        for key, value in metadata.items():
            if not (key + value).isascii() or not key.isprintable() or not value.isprintable():
                raise InvalidArgument(f"metadata[{key!r}]", "S3 object metadata must be printable ASCII")
        parts = _Parts(self._part_size)
        upload: _Multipart | None = None
        try:
            async for chunk in chunks:
                if parts.add(chunk):
                    if upload is None:
                        upload = await self._start_upload(name, metadata)
                    await upload.send_behind(parts.take())
            with self._errors():
                if upload is None:
                    await self._client.put_object(Bucket=self._bucket, Key=name, Body=parts.take(), Metadata=metadata)
                    return
                await upload.send_behind(parts.take())
                await upload.complete()
                upload = None
        finally:
            if upload is not None:  # failed or cancelled: nothing of it may stay
                await asyncio.shield(upload.abort())

    async def _start_upload(self, name: str, metadata: Mapping[str, str]) -> _Multipart:
        with self._errors():
            started = await self._client.create_multipart_upload(Bucket=self._bucket, Key=name, Metadata=metadata)
        return _Multipart(self, name, started["UploadId"])

    async def get(self, name: str, field: str) -> AsyncGenerator[bytes, None]:
        with self._errors(field, name):
            response = await self._client.get_object(Bucket=self._bucket, Key=name)
        return self._read(response["Body"])

    async def _read(self, body: Any) -> AsyncGenerator[bytes, None]:
        try:
            while chunk := await self._fill(body):
                yield chunk
        finally:
            body.close()

    async def _fill(self, body: Any) -> bytes:
        """The body's next ``chunk_size`` bytes (fewer at its end, b"" after it). aiohttp hands out at
        most what it buffered (64 to 256 KiB), so a chunk is gathered from several reads: fewer, fuller
        GetFile messages cost the runtime and its client less per byte than many small ones."""
        wanted = self.chunk_size
        pieces: list[bytes] = []
        while wanted:
            with self._errors():
                piece = await body.read(wanted)
            if not piece:
                break
            pieces.append(piece)
            wanted -= len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

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


class _Parts:
    """The data of the part being filled: chunks kept as they came, joined once when the part is taken."""

    def __init__(self, part_size: int) -> None:
        self._part_size = part_size
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; True once the part holds ``part_size`` bytes or more."""
        self._chunks.append(chunk)
        self._size += len(chunk)
        return self._size >= self._part_size

    def take(self) -> bytes:
        """The part's bytes (one copy of the chunks), leaving it empty."""
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        return data


class _Multipart:
    """One multipart upload: parts sent in order, each while the next is received (at most one part in
    flight, so an upload holds at most two parts), then completed (or aborted)."""

    def __init__(self, store: S3FileStore, key: str, upload_id: str) -> None:
        self._store = store
        self._key = key
        self._id = upload_id
        self._parts: list[dict[str, Any]] = []
        self._in_flight: asyncio.Task[None] | None = None

    async def send_behind(self, data: bytes) -> None:
        """Wait for the part in flight (raising its error), then send ``data`` (if any) in the background."""
        await self._settle()
        if data:
            self._in_flight = asyncio.ensure_future(self._send(len(self._parts) + 1, data))

    async def _settle(self) -> None:
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            await in_flight

    async def _send(self, number: int, data: bytes) -> None:
        with self._store._errors():
            sent = await self._store._client.upload_part(
                Bucket=self._store._bucket, Key=self._key, UploadId=self._id, PartNumber=number, Body=data
            )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def complete(self) -> None:
        await self._settle()
        with self._store._errors():
            await self._store._client.complete_multipart_upload(
                Bucket=self._store._bucket, Key=self._key, UploadId=self._id, MultipartUpload={"Parts": self._parts}
            )

    async def abort(self) -> None:
        """Stop the part in flight and abort the upload; never raises."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.cancel()
            await asyncio.wait({in_flight})
            if not in_flight.cancelled():
                in_flight.exception()  # retrieved: whatever it was, the upload is aborted
        with contextlib.suppress(Exception):
            await self._store._client.abort_multipart_upload(
                Bucket=self._store._bucket, Key=self._key, UploadId=self._id
            )

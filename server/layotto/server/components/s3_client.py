"""The S3 client the s3 components share (the File API's ``s3`` store, the ``s3`` object store): its
connection metadata, its construction, the mapping of its failures, and streamed uploads.

Metadata names are those of Dapr's ``bindings.aws.s3``: ``endpoint``, ``region``, ``accessKey``,
``secretKey``, ``sessionToken``, ``forcePathStyle``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from layotto.server.components.base import ConfigError, MetadataField
from layotto.server.errors import BackendError, BackendUnavailable, InvalidArgument
from layotto.server.runtime.validation import is_http_token

MiB = 1024 * 1024
#: the error codes S3 answers for a missing object, bucket or upload
MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket", "NoSuchUpload", "NoSuchVersion"})

#: S3's limit on an object's user metadata: its keys and values, in bytes
MAX_METADATA_BYTES = 2 * 1024


def check_user_metadata(metadata: Mapping[str, str], field: str) -> None:
    """InvalidArgument naming the entry (``field[key]``) for user metadata S3 would alter or lose: each
    key travels as the name of an ``x-amz-meta-<key>`` header (a non-empty HTTP token), each value as its
    value (printable ASCII, no spaces at either end, which HTTP strips); all of it is at most
    :data:`MAX_METADATA_BYTES` (InvalidArgument naming ``field``)."""
    for key, value in metadata.items():
        entry = f"{field}[{key!r}]"
        if not is_http_token(key):  # it travels as a header's name
            raise InvalidArgument(entry, "an S3 metadata key must be a non-empty HTTP token (letters, digits, -_.)")
        if not (value.isascii() and value.isprintable()) or value != value.strip():
            raise InvalidArgument(
                entry, "an S3 metadata value must be printable ASCII, not starting or ending in spaces"
            )
    size = sum(len(key) + len(value) for key, value in metadata.items())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(field, f"holds {size} bytes; S3 keeps at most {MAX_METADATA_BYTES}")


CONNECTION_FIELDS = (
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
)


def part_size_field(what: str) -> MetadataField:
    """The ``partSize`` metadata key: bytes of one part of the multipart uploads that stream ``what``."""
    return MetadataField(
        "partSize",
        f"Bytes of one part of a multipart upload, and the largest {what} sent in one PutObject; an upload "
        "holds at most two parts in memory (one sent while the next is received).",
        type=int,
        default=8 * MiB,
        minimum=5 * MiB,
        maximum=512 * MiB,
    )


async def open_client(metadata: Mapping[str, Any], exit_stack: contextlib.AsyncExitStack) -> Any:
    """An aiobotocore S3 client configured from the :data:`CONNECTION_FIELDS` of ``metadata`` (parsed),
    closed with ``exit_stack``."""
    config = AioConfig(
        signature_version="s3v4",  # presigned URLs too (botocore would sign them with SigV2 in us-east-1)
        s3={"addressing_style": "path" if metadata["forcePathStyle"] else "auto"},
    )
    credentials = {
        "aws_access_key_id": metadata["accessKey"] or None,
        "aws_secret_access_key": metadata["secretKey"] or None,
        "aws_session_token": metadata["sessionToken"] or None,
    }
    return await exit_stack.enter_async_context(
        get_session().create_client(
            "s3",
            region_name=metadata["region"],
            endpoint_url=metadata["endpoint"] or None,
            config=config,
            **credentials,
        )
    )


async def check_bucket(client: Any, bucket: str, where: str) -> None:
    """ConfigError naming ``where`` (``<block>.<name>.metadata``) when ``bucket`` is not reachable."""
    try:
        await client.head_bucket(Bucket=bucket)
    except ClientError as error:
        raise ConfigError(f"{where}.bucket: bucket {bucket!r}: {error}") from None
    except (BotoCoreError, aiohttp.ClientError, OSError) as error:
        raise ConfigError(f"{where}.endpoint: cannot reach the store: {error}") from None


def error_code(error: ClientError) -> str:
    """S3's error code of a failed call (``NoSuchKey``, ``404``, ...)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def is_missing(error: ClientError) -> bool:
    return error_code(error) in MISSING_CODES


@contextlib.contextmanager
def backend_errors(component: str, missing: Callable[[ClientError], Exception] | None = None) -> Iterator[None]:
    """The client's failures as BackendError (the store answered) or BackendUnavailable (it did not);
    with ``missing``, S3's answer that something is missing (:func:`is_missing`) as ``missing(error)``."""
    try:
        yield
    except ClientError as error:
        if missing is not None and is_missing(error):
            raise missing(error) from None
        raise BackendError(component, str(error)) from None
    except (BotoCoreError, aiohttp.ClientError, OSError) as error:
        raise BackendUnavailable(component, str(error) or type(error).__name__) from None


async def upload_stream(
    client: Any,
    component: str,
    chunks: AsyncIterator[bytes],
    part_size: int,
    missing: Callable[[ClientError], Exception] | None = None,
    **object_args: Any,
) -> dict[str, Any]:
    """Store an object from ``chunks``: one PutObject when it is at most ``part_size`` bytes, else a
    multipart upload of ``part_size`` parts, each sent while the next is received (so at most two parts
    are held in memory), aborted on any error or cancellation so no partial object is ever visible
    (``missing``: as :func:`backend_errors`). ``object_args``: PutObject's arguments (``Bucket``,
    ``Key``, ``Metadata``, ...). Returns S3's answer (``ETag``, ``VersionId``)."""
    parts = _Parts(part_size)
    upload: _Multipart | None = None
    try:
        async for chunk in chunks:
            if parts.add(chunk):
                if upload is None:
                    upload = await _Multipart.start(client, component, missing, object_args)
                await upload.send_behind(parts.take())
        if upload is None:
            with backend_errors(component, missing):
                answer: dict[str, Any] = await client.put_object(Body=parts.take(), **object_args)
            return answer
        await upload.send_behind(parts.take())
        answer = await upload.complete()
        upload = None
        return answer
    finally:
        if upload is not None:  # failed or cancelled: nothing of it may stay
            await asyncio.shield(upload.abort())


async def read_chunks(body: Any, chunk_size: int, component: str) -> AsyncGenerator[bytes, None]:
    """An object's body (aiobotocore's stream) in chunks of ``chunk_size`` bytes (the last may be
    shorter), closed at the end. aiohttp hands out at most what it buffered (64 to 256 KiB), so a chunk
    is gathered from several reads: fewer, fuller messages cost the runtime and its client less per byte."""
    try:
        while True:
            wanted = chunk_size
            pieces: list[bytes] = []
            while wanted:
                with backend_errors(component):
                    piece = await body.read(wanted)
                if not piece:
                    break
                pieces.append(piece)
                wanted -= len(piece)
            if not pieces:
                return
            yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
    finally:
        body.close()


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

    def __init__(self, client: Any, errors: Callable[[], Any], bucket: str, key: str, upload_id: str) -> None:
        self._client = client
        self._errors = errors
        self._bucket = bucket
        self._key = key
        self._id = upload_id
        self._parts: list[dict[str, Any]] = []
        self._in_flight: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls,
        client: Any,
        component: str,
        missing: Callable[[ClientError], Exception] | None,
        object_args: Mapping[str, Any],
    ) -> _Multipart:
        def errors() -> contextlib.AbstractContextManager[None]:
            return backend_errors(component, missing)

        with errors():
            started = await client.create_multipart_upload(**object_args)
        return cls(client, errors, object_args["Bucket"], object_args["Key"], started["UploadId"])

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
        with self._errors():
            sent = await self._client.upload_part(
                Bucket=self._bucket, Key=self._key, UploadId=self._id, PartNumber=number, Body=data
            )
        self._parts.append({"ETag": sent["ETag"], "PartNumber": number})

    async def complete(self) -> dict[str, Any]:
        await self._settle()
        with self._errors():
            answer: dict[str, Any] = await self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._id, MultipartUpload={"Parts": self._parts}
            )
        return answer

    async def abort(self) -> None:
        """Stop the part in flight and abort the upload; never raises."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.cancel()
            await asyncio.wait({in_flight})
            if not in_flight.cancelled():
                in_flight.exception()  # retrieved: whatever it was, the upload is aborted
        with contextlib.suppress(Exception):
            await self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._id)

"""Objects of an S3-compatible store (AWS S3, MinIO, Ceph, moto, ...) through aiobotocore: every RPC of
``ObjectStorageService`` except AppendObject and the bandwidth limits, which S3 has no call for.

The bucket is the request's. PutObject and UploadPart stream: an object up to ``partSize`` bytes is one
PutObject, a larger one a multipart upload of ``partSize`` parts (at most one part in memory), aborted on
any error or cancellation so no partial object is visible; an UploadPart holds its part (S3 needs its
length before the first byte: at most ``maxPartSize``). GetObject sends ``chunkSize`` bytes per message.
The connection metadata is the File API's s3 store's (Dapr's ``bindings.aws.s3`` names).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from layotto.server.components.base import CHUNK_SIZE, ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.oss import (
    MAX_PART_NUMBER,
    ByteRange,
    Deleted,
    Listing,
    ObjectInfo,
    ObjectPage,
    ObjectRef,
    ObjectStore,
    ObjectVersion,
    Part,
    PartPage,
    Upload,
    UploadPage,
    VersionPage,
    WriteOptions,
    Written,
)
from layotto.server.components.s3_client import (
    CONNECTION_FIELDS,
    MiB,
    backend_errors,
    check_user_metadata,
    error_code,
    open_client,
    part_size_field,
    read_chunks,
    upload_stream,
)
from layotto.server.errors import BackendError, InvalidArgument, ObjectNotFound

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
BASIC_CONFIG = MetadataField(
    "basic_config",
    "Layotto's connection object (its `config_oss.json`): `region`, `endpoint`, `accessKeyID`, `accessKeySecret`; "
    "each one given replaces `region`, `endpoint`, `accessKey`, `secretKey`.",
    type=dict,
    value_type=str,
)
#: Layotto's basic_config keys -> this store's metadata keys
BASIC_CONFIG_KEYS = {
    "region": "region",
    "endpoint": "endpoint",
    "accessKeyID": "accessKey",
    "accessKeySecret": "secretKey",
}
MAX_PART_SIZE = MetadataField(
    "maxPartSize",
    "The largest UploadPart body, in bytes: S3 needs a part's length before its first byte, so the store holds "
    "a part in memory until it is whole (larger parts are refused with INVALID_ARGUMENT naming body).",
    type=int,
    default=64 * MiB,
    minimum=5 * MiB,
    maximum=5 * 1024 * MiB,
)


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.now(UTC)


def _canned(grants: Sequence[Mapping[str, Any]]) -> str:
    """The canned ACL whose grants these are ("" when none fits)."""
    public = {g["Permission"] for g in grants if g.get("Grantee", {}).get("URI") == ALL_USERS}
    authenticated = {g["Permission"] for g in grants if g.get("Grantee", {}).get("URI") == AUTHENTICATED_USERS}
    if public == {"READ", "WRITE"}:
        return "public-read-write"
    if public == {"READ"}:
        return "public-read"
    if authenticated == {"READ"}:
        return "authenticated-read"
    if not public and not authenticated:
        return "private"
    return ""


def _write_args(options: WriteOptions) -> dict[str, Any]:
    check_user_metadata(options.metadata, "meta")
    args: dict[str, Any] = {"Metadata": dict(options.metadata)}
    if options.tags:
        args["Tagging"] = urlencode(options.tags)
    optional = {
        "ACL": options.acl,
        "ContentType": options.content_type,
        "CacheControl": options.cache_control,
        "ContentDisposition": options.content_disposition,
        "ContentEncoding": options.content_encoding,
        "StorageClass": options.storage_class,
        "Expires": options.expires,
    }
    args.update({name: value for name, value in optional.items() if value})
    return args


def _version(ref: ObjectRef) -> dict[str, str]:
    return {"VersionId": ref.version_id} if ref.version_id else {}


class S3ObjectStore(ObjectStore):
    spec = ComponentSpec(
        type="s3",
        building_block="oss",
        description="Objects of any bucket of an S3-compatible store (aiobotocore): every ObjectStorageService "
        "RPC but AppendObject and the bandwidth limits (UNIMPLEMENTED). PutObject streams as multipart uploads "
        "of `partSize` parts, aborted if the stream fails; SignURL answers presigned GET/PUT URLs.",
        metadata=(
            *CONNECTION_FIELDS,
            CHUNK_SIZE,
            part_size_field("object"),
            MAX_PART_SIZE,
            BASIC_CONFIG,
            MetadataField(
                "buckets",
                "Comma-separated names of buckets created at start when missing (for development and test stores).",
            ),
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._exit = contextlib.AsyncExitStack()
        self._client: Any = None

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        basic = metadata["basic_config"] or {}
        unknown = sorted(set(basic) - set(BASIC_CONFIG_KEYS))
        if unknown:
            known = ", ".join(BASIC_CONFIG_KEYS)
            raise ConfigError(f"oss.{self.name}.metadata.basic_config.{unknown[0]}: unknown key (known: {known})")
        metadata = {**metadata, **{BASIC_CONFIG_KEYS[key]: value for key, value in basic.items() if value}}
        self._client = await open_client(metadata, self._exit)
        try:
            for bucket in [name.strip() for name in str(metadata["buckets"] or "").split(",") if name.strip()]:
                await self._create_bucket(bucket, str(metadata["region"]), f"oss.{self.name}.metadata")
        except BaseException:
            await self.close()
            raise

    async def _create_bucket(self, bucket: str, region: str, where: str) -> None:
        try:
            await self._client.head_bucket(Bucket=bucket)
            return
        except ClientError as error:
            if error_code(error) not in ("404", "NotFound", "NoSuchBucket"):
                raise ConfigError(f"{where}.buckets: bucket {bucket!r}: {error}") from None
        except (BotoCoreError, aiohttp.ClientError, OSError) as error:
            raise ConfigError(f"{where}.endpoint: cannot reach the store: {error}") from None
        location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        try:
            await self._client.create_bucket(Bucket=bucket, **location)
        except (ClientError, BotoCoreError, aiohttp.ClientError, OSError) as error:
            raise ConfigError(f"{where}.buckets: cannot create bucket {bucket!r}: {error}") from None

    async def close(self) -> None:
        await self._exit.aclose()

    @property
    def _part_size(self) -> int:
        return int(self.metadata.get("partSize") or 8 * MiB)

    def _missing_of(
        self, ref: ObjectRef, upload_field: str = "upload_id", upload_id: str = ""
    ) -> Callable[[ClientError], ObjectNotFound]:
        """S3's answer that something is missing, as ObjectNotFound naming the field of what is."""

        def missing(error: ClientError) -> ObjectNotFound:
            code = error_code(error)
            if code == "NoSuchBucket":
                return self.missing(ref, "bucket")
            if code == "NoSuchUpload":
                return ObjectNotFound(upload_field, self.name, "multipart upload", upload_id, f"of {ref.key!r}")
            if code == "NoSuchVersion" or (ref.version_id and code in ("404", "NotFound")):
                return self.missing(ref, "version")
            return self.missing(ref)

        return missing

    def _errors(self, ref: ObjectRef | None = None, upload_id: str = "") -> contextlib.AbstractContextManager[None]:
        """Backend failures as the catalogue's errors; a missing bucket, key, version or upload of ``ref``
        as ObjectNotFound naming its field."""
        return backend_errors(self.name, self._missing_of(ref, upload_id=upload_id) if ref else None)

    async def _bucket_exists(self, ref: ObjectRef) -> None:
        with self._errors(ObjectRef(ref.bucket, bucket_field=ref.bucket_field)):
            try:
                await self._client.head_bucket(Bucket=ref.bucket)
            except ClientError as error:
                if error_code(error) in ("404", "NotFound", "NoSuchBucket"):
                    raise self.missing(ref, "bucket") from None
                raise

    # -- objects ---------------------------------------------------------------------------------

    async def put(self, ref: ObjectRef, chunks: AsyncIterator[bytes], options: WriteOptions) -> Written:
        args = _write_args(options)
        missing = self._missing_of(ref)
        answer = await upload_stream(
            self._client, self.name, chunks, self._part_size, missing, Bucket=ref.bucket, Key=ref.key, **args
        )
        return Written(str(answer.get("ETag", "")), str(answer.get("VersionId", "")))

    async def get(self, ref: ObjectRef, byte_range: ByteRange | None) -> tuple[ObjectInfo, AsyncGenerator[bytes, None]]:
        extra: dict[str, Any] = _version(ref)
        if byte_range is not None:
            end = "" if byte_range.end is None else str(byte_range.end)
            extra["Range"] = f"bytes={byte_range.start}-{end}"
        with self._errors(ref):
            try:
                answer = await self._client.get_object(Bucket=ref.bucket, Key=ref.key, **extra)
            except ClientError as error:
                if error_code(error) == "InvalidRange":
                    raise InvalidArgument("start", f"is beyond the object's end: {error}") from None
                raise
        return self._info(ref.key, answer), read_chunks(answer["Body"], self.chunk_size, self.name)

    @staticmethod
    def _info(key: str, answer: Mapping[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=int(answer.get("ContentLength", answer.get("Size", 0))),
            etag=str(answer.get("ETag", "")),
            last_modified=_time(answer.get("LastModified")),
            metadata=dict(answer.get("Metadata") or {}),
            content_type=str(answer.get("ContentType", "")),
            version_id=str(answer.get("VersionId", "")),
            storage_class=str(answer.get("StorageClass", "")),
            tag_count=int(answer.get("TagCount", 0)),
            cache_control=str(answer.get("CacheControl", "")),
            content_disposition=str(answer.get("ContentDisposition", "")),
            content_encoding=str(answer.get("ContentEncoding", "")),
        )

    async def head(self, ref: ObjectRef) -> ObjectInfo:
        try:
            with self._errors(ref):
                answer = await self._client.head_object(Bucket=ref.bucket, Key=ref.key, **_version(ref))
        except ObjectNotFound:
            await self._bucket_exists(ref)  # HEAD answers a bare 404 for a missing bucket too
            raise
        return self._info(ref.key, answer)

    async def delete(self, ref: ObjectRef) -> Deleted:
        with self._errors(ref):
            answer = await self._client.delete_object(Bucket=ref.bucket, Key=ref.key, **_version(ref))
        return Deleted(ref.key, str(answer.get("VersionId", "")), bool(answer.get("DeleteMarker")))

    async def delete_many(self, bucket: str, refs: Sequence[ObjectRef]) -> list[Deleted]:
        if not refs:
            return []
        objects = [{"Key": ref.key, **_version(ref)} for ref in refs]
        with self._errors(refs[0]):
            answer = await self._client.delete_objects(Bucket=bucket, Delete={"Objects": objects})
        failed = answer.get("Errors") or []
        if failed:
            first = failed[0]
            raise BackendError(self.name, f"cannot delete {first.get('Key')!r}: {first.get('Message')}")
        return [
            Deleted(
                str(item.get("Key", "")),
                str(item.get("VersionId", "")),
                bool(item.get("DeleteMarker")),
                str(item.get("DeleteMarkerVersionId", "")),
            )
            for item in answer.get("Deleted") or []
        ]

    async def copy(
        self, target: ObjectRef, source: ObjectRef, metadata: Mapping[str, str] | None, tags: Mapping[str, str] | None
    ) -> Written:
        args: dict[str, Any] = {"CopySource": {"Bucket": source.bucket, "Key": source.key, **_version(source)}}
        if metadata is not None:
            args.update(MetadataDirective="REPLACE", **_write_args(WriteOptions(metadata=metadata)))
        if tags is not None:
            args.update(TaggingDirective="REPLACE", Tagging=urlencode(tags))
        await self.head(source)  # S3 answers a missing source as a missing key, whichever is missing
        with self._errors(target):
            try:
                answer = await self._client.copy_object(Bucket=target.bucket, Key=target.key, **args)
            except ClientError as error:
                if error_code(error) == "InvalidRequest":  # S3's refusal of a copy onto itself changing nothing
                    raise InvalidArgument("copy_source", str(error)) from None
                raise
        result = answer.get("CopyObjectResult") or {}
        return Written(str(result.get("ETag", "")), str(answer.get("VersionId", "")), result.get("LastModified"))

    async def list(self, bucket: ObjectRef, listing: Listing) -> ObjectPage:
        with self._errors(bucket):
            answer = await self._client.list_objects(
                Bucket=bucket.bucket,
                Prefix=listing.prefix,
                Delimiter=listing.delimiter,
                Marker=listing.marker,
                MaxKeys=listing.limit,
            )
        objects = [self._info(str(item["Key"]), item) for item in answer.get("Contents") or []]
        prefixes = [str(item["Prefix"]) for item in answer.get("CommonPrefixes") or []]
        truncated = bool(answer.get("IsTruncated"))
        last = max([*(o.key for o in objects), *prefixes], default="")
        return ObjectPage(objects, prefixes, truncated, str(answer.get("NextMarker") or last) if truncated else "")

    # -- tags and ACLs ---------------------------------------------------------------------------

    async def put_tags(self, ref: ObjectRef, tags: Mapping[str, str]) -> str:
        tag_set = [{"Key": key, "Value": value} for key, value in tags.items()]
        with self._errors(ref):
            answer = await self._client.put_object_tagging(
                Bucket=ref.bucket, Key=ref.key, Tagging={"TagSet": tag_set}, **_version(ref)
            )
        return str(answer.get("VersionId", ""))

    async def get_tags(self, ref: ObjectRef) -> dict[str, str]:
        with self._errors(ref):
            answer = await self._client.get_object_tagging(Bucket=ref.bucket, Key=ref.key, **_version(ref))
        return {str(tag["Key"]): str(tag["Value"]) for tag in answer.get("TagSet") or []}

    async def delete_tags(self, ref: ObjectRef) -> str:
        with self._errors(ref):
            answer = await self._client.delete_object_tagging(Bucket=ref.bucket, Key=ref.key, **_version(ref))
        return str(answer.get("VersionId", ""))

    async def put_acl(self, ref: ObjectRef, acl: str) -> None:
        with self._errors(ref):
            await self._client.put_object_acl(Bucket=ref.bucket, Key=ref.key, ACL=acl, **_version(ref))

    async def get_acl(self, ref: ObjectRef) -> str:
        with self._errors(ref):
            answer = await self._client.get_object_acl(Bucket=ref.bucket, Key=ref.key, **_version(ref))
        return _canned(answer.get("Grants") or [])

    # -- multipart uploads -----------------------------------------------------------------------

    async def create_upload(self, ref: ObjectRef, options: WriteOptions) -> str:
        with self._errors(ref):
            answer = await self._client.create_multipart_upload(Bucket=ref.bucket, Key=ref.key, **_write_args(options))
        return str(answer["UploadId"])

    async def upload_part(self, ref: ObjectRef, upload_id: str, number: int, chunks: AsyncIterator[bytes]) -> str:
        body = bytearray()
        limit = int(self.metadata.get("maxPartSize") or MAX_PART_SIZE.default)
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise InvalidArgument(
                    "body", f"a part of store {self.name!r} holds at most {limit} bytes (maxPartSize)"
                )
        with self._errors(ref, upload_id):
            answer = await self._client.upload_part(
                Bucket=ref.bucket, Key=ref.key, UploadId=upload_id, PartNumber=number, Body=bytes(body)
            )
        return str(answer["ETag"])

    async def upload_part_copy(
        self, ref: ObjectRef, upload_id: str, number: int, source: ObjectRef, byte_range: ByteRange | None
    ) -> Written:
        args: dict[str, Any] = {"CopySource": {"Bucket": source.bucket, "Key": source.key, **_version(source)}}
        if byte_range is not None:
            info = await self.head(source)
            end = info.size - 1 if byte_range.end is None else byte_range.end
            args["CopySourceRange"] = f"bytes={byte_range.start}-{end}"
        with self._errors(ref, upload_id):
            answer = await self._client.upload_part_copy(
                Bucket=ref.bucket, Key=ref.key, UploadId=upload_id, PartNumber=number, **args
            )
        result = answer.get("CopyPartResult") or {}
        return Written(
            str(result.get("ETag", "")), str(answer.get("CopySourceVersionId", "")), result.get("LastModified")
        )

    async def complete_upload(self, ref: ObjectRef, upload_id: str, parts: Sequence[tuple[int, str]]) -> Written:
        completed = {"Parts": [{"PartNumber": number, "ETag": etag} for number, etag in parts]}
        with self._errors(ref, upload_id):
            try:
                answer = await self._client.complete_multipart_upload(
                    Bucket=ref.bucket, Key=ref.key, UploadId=upload_id, MultipartUpload=completed
                )
            except ClientError as error:
                if error_code(error) in ("InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML"):
                    raise InvalidArgument("multipart_upload.parts", str(error)) from None
                raise
        return Written(str(answer.get("ETag", "")), str(answer.get("VersionId", "")))

    async def abort_upload(self, ref: ObjectRef, upload_id: str) -> None:
        with self._errors(ref, upload_id):
            await self._client.abort_multipart_upload(Bucket=ref.bucket, Key=ref.key, UploadId=upload_id)

    async def list_uploads(self, bucket: ObjectRef, listing: Listing) -> UploadPage:
        with self._errors(bucket):
            answer = await self._client.list_multipart_uploads(
                Bucket=bucket.bucket,
                Prefix=listing.prefix,
                Delimiter=listing.delimiter,
                KeyMarker=listing.marker,
                UploadIdMarker=listing.secondary_marker,
                MaxUploads=listing.limit,
            )
        uploads = [
            Upload(
                str(item["Key"]), str(item["UploadId"]), _time(item.get("Initiated")), str(item.get("StorageClass", ""))
            )
            for item in answer.get("Uploads") or []
        ]
        return UploadPage(
            uploads,
            [str(item["Prefix"]) for item in answer.get("CommonPrefixes") or []],
            bool(answer.get("IsTruncated")),
            str(answer.get("NextKeyMarker") or ""),
            str(answer.get("NextUploadIdMarker") or ""),
        )

    async def list_parts(self, ref: ObjectRef, upload_id: str, marker: int, limit: int) -> PartPage:
        with self._errors(ref, upload_id):
            answer = await self._client.list_parts(
                Bucket=ref.bucket, Key=ref.key, UploadId=upload_id, PartNumberMarker=marker, MaxParts=limit
            )
        parts = [
            Part(int(item["PartNumber"]), str(item["ETag"]), int(item["Size"]), _time(item.get("LastModified")))
            for item in answer.get("Parts") or []
        ]
        truncated = bool(answer.get("IsTruncated"))
        next_marker = int(answer.get("NextPartNumberMarker") or (parts[-1].number if parts else 0))
        return PartPage(parts, truncated, min(next_marker, MAX_PART_NUMBER) if truncated else 0)

    # -- versions, signing, restore --------------------------------------------------------------

    async def list_versions(self, bucket: ObjectRef, listing: Listing) -> VersionPage:
        args: dict[str, Any] = {"KeyMarker": listing.marker} if listing.marker else {}
        if listing.secondary_marker:
            args["VersionIdMarker"] = listing.secondary_marker
        with self._errors(bucket):
            answer = await self._client.list_object_versions(
                Bucket=bucket.bucket, Prefix=listing.prefix, Delimiter=listing.delimiter, MaxKeys=listing.limit, **args
            )
        versions = [
            ObjectVersion(
                str(item["Key"]),
                str(item.get("VersionId", "")),
                bool(item.get("IsLatest")),
                _time(item.get("LastModified")),
                int(item.get("Size", 0)),
                str(item.get("ETag", "")),
                str(item.get("StorageClass", "")),
            )
            for item in answer.get("Versions") or []
        ]
        versions += [
            ObjectVersion(
                str(item["Key"]),
                str(item.get("VersionId", "")),
                bool(item.get("IsLatest")),
                _time(item.get("LastModified")),
                is_delete_marker=True,
            )
            for item in answer.get("DeleteMarkers") or []
        ]
        return VersionPage(
            versions,
            [str(item["Prefix"]) for item in answer.get("CommonPrefixes") or []],
            bool(answer.get("IsTruncated")),
            str(answer.get("NextKeyMarker") or ""),
            str(answer.get("NextVersionIdMarker") or ""),
        )

    async def sign_url(self, ref: ObjectRef, method: str, seconds: int) -> str:
        operation = "get_object" if method == "GET" else "put_object"
        with self._errors(ref):
            url: str = await self._client.generate_presigned_url(
                operation, Params={"Bucket": ref.bucket, "Key": ref.key}, ExpiresIn=seconds
            )
        return url

    async def restore(self, ref: ObjectRef, days: int, tier: str) -> None:
        request: dict[str, Any] = {"Days": days}
        if tier:
            request["GlacierJobParameters"] = {"Tier": tier}
        with self._errors(ref):
            try:
                await self._client.restore_object(
                    Bucket=ref.bucket, Key=ref.key, RestoreRequest=request, **_version(ref)
                )
            except ClientError as error:
                if error_code(error) == "InvalidObjectState":
                    raise InvalidArgument("key", f"{ref.key!r} is not in an archive storage class") from None
                raise

"""Layotto's ``spec.proto.extension.v1.s3.ObjectStorageService`` (config key ``oss``): the messages of its
RPCs converted to and from :mod:`layotto.server.components.oss`'s, checked by
:mod:`layotto.server.runtime.oss`.

Streams: PutObject, UploadPart and AppendObject take the object's attributes from the stream's first
message and only ``body`` from the later ones (as Layotto does); each message is read as the store takes
the previous one's body, so gRPC's flow control holds a client back. GetObject sends ``chunkSize`` bytes
per message, every message repeating the object's attributes (as Layotto does; an empty object is one
message without body). Times are Unix seconds. HeadObject's ``result_metadata`` holds the object's HTTP
headers: ``Content-Length``, ``Content-Type``, ``ETag``, ``Last-Modified``, ``x-amz-version-id`` and
``x-amz-meta-<key>`` for each user metadata key.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from google.protobuf import empty_pb2

from layotto.proto.extension.v1.s3 import oss_pb2 as pb
from layotto.server.api.adapter import Context, stream_data
from layotto.server.components.oss import MAX_PART_NUMBER, ObjectInfo, ObjectRef, WriteOptions
from layotto.server.errors import InvalidArgument
from layotto.server.runtime import oss as checks
from layotto.server.runtime.oss import ObjectService, bucket_ref, object_ref


def _seconds(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


def _source(source: pb.CopySource) -> ObjectRef:
    return object_ref(
        source.copy_source_bucket,
        source.copy_source_key,
        source.copy_source_version_id,
        bucket_field="copy_source.copy_source_bucket",
        key_field="copy_source.copy_source_key",
        version_field="copy_source.copy_source_version_id",
    )


def _upload_id(upload_id: str) -> str:
    if not upload_id or "\x00" in upload_id:
        raise InvalidArgument("upload_id", "is empty or holds NUL; name the multipart upload")
    return upload_id


def _headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "Content-Length": str(info.size),
        "ETag": info.etag,
        "Last-Modified": format_datetime(info.last_modified.astimezone(UTC), usegmt=True),
    }
    if info.content_type:
        headers["Content-Type"] = info.content_type
    if info.version_id:
        headers["x-amz-version-id"] = info.version_id
    headers.update({f"x-amz-meta-{key}": value for key, value in info.metadata.items()})
    return headers


async def _counted(chunks: AsyncIterator[bytes], expected: int, field: str) -> AsyncIterator[bytes]:
    """``chunks``, failing with InvalidArgument naming ``field`` when they do not add up to ``expected``
    bytes (0: any number)."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if expected and total > expected:
            raise InvalidArgument(field, f"is {expected} but the body is longer")
        yield chunk
    if expected and total != expected:
        raise InvalidArgument(field, f"is {expected} but the body has {total} bytes")


class ObjectsApi:
    """Serves every ObjectStorageService RPC from one :class:`ObjectService`."""

    def __init__(self, objects: ObjectService) -> None:
        self._objects = objects

    # -- objects ---------------------------------------------------------------------------------

    async def PutObject(self, requests: AsyncIterator[Any], context: Context) -> pb.PutObjectOutput:
        first = await anext(requests, None)
        if first is None:
            raise InvalidArgument("store_name", "the stream is empty; its first message names the object")
        store = self._objects.store(first.store_name)
        ref = object_ref(first.bucket, first.key)
        options = WriteOptions(
            metadata=dict(first.meta),
            tags=checks.tags(first.tagging),
            acl=checks.canned_acl(first.acl),
            cache_control=first.cache_control,
            content_disposition=first.content_disposition,
            content_encoding=first.content_encoding,
            storage_class=first.storage_class,
            expires=checks.expiry(first.expires),
        )
        checks.not_negative(first.content_length, "content_length")
        body = _counted(stream_data(first, requests, context, "body"), first.content_length, "content_length")
        written = await store.put(ref, body, options)
        return pb.PutObjectOutput(etag=written.etag, version_id=written.version_id)

    async def GetObject(self, request: pb.GetObjectInput, context: Context) -> AsyncIterator[pb.GetObjectOutput]:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key, request.version_id)
        info, chunks = await store.get(ref, checks.byte_range(request.start, request.end))
        head = pb.GetObjectOutput(
            cache_control=info.cache_control,
            content_disposition=info.content_disposition,
            content_encoding=info.content_encoding,
            content_length=info.size,
            content_type=info.content_type,
            etag=info.etag,
            last_modified=_seconds(info.last_modified),
            version_id=info.version_id,
            tag_count=info.tag_count,
            storage_class=info.storage_class,
            metadata=info.metadata,
        )
        sent = False
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                message = pb.GetObjectOutput()
                message.CopyFrom(head)
                message.body = chunk
                sent = True
                yield message
        if not sent:
            yield head

    async def DeleteObject(self, request: pb.DeleteObjectInput, context: Context) -> pb.DeleteObjectOutput:
        store = self._objects.store(request.store_name)
        deleted = await store.delete(object_ref(request.bucket, request.key, request.version_id))
        return pb.DeleteObjectOutput(delete_marker=deleted.delete_marker, version_id=deleted.version_id)

    async def DeleteObjects(self, request: pb.DeleteObjectsInput, context: Context) -> pb.DeleteObjectsOutput:
        store = self._objects.store(request.store_name)
        bucket = bucket_ref(request.bucket).bucket
        if not request.delete.objects:
            raise InvalidArgument("delete.objects", "is empty; name the objects to delete")
        if len(request.delete.objects) > 1000:
            raise InvalidArgument("delete.objects", f"at most 1000 objects, got {len(request.delete.objects)}")
        refs = [
            object_ref(
                bucket,
                item.key,
                item.version_id,
                key_field=f"delete.objects[{i}].key",
                version_field=f"delete.objects[{i}].version_id",
            )
            for i, item in enumerate(request.delete.objects)
        ]
        deleted = await store.delete_many(bucket, refs)
        if request.delete.quiet:
            return pb.DeleteObjectsOutput()
        return pb.DeleteObjectsOutput(
            deleted=[
                pb.DeletedObject(
                    key=item.key,
                    version_id=item.version_id,
                    delete_marker=item.delete_marker,
                    delete_marker_version_id=item.delete_marker_version_id,
                )
                for item in deleted
            ]
        )

    async def CopyObject(self, request: pb.CopyObjectInput, context: Context) -> pb.CopyObjectOutput:
        store = self._objects.store(request.store_name)
        target = object_ref(request.bucket, request.key)
        if not request.HasField("copy_source"):
            raise InvalidArgument("copy_source", "is missing; name the object to copy")
        directive = request.metadata_directive.upper()
        if directive not in ("", "COPY", "REPLACE"):
            raise InvalidArgument("metadata_directive", f"expected COPY or REPLACE, got {request.metadata_directive!r}")
        replace = directive == "REPLACE" or (directive == "" and bool(request.metadata))
        tags = checks.tags(request.tagging) if request.tagging else None
        written = await store.copy(
            target, _source(request.copy_source), dict(request.metadata) if replace else None, tags
        )
        result = pb.CopyObjectResult(etag=written.etag, last_modified=_seconds(written.last_modified))
        return pb.CopyObjectOutput(copy_object_result=result, version_id=written.version_id)

    async def HeadObject(self, request: pb.HeadObjectInput, context: Context) -> pb.HeadObjectOutput:
        store = self._objects.store(request.store_name)
        info = await store.head(object_ref(request.bucket, request.key, request.version_id))
        return pb.HeadObjectOutput(result_metadata=_headers(info))

    async def IsObjectExist(self, request: pb.IsObjectExistInput, context: Context) -> pb.IsObjectExistOutput:
        store = self._objects.store(request.store_name)
        exists = await store.exists(object_ref(request.bucket, request.key, request.version_id))
        return pb.IsObjectExistOutput(file_exist=exists)

    async def ListObjects(self, request: pb.ListObjectsInput, context: Context) -> pb.ListObjectsOutput:
        store = self._objects.store(request.store_name)
        bucket = bucket_ref(request.bucket)
        listing = checks.listing(request.prefix, request.delimiter, request.marker, request.maxKeys, "maxKeys")
        page = await store.list(bucket, listing)
        contents = [
            pb.Object(
                etag=item.etag,
                key=item.key,
                last_modified=_seconds(item.last_modified),
                size=item.size,
                storage_class=item.storage_class,
            )
            for item in page.objects
        ]
        return pb.ListObjectsOutput(
            common_prefixes=page.common_prefixes,
            contents=contents,
            delimiter=request.delimiter,
            is_truncated=page.is_truncated,
            marker=request.marker,
            max_keys=listing.limit,
            name=request.bucket,
            next_marker=page.next_marker,
            prefix=request.prefix,
        )

    # -- tags and ACLs ---------------------------------------------------------------------------

    async def PutObjectTagging(self, request: pb.PutObjectTaggingInput, context: Context) -> pb.PutObjectTaggingOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key, request.version_id)
        version = await store.put_tags(ref, checks.tags(request.tags, "tags"))
        return pb.PutObjectTaggingOutput(version_id=version)

    async def GetObjectTagging(self, request: pb.GetObjectTaggingInput, context: Context) -> pb.GetObjectTaggingOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key, request.version_id)
        return pb.GetObjectTaggingOutput(tags=await store.get_tags(ref), version_id=request.version_id)

    async def DeleteObjectTagging(
        self, request: pb.DeleteObjectTaggingInput, context: Context
    ) -> pb.DeleteObjectTaggingOutput:
        store = self._objects.store(request.store_name)
        version = await store.delete_tags(object_ref(request.bucket, request.key, request.version_id))
        return pb.DeleteObjectTaggingOutput(version_id=version)

    async def PutObjectCannedAcl(
        self, request: pb.PutObjectCannedAclInput, context: Context
    ) -> pb.PutObjectCannedAclOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key, request.version_id)
        await store.put_acl(ref, checks.canned_acl(request.acl, required=True))
        return pb.PutObjectCannedAclOutput()

    async def GetObjectCannedAcl(
        self, request: pb.GetObjectCannedAclInput, context: Context
    ) -> pb.GetObjectCannedAclOutput:
        store = self._objects.store(request.store_name)
        acl = await store.get_acl(object_ref(request.bucket, request.key, request.version_id))
        return pb.GetObjectCannedAclOutput(canned_acl=acl)

    # -- multipart uploads -----------------------------------------------------------------------

    async def CreateMultipartUpload(
        self, request: pb.CreateMultipartUploadInput, context: Context
    ) -> pb.CreateMultipartUploadOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key)
        options = WriteOptions(
            metadata=dict(request.meta_data),
            tags=checks.tags(request.tagging),
            acl=checks.canned_acl(request.acl),
            content_type=request.content_type,
            cache_control=request.cache_control,
            content_disposition=request.content_disposition,
            content_encoding=request.content_encoding,
            storage_class=request.storage_class,
            expires=checks.expiry(request.expires),
        )
        upload_id = await store.create_upload(ref, options)
        return pb.CreateMultipartUploadOutput(bucket=ref.bucket, key=ref.key, upload_id=upload_id)

    async def UploadPart(self, requests: AsyncIterator[Any], context: Context) -> pb.UploadPartOutput:
        first = await anext(requests, None)
        if first is None:
            raise InvalidArgument("store_name", "the stream is empty; its first message names the part")
        store = self._objects.store(first.store_name)
        ref = object_ref(first.bucket, first.key)
        number = checks.part_number(first.part_number)
        checks.not_negative(first.content_length, "content_length")
        body = _counted(stream_data(first, requests, context, "body"), first.content_length, "content_length")
        etag = await store.upload_part(ref, _upload_id(first.upload_id), number, body)
        return pb.UploadPartOutput(etag=etag)

    async def UploadPartCopy(self, request: pb.UploadPartCopyInput, context: Context) -> pb.UploadPartCopyOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key)
        if not request.HasField("copy_source"):
            raise InvalidArgument("copy_source", "is missing; name the object to copy from")
        start = checks.not_negative(request.start_position, "start_position")
        size = checks.not_negative(request.part_size, "part_size")
        byte_range = checks.byte_range(start, start + size - 1, "start_position", "part_size") if size else None
        if byte_range is None and start:
            byte_range = checks.byte_range(start, 0, "start_position")
        written = await store.upload_part_copy(
            ref,
            _upload_id(request.upload_id),
            checks.part_number(request.part_number),
            _source(request.copy_source),
            byte_range,
        )
        result = pb.CopyPartResult(etag=written.etag, last_modified=_seconds(written.last_modified))
        return pb.UploadPartCopyOutput(copy_part_result=result, copy_source_version_id=written.version_id)

    async def CompleteMultipartUpload(
        self, request: pb.CompleteMultipartUploadInput, context: Context
    ) -> pb.CompleteMultipartUploadOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key)
        parts = request.multipart_upload.parts
        if not parts:
            raise InvalidArgument("multipart_upload.parts", "is empty; list the uploaded parts")
        numbered = [
            (checks.part_number(part.part_number, f"multipart_upload.parts[{i}].part_number"), part.etag)
            for i, part in enumerate(parts)
        ]
        written = await store.complete_upload(ref, _upload_id(request.upload_id), numbered)
        return pb.CompleteMultipartUploadOutput(
            bucket=ref.bucket, key=ref.key, etag=written.etag, version_id=written.version_id
        )

    async def AbortMultipartUpload(
        self, request: pb.AbortMultipartUploadInput, context: Context
    ) -> pb.AbortMultipartUploadOutput:
        store = self._objects.store(request.store_name)
        await store.abort_upload(object_ref(request.bucket, request.key), _upload_id(request.upload_id))
        return pb.AbortMultipartUploadOutput()

    async def ListMultipartUploads(
        self, request: pb.ListMultipartUploadsInput, context: Context
    ) -> pb.ListMultipartUploadsOutput:
        store = self._objects.store(request.store_name)
        listing = checks.listing(
            request.prefix,
            request.delimiter,
            request.key_marker,
            request.max_uploads,
            "max_uploads",
            second_marker=request.upload_id_marker,
        )
        page = await store.list_uploads(bucket_ref(request.bucket), listing)
        return pb.ListMultipartUploadsOutput(
            bucket=request.bucket,
            common_prefixes=page.common_prefixes,
            delimiter=request.delimiter,
            is_truncated=page.is_truncated,
            key_marker=request.key_marker,
            max_uploads=listing.limit,
            next_key_marker=page.next_key_marker,
            next_upload_id_marker=page.next_upload_id_marker,
            prefix=request.prefix,
            upload_id_marker=request.upload_id_marker,
            uploads=[
                pb.MultipartUpload(
                    initiated=_seconds(upload.initiated),
                    key=upload.key,
                    upload_id=upload.upload_id,
                    storage_class=upload.storage_class,
                )
                for upload in page.uploads
            ],
        )

    async def ListParts(self, request: pb.ListPartsInput, context: Context) -> pb.ListPartsOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key)
        limit = checks.page_size(request.max_parts, "max_parts")
        marker = checks.not_negative(request.part_number_marker, "part_number_marker")
        if marker > MAX_PART_NUMBER:
            raise InvalidArgument("part_number_marker", f"must be between 0 and {MAX_PART_NUMBER}, got {marker}")
        page = await store.list_parts(ref, _upload_id(request.upload_id), marker, limit)
        return pb.ListPartsOutput(
            bucket=ref.bucket,
            key=ref.key,
            upload_id=request.upload_id,
            next_part_number_marker=str(page.next_part_number_marker) if page.is_truncated else "",
            max_parts=limit,
            is_truncated=page.is_truncated,
            parts=[
                pb.Part(
                    etag=part.etag, last_modified=_seconds(part.last_modified), part_number=part.number, size=part.size
                )
                for part in page.parts
            ],
        )

    # -- versions, signing, restore, append, bandwidth -------------------------------------------

    async def ListObjectVersions(
        self, request: pb.ListObjectVersionsInput, context: Context
    ) -> pb.ListObjectVersionsOutput:
        store = self._objects.store(request.store_name)
        listing = checks.listing(
            request.prefix,
            request.delimiter,
            request.key_marker,
            request.max_keys,
            "max_keys",
            second_marker=request.version_id_marker,
        )
        page = await store.list_versions(bucket_ref(request.bucket), listing)
        versions = [v for v in page.versions if not v.is_delete_marker]
        markers = [v for v in page.versions if v.is_delete_marker]
        return pb.ListObjectVersionsOutput(
            common_prefixes=page.common_prefixes,
            delete_markers=[
                pb.DeleteMarkerEntry(
                    is_latest=m.is_latest, key=m.key, last_modified=_seconds(m.last_modified), version_id=m.version_id
                )
                for m in markers
            ],
            delimiter=request.delimiter,
            is_truncated=page.is_truncated,
            key_marker=request.key_marker,
            max_keys=listing.limit,
            name=request.bucket,
            next_key_marker=page.next_key_marker,
            next_version_id_marker=page.next_version_id_marker,
            prefix=request.prefix,
            version_id_marker=request.version_id_marker,
            versions=[
                pb.ObjectVersion(
                    etag=v.etag,
                    is_latest=v.is_latest,
                    key=v.key,
                    last_modified=_seconds(v.last_modified),
                    size=v.size,
                    storage_class=v.storage_class,
                    version_id=v.version_id,
                )
                for v in versions
            ],
        )

    async def SignURL(self, request: pb.SignURLInput, context: Context) -> pb.SignURLOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key)
        url = await store.sign_url(ref, checks.sign_method(request.method), checks.sign_seconds(request.expired_in_sec))
        return pb.SignURLOutput(signed_url=url)

    async def AppendObject(self, requests: AsyncIterator[Any], context: Context) -> pb.AppendObjectOutput:
        first = await anext(requests, None)
        if first is None:
            raise InvalidArgument("store_name", "the stream is empty; its first message names the object")
        store = self._objects.store(first.store_name)
        ref = object_ref(first.bucket, first.key)
        options = WriteOptions(
            tags=checks.tags(first.tags, "tags"),
            acl=checks.canned_acl(first.acl),
            cache_control=first.cache_control,
            content_disposition=first.content_disposition,
            content_encoding=first.content_encoding,
            storage_class=first.storage_class,
            expires=checks.expiry(first.expires),
        )
        position = checks.not_negative(first.position, "position")
        end = await store.append(ref, position, stream_data(first, requests, context, "body"), options)
        return pb.AppendObjectOutput(append_position=end)

    async def RestoreObject(self, request: pb.RestoreObjectInput, context: Context) -> pb.RestoreObjectOutput:
        store = self._objects.store(request.store_name)
        ref = object_ref(request.bucket, request.key, request.version_id)
        restore = request.restore_request
        if not 1 <= restore.days <= 36_500:
            raise InvalidArgument("restore_request.days", f"must be between 1 and 36500, got {restore.days}")
        await store.restore(ref, restore.days, restore.glacier_job_parameters.tier or restore.tier)
        return pb.RestoreObjectOutput()

    async def UpdateDownloadBandwidthRateLimit(
        self, request: pb.UpdateBandwidthRateLimitInput, context: Context
    ) -> empty_pb2.Empty:
        store = self._objects.store(request.store_name)
        await store.set_bandwidth("download", checks.bandwidth(request.average_rate_limit_in_bits_per_sec))
        return empty_pb2.Empty()

    async def UpdateUploadBandwidthRateLimit(
        self, request: pb.UpdateBandwidthRateLimitInput, context: Context
    ) -> empty_pb2.Empty:
        store = self._objects.store(request.store_name)
        await store.set_bandwidth("upload", checks.bandwidth(request.average_rate_limit_in_bits_per_sec))
        return empty_pb2.Empty()

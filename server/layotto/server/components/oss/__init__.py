"""The oss building block (Layotto's ``ObjectStorageService`` extension): object stores keep objects in
buckets, S3's way.

Requests name an object by :class:`ObjectRef` (bucket, key, optional version), carrying the request
fields that hold them so a store's errors name the field. The runtime layer checks what every store
needs before a store is asked (:func:`check_bucket`, :func:`check_key`, ranges of numbers); a store
may refuse more (the ``local`` store: keys leading out of its root).

Contents move in chunks (async iterators of ``bytes`` each way): no object is held whole in memory.
Times are UTC datetimes; the API layer sends them as Unix seconds, as Layotto does.

Errors: :class:`~layotto.server.errors.ObjectNotFound` naming the field of the missing bucket, key,
version or upload; :class:`~layotto.server.errors.InvalidArgument` naming the field;
:class:`~layotto.server.errors.FeatureNotSupported` (UNIMPLEMENTED) naming the RPC and the store's type
for what a store cannot do (the default of every optional method here);
``BackendError`` / ``BackendUnavailable`` for the backend's failures.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from layotto.server.components.base import CHUNK_SIZE, Component
from layotto.server.errors import FeatureNotSupported, InvalidArgument, ObjectNotFound

#: the longest object key and bucket name, in UTF-8 bytes (S3's limits)
MAX_KEY_BYTES = 1024
MAX_BUCKET_BYTES = 63
#: the most entries one listing answers (S3's limit); 0 asks for this many
MAX_LIST_ENTRIES = 1000
#: part numbers of a multipart upload (S3's range)
MAX_PART_NUMBER = 10_000
#: the longest validity of a signed URL (S3's limit for SigV4), in seconds
MAX_SIGN_SECONDS = 7 * 24 * 3600
#: the canned ACLs of S3 that apply to objects
CANNED_ACLS = (
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
)


@dataclass(frozen=True)
class ObjectRef:
    """An object (or a bucket, with ``key`` "") a request names, with the request fields naming it."""

    bucket: str
    key: str = ""
    version_id: str = ""
    bucket_field: str = "bucket"
    key_field: str = "key"
    version_field: str = "version_id"


@dataclass(frozen=True)
class ObjectInfo:
    """An object's attributes: size in bytes, etag, last modification (UTC), user metadata."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_type: str = ""
    version_id: str = ""
    storage_class: str = ""
    tag_count: int = 0
    cache_control: str = ""
    content_disposition: str = ""
    content_encoding: str = ""


@dataclass(frozen=True)
class WriteOptions:
    """How a new object is written (PutObject, CreateMultipartUpload, AppendObject)."""

    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    acl: str = ""
    content_type: str = ""
    cache_control: str = ""
    content_disposition: str = ""
    content_encoding: str = ""
    storage_class: str = ""
    expires: datetime | None = None


@dataclass(frozen=True)
class ByteRange:
    """Bytes ``start`` .. ``end`` (inclusive; ``end`` None: to the end) of an object."""

    start: int
    end: int | None = None


@dataclass(frozen=True)
class Written:
    """What a write answers: the new object's etag and version ("" without versioning)."""

    etag: str = ""
    version_id: str = ""
    last_modified: datetime | None = None


@dataclass(frozen=True)
class Deleted:
    """One deleted object (or version), as DeleteObject(s) answer it."""

    key: str
    version_id: str = ""
    delete_marker: bool = False
    delete_marker_version_id: str = ""


@dataclass(frozen=True)
class ObjectPage:
    """One page of ListObjects: objects in key order, the prefixes rolled up by the delimiter, and
    ``next_marker`` (the last key or prefix of the page) when ``is_truncated``."""

    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_marker: str


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object, or a delete marker (``is_delete_marker``)."""

    key: str
    version_id: str
    is_latest: bool
    last_modified: datetime
    size: int = 0
    etag: str = ""
    storage_class: str = ""
    is_delete_marker: bool = False


@dataclass(frozen=True)
class VersionPage:
    versions: list[ObjectVersion]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str
    next_version_id_marker: str


@dataclass(frozen=True)
class Upload:
    """A multipart upload in progress."""

    key: str
    upload_id: str
    initiated: datetime
    storage_class: str = ""


@dataclass(frozen=True)
class UploadPage:
    uploads: list[Upload]
    common_prefixes: list[str]
    is_truncated: bool
    next_key_marker: str
    next_upload_id_marker: str


@dataclass(frozen=True)
class Part:
    """An uploaded part of a multipart upload."""

    number: int
    etag: str
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class PartPage:
    parts: list[Part]
    is_truncated: bool
    next_part_number_marker: int


@dataclass(frozen=True)
class Listing:
    """What a listing asks for: keys starting with ``prefix``, after ``marker`` (key order), rolled up
    at ``delimiter`` ("" for none), at most ``limit`` (1 .. MAX_LIST_ENTRIES) entries."""

    prefix: str = ""
    delimiter: str = ""
    marker: str = ""
    limit: int = MAX_LIST_ENTRIES
    secondary_marker: str = ""  # a version id or upload id marker


def check_bucket(bucket: str, field: str) -> str:
    """``bucket`` if it can name a bucket (non-empty, at most MAX_BUCKET_BYTES, no ``/`` or NUL)."""
    if not bucket:
        raise InvalidArgument(field, "is empty; name the bucket")
    if len(bucket.encode()) > MAX_BUCKET_BYTES:
        raise InvalidArgument(field, f"is over {MAX_BUCKET_BYTES} bytes")
    if "/" in bucket or "\x00" in bucket or not bucket.isprintable():
        raise InvalidArgument(field, f"{bucket!r} cannot name a bucket (no '/', NUL or control characters)")
    return bucket


def check_key(key: str, field: str) -> str:
    """``key`` if it can name an object (non-empty, at most MAX_KEY_BYTES, no NUL)."""
    if not key:
        raise InvalidArgument(field, "is empty; name the object")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(field, f"is over {MAX_KEY_BYTES} bytes")
    if "\x00" in key:
        raise InvalidArgument(field, "must not contain NUL")
    return key


def roll_up(keys: Sequence[str], listing: Listing) -> tuple[list[str], list[str], bool, str]:
    """S3's delimiter roll-up of ``keys`` (sorted, all after the marker and under the prefix): the keys
    and the common prefixes of one page, whether more follow, and the page's last entry."""
    objects: list[str] = []
    prefixes: list[str] = []
    last = ""
    for key in keys:
        entry = key
        if listing.delimiter:
            cut = key.find(listing.delimiter, len(listing.prefix))
            if cut >= 0:
                entry = key[: cut + len(listing.delimiter)]
                if (prefixes and prefixes[-1] == entry) or entry <= listing.marker:
                    continue
        if len(objects) + len(prefixes) == listing.limit:
            return objects, prefixes, True, last
        (prefixes if entry != key else objects).append(entry)
        last = entry
    return objects, prefixes, False, last


class ObjectStore(Component):
    """Buckets of objects. Core operations are abstract; every other one answers FeatureNotSupported
    naming the RPC and the store's type until a store overrides it."""

    @property
    def chunk_size(self) -> int:
        """The most bytes one chunk of :meth:`get` holds."""
        return int(self.metadata.get("chunkSize") or CHUNK_SIZE.default)

    def unsupported(self, rpc: str) -> FeatureNotSupported:
        """The error of an RPC this store cannot serve: UNIMPLEMENTED naming it and the store's type."""
        return FeatureNotSupported(self.name, f"{rpc} (the {self.spec.type} object store cannot)")

    def missing(self, ref: ObjectRef, what: str = "object") -> ObjectNotFound:
        """NOT_FOUND of the bucket, object (``key``) or version ``ref`` names."""
        if what == "bucket":
            return ObjectNotFound(ref.bucket_field, self.name, "bucket", ref.bucket)
        if what == "version":
            return ObjectNotFound(ref.version_field, self.name, "version", ref.version_id, f"of {ref.key!r}")
        return ObjectNotFound(ref.key_field, self.name, "object", ref.key, f"in bucket {ref.bucket!r}")

    # -- core ------------------------------------------------------------------------------------

    async def put(self, ref: ObjectRef, chunks: AsyncIterator[bytes], options: WriteOptions) -> Written:
        """Store the object from ``chunks``: whole, or (on error or cancellation) not at all."""
        raise self.unsupported("PutObject")

    async def get(self, ref: ObjectRef, byte_range: ByteRange | None) -> tuple[ObjectInfo, AsyncGenerator[bytes, None]]:
        """The object's attributes and its contents (or ``byte_range`` of them) in chunks of at most
        :attr:`chunk_size`; a missing bucket or object raises here, before any chunk."""
        raise self.unsupported("GetObject")

    async def head(self, ref: ObjectRef) -> ObjectInfo:
        raise self.unsupported("HeadObject")

    async def exists(self, ref: ObjectRef) -> bool:
        """Whether the object exists; a missing bucket is ObjectNotFound."""
        try:
            await self.head(ref)
        except ObjectNotFound as error:
            if error.metadata.get("field") == ref.bucket_field:
                raise
            return False
        return True

    async def delete(self, ref: ObjectRef) -> Deleted:
        """Remove the object (S3's way: a missing key is no error, a missing bucket is)."""
        raise self.unsupported("DeleteObject")

    async def delete_many(self, bucket: str, refs: Sequence[ObjectRef]) -> list[Deleted]:
        return [await self.delete(ref) for ref in refs]

    async def copy(
        self, target: ObjectRef, source: ObjectRef, metadata: Mapping[str, str] | None, tags: Mapping[str, str] | None
    ) -> Written:
        """Copy ``source`` to ``target``; ``metadata`` None keeps the source's (else replaces it),
        ``tags`` None keeps the source's tags."""
        raise self.unsupported("CopyObject")

    async def list(self, bucket: ObjectRef, listing: Listing) -> ObjectPage:
        raise self.unsupported("ListObjects")

    # -- optional --------------------------------------------------------------------------------

    async def put_tags(self, ref: ObjectRef, tags: Mapping[str, str]) -> str:
        """Replace the object's tags; answers the version tagged."""
        raise self.unsupported("PutObjectTagging")

    async def get_tags(self, ref: ObjectRef) -> dict[str, str]:
        raise self.unsupported("GetObjectTagging")

    async def delete_tags(self, ref: ObjectRef) -> str:
        raise self.unsupported("DeleteObjectTagging")

    async def put_acl(self, ref: ObjectRef, acl: str) -> None:
        raise self.unsupported("PutObjectCannedAcl")

    async def get_acl(self, ref: ObjectRef) -> str:
        """The object's canned ACL ("" when its grants match none)."""
        raise self.unsupported("GetObjectCannedAcl")

    async def create_upload(self, ref: ObjectRef, options: WriteOptions) -> str:
        """Start a multipart upload; answers its id."""
        raise self.unsupported("CreateMultipartUpload")

    async def upload_part(self, ref: ObjectRef, upload_id: str, number: int, chunks: AsyncIterator[bytes]) -> str:
        """Store part ``number`` (replacing one of that number); answers its etag."""
        raise self.unsupported("UploadPart")

    async def upload_part_copy(
        self, ref: ObjectRef, upload_id: str, number: int, source: ObjectRef, byte_range: ByteRange | None
    ) -> Written:
        raise self.unsupported("UploadPartCopy")

    async def complete_upload(self, ref: ObjectRef, upload_id: str, parts: Sequence[tuple[int, str]]) -> Written:
        """Join ``parts`` ((number, etag), ascending) into the object."""
        raise self.unsupported("CompleteMultipartUpload")

    async def abort_upload(self, ref: ObjectRef, upload_id: str) -> None:
        raise self.unsupported("AbortMultipartUpload")

    async def list_uploads(self, bucket: ObjectRef, listing: Listing) -> UploadPage:
        raise self.unsupported("ListMultipartUploads")

    async def list_parts(self, ref: ObjectRef, upload_id: str, marker: int, limit: int) -> PartPage:
        raise self.unsupported("ListParts")

    async def list_versions(self, bucket: ObjectRef, listing: Listing) -> VersionPage:
        raise self.unsupported("ListObjectVersions")

    async def sign_url(self, ref: ObjectRef, method: str, seconds: int) -> str:
        """A URL that lets a plain HTTP ``method`` (GET or PUT) reach the object for ``seconds``."""
        raise self.unsupported("SignURL")

    async def append(self, ref: ObjectRef, position: int, chunks: AsyncIterator[bytes], options: WriteOptions) -> int:
        """Append to the object at ``position`` (its current size); answers the next position."""
        raise self.unsupported("AppendObject")

    async def restore(self, ref: ObjectRef, days: int, tier: str) -> None:
        raise self.unsupported("RestoreObject")

    async def set_bandwidth(self, direction: str, bits_per_second: int) -> None:
        """Limit ``direction`` ("download" or "upload") to ``bits_per_second``."""
        rpc = "UpdateDownloadBandwidthRateLimit" if direction == "download" else "UpdateUploadBandwidthRateLimit"
        raise self.unsupported(rpc)

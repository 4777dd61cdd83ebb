"""Objects in a local directory: each bucket a directory below ``rootPath``, each object a file below
its bucket, kept by the File API's ``local`` store (one per bucket), so keys leading out of the bucket
(``..``, absolute keys, symlinks) or to anything but a regular file are refused with INVALID_ARGUMENT
naming the key's field, and writes are atomic (temporary file, then rename).

Buckets are the directories directly below the root whose names are S3 bucket names; ``buckets`` lists
those created at start. An object's user metadata is the file store's sidecar; its other attributes
(etag: the MD5 of its bytes, tags, canned ACL, content headers) are kept in a second sidecar,
``<bucket>/.layotto/oss/<sha256 of key>.json``, written atomically right after the data. Multipart
uploads keep their parts under ``<rootPath>/.layotto/uploads/<upload id>/`` until completed (the parts
joined into the object atomically) or aborted. Not served (UNIMPLEMENTED naming the RPC and `local`):
versions, ListObjectVersions, SignURL, AppendObject, RestoreObject, bandwidth limits.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layotto.server.components.base import CHUNK_SIZE, ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.file import FileInfo
from layotto.server.components.file.local import RESERVED, LocalFileStore, local_root
from layotto.server.components.oss import (
    ByteRange,
    Deleted,
    Listing,
    ObjectInfo,
    ObjectPage,
    ObjectRef,
    ObjectStore,
    Part,
    PartPage,
    Upload,
    UploadPage,
    WriteOptions,
    Written,
    roll_up,
)
from layotto.server.errors import BackendError, FileNotFound, InvalidArgument, ObjectNotFound

#: S3's bucket names: 3 .. 63 lower-case letters, digits, dots and hyphens, starting and ending alike
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: more keys than this after a listing's marker: the page is cut here (a local store is not for millions)
MAX_SCANNED = 1_000_000
UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


def _is_bucket_name(name: str) -> bool:
    return bool(BUCKET_NAME.fullmatch(name)) and ".." not in name


def _make_buckets(raw_root: str, data_dir: Path, names: list[str], where: str) -> Path:
    root = local_root(raw_root, data_dir, where)
    try:
        (root / RESERVED / "uploads").mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / name).mkdir(exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{where}: cannot create under {root}: {error.strerror or error}") from None
    return root


def _check_path(key: str, field: str) -> None:
    """InvalidArgument naming ``field`` for a key with an empty, ``.`` or ``..`` segment: as a path it
    would name the file of another key (``a//b`` and ``a/./b`` are ``a/b``), so two S3 keys would share
    one object."""
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise InvalidArgument(
            field, f"{key[:200]!r}: a local store's key is a path, without empty, '.' or '..' segments"
        )


async def _hashed(chunks: AsyncIterator[bytes], digest: Any) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk


class LocalObjectStore(ObjectStore):
    spec = ComponentSpec(
        type="local",
        building_block="oss",
        description="Objects in a local directory: a bucket is a directory below `rootPath`, an object a file "
        "below it, kept by the File API's local store (keys leading out of the bucket are refused, writes are "
        "atomic). Tags, canned ACLs and multipart uploads are served; versions, ListObjectVersions, SignURL, "
        "AppendObject, RestoreObject and bandwidth limits answer UNIMPLEMENTED.",
        metadata=(
            MetadataField(
                "rootPath",
                "Directory holding the buckets (created if missing); a relative path is below the runtime's data_dir.",
                required=True,
                example="/var/oss",
            ),
            MetadataField("buckets", "Comma-separated names of buckets created at start (S3 bucket names)."),
            CHUNK_SIZE,
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._root = Path()
        self._context: ComponentContext | None = None
        self._buckets: dict[str, LocalFileStore] = {}
        # a part's etag file and its data file change together under this lock, and are read under it:
        # concurrent writers of one part number would otherwise leave one's etag beside the other's bytes
        self._parts_lock = asyncio.Lock()

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        where = f"oss.{self.name}.metadata"
        names = [name.strip() for name in str(metadata["buckets"] or "").split(",") if name.strip()]
        for name in names:
            if not _is_bucket_name(name):
                raise ConfigError(f"{where}.buckets: {name!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
        self._context = context
        root = str(metadata["rootPath"])
        self._root = await asyncio.to_thread(_make_buckets, root, context.data_dir, names, f"{where}.rootPath")

    # -- buckets and sidecars --------------------------------------------------------------------

    async def _bucket(self, ref: ObjectRef) -> LocalFileStore:
        """The file store of the bucket ``ref`` names; ObjectNotFound when it does not exist,
        InvalidArgument naming the key's field for a key that is not one path (see :func:`_check_path`)."""
        if not _is_bucket_name(ref.bucket):
            raise InvalidArgument(ref.bucket_field, f"{ref.bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
        if ref.key:
            _check_path(ref.key, ref.key_field)
        if ref.version_id:
            raise self.unsupported("object versions (version_id)")
        store = self._buckets.get(ref.bucket)
        if store is not None:
            return store
        if not await asyncio.to_thread((self._root / ref.bucket).is_dir):
            raise self.missing(ref, "bucket")
        store = LocalFileStore(self.name)
        store.metadata = {"chunkSize": self.chunk_size}
        assert self._context is not None
        await store.init({"rootPath": str(self._root / ref.bucket)}, self._context)
        await asyncio.to_thread((self._root / ref.bucket / RESERVED / "oss").mkdir, exist_ok=True)
        return self._buckets.setdefault(ref.bucket, store)

    def _attrs_path(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return self._root / bucket / RESERVED / "oss" / f"{digest}.json"

    def _read_attrs(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            attrs = json.loads(self._attrs_path(bucket, key).read_text())
        except (OSError, ValueError):
            return {}  # an object put there by other means
        return attrs if isinstance(attrs, dict) else {}

    def _write_attrs(self, bucket: str, key: str, attrs: Mapping[str, Any]) -> None:
        path = self._attrs_path(bucket, key)
        temp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        try:
            temp.write_text(json.dumps(attrs))
            os.replace(temp, path)
        except OSError as error:
            temp.unlink(missing_ok=True)
            raise BackendError(self.name, f"cannot store the attributes of {key!r}: {error.strerror}") from None

    async def _update_attrs(self, ref: ObjectRef, **changes: Any) -> None:
        await self.head(ref)
        store = await self._bucket(ref)

        def update() -> None:  # read and written while no put commits: a put's etag is never undone
            attrs = self._read_attrs(ref.bucket, ref.key)
            self._write_attrs(ref.bucket, ref.key, {**attrs, **changes})

        await store.paired_update(update)

    @contextlib.contextmanager
    def _not_found(self, ref: ObjectRef) -> Any:
        try:
            yield
        except FileNotFound:
            raise self.missing(ref) from None

    def _info(self, ref: ObjectRef, file: FileInfo, attrs: Mapping[str, Any]) -> ObjectInfo:
        return ObjectInfo(
            key=ref.key,
            size=file.size,
            etag=str(attrs.get("etag") or f'"{file.size:x}-{int(file.last_modified.timestamp()):x}"'),
            last_modified=file.last_modified,
            metadata=file.metadata,
            content_type=str(attrs.get("content_type", "")),
            storage_class="STANDARD",
            tag_count=len(attrs.get("tags") or {}),
            cache_control=str(attrs.get("cache_control", "")),
            content_disposition=str(attrs.get("content_disposition", "")),
            content_encoding=str(attrs.get("content_encoding", "")),
        )

    # -- objects ---------------------------------------------------------------------------------

    async def _write(
        self, ref: ObjectRef, chunks: AsyncIterator[bytes], metadata: Mapping[str, str], attrs: Mapping[str, Any]
    ) -> Written:
        store = await self._bucket(ref)
        digest = hashlib.md5(usedforsecurity=False)

        def write_attrs() -> None:  # with the data, in one step: concurrent writers leave one's of each
            self._write_attrs(ref.bucket, ref.key, {**attrs, "etag": f'"{digest.hexdigest()}"'})

        await store.put(ref.key, _hashed(chunks, digest), metadata, ref.key_field, paired=write_attrs)
        return Written(f'"{digest.hexdigest()}"', "", datetime.now(UTC))

    async def put(self, ref: ObjectRef, chunks: AsyncIterator[bytes], options: WriteOptions) -> Written:
        attrs = {
            "tags": dict(options.tags),
            "acl": options.acl or "private",
            "content_type": options.content_type,
            "cache_control": options.cache_control,
            "content_disposition": options.content_disposition,
            "content_encoding": options.content_encoding,
        }
        return await self._write(ref, chunks, options.metadata, attrs)

    async def head(self, ref: ObjectRef) -> ObjectInfo:
        store = await self._bucket(ref)
        with self._not_found(ref):
            file = await store.stat(ref.key, ref.key_field)
        return self._info(ref, file, await asyncio.to_thread(self._read_attrs, ref.bucket, ref.key))

    async def get(self, ref: ObjectRef, byte_range: ByteRange | None) -> tuple[ObjectInfo, AsyncGenerator[bytes, None]]:
        info = await self.head(ref)
        store = await self._bucket(ref)
        start, length = 0, None
        if byte_range is not None:
            if byte_range.start >= info.size:
                raise InvalidArgument("start", f"is beyond the object's end ({info.size} bytes)")
            start = byte_range.start
            end = info.size - 1 if byte_range.end is None else min(byte_range.end, info.size - 1)
            length = end - start + 1
        with self._not_found(ref):
            chunks = await store.get(ref.key, ref.key_field, start, length)
        return info, chunks

    async def delete(self, ref: ObjectRef) -> Deleted:
        store = await self._bucket(ref)
        with contextlib.suppress(FileNotFound):  # S3's way: deleting a missing key succeeds
            await store.delete(ref.key, ref.key_field)
        await asyncio.to_thread(self._attrs_path(ref.bucket, ref.key).unlink, missing_ok=True)
        return Deleted(ref.key)

    async def copy(
        self, target: ObjectRef, source: ObjectRef, metadata: Mapping[str, str] | None, tags: Mapping[str, str] | None
    ) -> Written:
        info, chunks = await self.get(source, None)
        attrs = await asyncio.to_thread(self._read_attrs, source.bucket, source.key)
        if tags is not None:
            attrs["tags"] = dict(tags)
        async with contextlib.aclosing(chunks):
            return await self._write(target, chunks, info.metadata if metadata is None else metadata, attrs)

    async def list(self, bucket: ObjectRef, listing: Listing) -> ObjectPage:
        store = await self._bucket(bucket)
        page = await store.list(listing.prefix, MAX_SCANNED, listing.marker)
        files = {file.name: file for file in page.files}
        keys, prefixes, truncated, last = roll_up(list(files), listing)
        objects = []
        for key in keys:
            attrs = await asyncio.to_thread(self._read_attrs, bucket.bucket, key)
            objects.append(self._info(ObjectRef(bucket.bucket, key), files[key], attrs))
        return ObjectPage(objects, prefixes, truncated or page.is_truncated, last if truncated else "")

    # -- tags and ACLs ---------------------------------------------------------------------------

    async def put_tags(self, ref: ObjectRef, tags: Mapping[str, str]) -> str:
        await self._update_attrs(ref, tags=dict(tags))
        return ""

    async def get_tags(self, ref: ObjectRef) -> dict[str, str]:
        await self.head(ref)
        attrs = await asyncio.to_thread(self._read_attrs, ref.bucket, ref.key)
        return {str(k): str(v) for k, v in (attrs.get("tags") or {}).items()}

    async def delete_tags(self, ref: ObjectRef) -> str:
        await self._update_attrs(ref, tags={})
        return ""

    async def put_acl(self, ref: ObjectRef, acl: str) -> None:
        await self._update_attrs(ref, acl=acl)

    async def get_acl(self, ref: ObjectRef) -> str:
        await self.head(ref)
        attrs = await asyncio.to_thread(self._read_attrs, ref.bucket, ref.key)
        return str(attrs.get("acl") or "private")

    # -- multipart uploads -----------------------------------------------------------------------

    def _upload_dir(self, upload_id: str) -> Path:
        return self._root / RESERVED / "uploads" / upload_id

    def _upload(self, ref: ObjectRef, upload_id: str) -> tuple[Path, dict[str, Any]]:
        """The directory and record of an upload of ``ref``; ObjectNotFound naming ``upload_id`` otherwise."""
        directory = self._upload_dir(upload_id)
        try:
            record = json.loads((directory / "upload.json").read_text()) if UPLOAD_ID.fullmatch(upload_id) else None
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or (record.get("bucket"), record.get("key")) != (ref.bucket, ref.key):
            raise ObjectNotFound("upload_id", self.name, "multipart upload", upload_id, f"of {ref.key!r}")
        return directory, record

    async def create_upload(self, ref: ObjectRef, options: WriteOptions) -> str:
        store = await self._bucket(ref)
        await asyncio.to_thread(store.resolve, ref.key, ref.key_field)  # refuse a bad key now, not at the end
        upload_id = uuid.uuid4().hex
        record = {
            "bucket": ref.bucket,
            "key": ref.key,
            "initiated": datetime.now(UTC).timestamp(),
            "metadata": dict(options.metadata),
            "attrs": {
                "tags": dict(options.tags),
                "acl": options.acl or "private",
                "content_type": options.content_type,
                "cache_control": options.cache_control,
                "content_disposition": options.content_disposition,
                "content_encoding": options.content_encoding,
            },
        }

        def create() -> None:
            directory = self._upload_dir(upload_id)
            directory.mkdir()
            (directory / "upload.json").write_text(json.dumps(record))

        await asyncio.to_thread(create)
        return upload_id

    async def _write_part(self, directory: Path, number: int, chunks: AsyncIterator[bytes]) -> str:
        temp = directory / f"{number}.{uuid.uuid4().hex}.tmp"
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with await asyncio.to_thread(open, temp, "wb") as out:
                async for chunk in chunks:
                    digest.update(chunk)
                    await asyncio.to_thread(out.write, chunk)
            etag = f'"{digest.hexdigest()}"'
            async with self._parts_lock:
                await asyncio.to_thread((directory / f"{number}.etag").write_text, etag)
                await asyncio.to_thread(os.replace, temp, directory / f"{number}.part")
        finally:
            await asyncio.to_thread(temp.unlink, missing_ok=True)
        return etag

    @contextlib.contextmanager
    def _upload_gone(self, ref: ObjectRef, upload_id: str) -> Any:
        """An upload's directory removed under a running call (aborted, completed): ObjectNotFound."""
        try:
            yield
        except FileNotFoundError:
            raise ObjectNotFound("upload_id", self.name, "multipart upload", upload_id, f"of {ref.key!r}") from None

    async def upload_part(self, ref: ObjectRef, upload_id: str, number: int, chunks: AsyncIterator[bytes]) -> str:
        await self._bucket(ref)
        directory, _ = await asyncio.to_thread(self._upload, ref, upload_id)
        with self._upload_gone(ref, upload_id):
            return await self._write_part(directory, number, chunks)

    async def upload_part_copy(
        self, ref: ObjectRef, upload_id: str, number: int, source: ObjectRef, byte_range: ByteRange | None
    ) -> Written:
        await self._bucket(ref)
        directory, _ = await asyncio.to_thread(self._upload, ref, upload_id)
        _, chunks = await self.get(source, byte_range)
        async with contextlib.aclosing(chunks):
            with self._upload_gone(ref, upload_id):
                etag = await self._write_part(directory, number, chunks)
        return Written(etag, "", datetime.now(UTC))

    async def _listed_parts(self, directory: Path) -> builtins.list[Part]:
        async with self._parts_lock:
            return await asyncio.to_thread(self._parts, directory)

    def _parts(self, directory: Path) -> builtins.list[Part]:
        parts = []
        for entry in directory.glob("*.part"):
            number = int(entry.stem)
            info = entry.stat()
            etag = (directory / f"{number}.etag").read_text()
            parts.append(Part(number, etag, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC)))
        return sorted(parts, key=lambda part: part.number)

    async def complete_upload(self, ref: ObjectRef, upload_id: str, parts: Sequence[tuple[int, str]]) -> Written:
        await self._bucket(ref)
        directory, record = await asyncio.to_thread(self._upload, ref, upload_id)
        uploaded = {part.number: part for part in await self._listed_parts(directory)}
        previous = 0
        for i, (number, etag) in enumerate(parts):
            field = f"multipart_upload.parts[{i}]"
            if number <= previous:
                raise InvalidArgument(f"{field}.part_number", "parts must be listed in ascending order")
            previous = number
            if number not in uploaded or uploaded[number].etag.strip('"') != etag.strip('"'):
                raise InvalidArgument(f"{field}.etag", f"part {number} with etag {etag!r} was not uploaded")
        written = await self._write(
            ref, self._joined(directory, [n for n, _ in parts]), record["metadata"], record["attrs"]
        )
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)
        return written

    async def _joined(self, directory: Path, numbers: builtins.list[int]) -> AsyncIterator[bytes]:
        for number in numbers:
            with await asyncio.to_thread(open, directory / f"{number}.part", "rb") as part:
                while chunk := await asyncio.to_thread(part.read, self.chunk_size):
                    yield chunk

    async def abort_upload(self, ref: ObjectRef, upload_id: str) -> None:
        await self._bucket(ref)
        directory, _ = await asyncio.to_thread(self._upload, ref, upload_id)
        await asyncio.to_thread(shutil.rmtree, directory, ignore_errors=True)

    def _uploads(self, bucket: str, prefix: str) -> builtins.list[Upload]:
        found = []
        for directory in (self._root / RESERVED / "uploads").iterdir():
            with contextlib.suppress(OSError, ValueError):
                record = json.loads((directory / "upload.json").read_text())
                if record["bucket"] == bucket and str(record["key"]).startswith(prefix):
                    initiated = datetime.fromtimestamp(float(record["initiated"]), UTC)
                    found.append(Upload(str(record["key"]), directory.name, initiated, "STANDARD"))
        return sorted(found, key=lambda upload: (upload.key, upload.initiated, upload.upload_id))

    async def list_uploads(self, bucket: ObjectRef, listing: Listing) -> UploadPage:
        await self._bucket(bucket)
        uploads = await asyncio.to_thread(self._uploads, bucket.bucket, listing.prefix)
        if listing.marker:
            after = [u for u in uploads if u.key > listing.marker]
            if listing.secondary_marker:
                same = [u for u in uploads if u.key == listing.marker]
                ids = [u.upload_id for u in same]
                cut = ids.index(listing.secondary_marker) + 1 if listing.secondary_marker in ids else len(same)
                after = same[cut:] + after
            uploads = after
        page = uploads[: listing.limit]
        truncated = len(uploads) > listing.limit
        last = page[-1] if page and truncated else None
        return UploadPage(page, [], truncated, last.key if last else "", last.upload_id if last else "")

    async def list_parts(self, ref: ObjectRef, upload_id: str, marker: int, limit: int) -> PartPage:
        await self._bucket(ref)
        directory, _ = await asyncio.to_thread(self._upload, ref, upload_id)
        parts = [part for part in await self._listed_parts(directory) if part.number > marker]
        page = parts[:limit]
        truncated = len(parts) > limit
        return PartPage(page, truncated, page[-1].number if truncated else 0)

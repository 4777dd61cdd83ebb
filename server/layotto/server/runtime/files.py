"""The File API's semantics (Layotto's PutFile, GetFile, ListFile, GetFileMeta, DelFile), free of any wire format.

Requests name a file store (``store_name``) and a file (``name``); both are checked here, with the
request field named in the error, before a store is asked (:func:`~layotto.server.components.file.check_name`).
ListFile pages in name order: ``marker`` is the last name of the previous page ("" for the first),
the answer's ``marker`` the last name of this page, and ``is_truncated`` says whether more files follow.
``page_size`` 0 means :data:`~layotto.server.components.file.MAX_PAGE_SIZE`; larger values are
served as that; negative ones are refused, and so is a ``marker`` over MAX_NAME_BYTES (no name follows it).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass

from layotto.server.components.file import (
    MAX_NAME_BYTES,
    MAX_PAGE_SIZE,
    FileInfo,
    FilePage,
    FileStore,
    check_name,
    check_prefix,
)
from layotto.server.components.loader import ComponentSet
from layotto.server.errors import InvalidArgument


@dataclass(frozen=True)
class FileRef:
    """A file a request names, with the request fields that name it (for the errors)."""

    store_name: str
    name: str
    store_field: str = "store_name"
    name_field: str = "name"


class FileService:
    """The runtime's file stores, as the File API uses them."""

    def __init__(self, components: ComponentSet) -> None:
        self._components = components

    def _store(self, name: str, field: str) -> FileStore:
        store = self._components.find("file", name, field)
        assert isinstance(store, FileStore)
        return store

    def _checked(self, ref: FileRef) -> tuple[FileStore, str]:
        store = self._store(ref.store_name, ref.store_field)
        return store, check_name(ref.name, ref.name_field)

    async def put(self, ref: FileRef, chunks: AsyncIterator[bytes], metadata: Mapping[str, str]) -> None:
        """Store the file from ``chunks``: whole, or (on error or cancellation) not at all."""
        store, name = self._checked(ref)
        await store.put(name, chunks, metadata, ref.name_field)

    async def get(self, ref: FileRef) -> AsyncGenerator[bytes, None]:
        """The file's chunks; FileNotFound (or a refused name) is raised before any chunk."""
        store, name = self._checked(ref)
        return await store.get(name, ref.name_field)

    async def stat(self, ref: FileRef) -> FileInfo:
        store, name = self._checked(ref)
        return await store.stat(name, ref.name_field)

    async def delete(self, ref: FileRef) -> None:
        store, name = self._checked(ref)
        await store.delete(name, ref.name_field)

    async def list(self, ref: FileRef, page_size: int, marker: str) -> FilePage:
        """A page of the files whose names start with ``ref.name`` (a prefix, "" for all)."""
        store = self._store(ref.store_name, ref.store_field)
        prefix = check_prefix(ref.name, ref.name_field)
        if page_size < 0:
            raise InvalidArgument("page_size", f"must not be negative, got {page_size}")
        if "\x00" in marker:
            raise InvalidArgument("marker", "must not contain NUL")
        if len(marker.encode()) > MAX_NAME_BYTES:  # no name follows it; S3 would refuse the request line
            raise InvalidArgument("marker", f"is over {MAX_NAME_BYTES} bytes, longer than any file name")
        return await store.list(prefix, min(page_size or MAX_PAGE_SIZE, MAX_PAGE_SIZE), marker)

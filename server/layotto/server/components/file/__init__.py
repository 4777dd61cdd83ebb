"""The file building block (Layotto's File API): file stores keep named files of any size.

A file's ``name`` is a relative, ``/``-separated path (``reports/2026/q1.csv``): never empty,
never absolute, no empty, ``.`` or ``..`` segment, no NUL, at most :data:`MAX_NAME_BYTES` UTF-8
bytes (:func:`check_name`, applied by the runtime layer before a store is asked). Stores move
the contents in chunks (an async iterator of ``bytes`` each way), so no file is ever held whole
in memory; a store's chunks are at most its ``chunkSize`` metadata.

Errors: :class:`~layotto.server.errors.FileNotFound` for a missing file,
:class:`~layotto.server.errors.InvalidArgument` naming the field for a name a store refuses,
:class:`~layotto.server.errors.BackendError` / ``BackendUnavailable`` for the backend's failures.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from layotto.server.components.base import CHUNK_SIZE, Component
from layotto.server.errors import InvalidArgument

#: the longest file name, in UTF-8 bytes (S3's limit on object keys)
MAX_NAME_BYTES = 1024
#: the most files one ListFile page holds (S3's limit); a larger page_size is served as this
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class FileInfo:
    """A stored file: its name, size in bytes, last modification (UTC) and the metadata it was put with."""

    name: str
    size: int
    last_modified: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def last_modified_text(self) -> str:
        """``last_modified`` as RFC 3339 in UTC, to the second (``2026-11-30T00:12:03Z``)."""
        return self.last_modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FilePage:
    """One page of a listing: files in name order, the ``marker`` to ask for the next page with (the
    last name of this page, "" when it is empty), and whether files remain after it."""

    files: list[FileInfo]
    marker: str
    is_truncated: bool


def _segments_problem(name: str, *, prefix: bool) -> str | None:
    if "\x00" in name:
        return "must not contain NUL"
    if name.startswith("/"):
        return "must be relative, not an absolute path"
    segments = name.split("/")
    if prefix and segments[-1] == "":
        segments = segments[:-1]  # a prefix may end with "/" (a directory)
    for segment in segments:
        if segment in ("", ".", ".."):
            return f"must not contain an empty, '.' or '..' path segment ({name!r})"
    return None


def check_name(name: str, field: str) -> str:
    """``name`` if it is a valid file name, else InvalidArgument naming ``field``."""
    if not name:
        raise InvalidArgument(field, "is empty; name the file")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(field, f"is over {MAX_NAME_BYTES} bytes")
    problem = _segments_problem(name, prefix=False)
    if problem:
        raise InvalidArgument(field, problem)
    return name


def check_prefix(prefix: str, field: str) -> str:
    """``prefix`` (a ListFile's name: "" lists everything) if valid, else InvalidArgument naming ``field``."""
    if not prefix:
        return prefix
    if len(prefix.encode()) > MAX_NAME_BYTES:
        raise InvalidArgument(field, f"is over {MAX_NAME_BYTES} bytes")
    problem = _segments_problem(prefix, prefix=True)
    if problem:
        raise InvalidArgument(field, problem)
    return prefix


class FileStore(Component):
    """Named files. Every method takes a name already checked by :func:`check_name` (``field``
    names the request field holding it, for the errors); a store may refuse more names."""

    @property
    def chunk_size(self) -> int:
        """The most bytes one chunk of :meth:`get` holds."""
        return int(self.metadata.get("chunkSize") or CHUNK_SIZE.default)

    @abstractmethod
    async def put(self, name: str, chunks: AsyncIterator[bytes], metadata: Mapping[str, str], field: str) -> None:
        """Store the file from ``chunks``; it appears whole, or (on any error or cancellation) not at all,
        replacing a file of that name."""

    @abstractmethod
    async def get(self, name: str, field: str) -> AsyncGenerator[bytes, None]:
        """The file's contents in chunks of at most :attr:`chunk_size` bytes. FileNotFound is raised by
        this call, before the iterator is returned, so a caller can answer it before streaming."""

    @abstractmethod
    async def list(self, prefix: str, page_size: int, marker: str) -> FilePage:
        """Files whose names start with ``prefix``, after ``marker`` in name order (byte order of
        UTF-8), at most ``page_size`` (1 .. MAX_PAGE_SIZE) of them."""

    @abstractmethod
    async def stat(self, name: str, field: str) -> FileInfo:
        """The file's size, modification time and metadata; FileNotFound when missing."""

    @abstractmethod
    async def delete(self, name: str, field: str) -> None:
        """Remove the file; FileNotFound when missing."""

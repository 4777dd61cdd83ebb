"""Files in a local directory (``rootPath``), each file's name its path below the root.

Names never lead out of the root: besides what every store refuses (absolute names, ``..``),
a name whose resolved path (symlinks followed) is outside the root, or that names anything but
a regular file (a directory, a FIFO, a device), is refused with INVALID_ARGUMENT naming the
request field. Files are opened with ``O_NOFOLLOW`` and checked with ``fstat`` after opening,
so a FIFO cannot block a read.

Writes are atomic: the data goes to a temporary file under ``<root>/.layotto/tmp`` and is moved
into place with ``os.replace`` once complete; an error or a cancelled stream removes the temporary
file, so a partial file is never visible. The metadata given with PutFile is kept in a sidecar JSON
file, ``<root>/.layotto/meta/<sha256 of name>.json``, written (atomically too) before the data is
moved into place, the two renames made together (as are a GetFileMeta's and a DelFile's reads of the
pair), so of concurrent writers of one name the last leaves its data and its metadata. Temporary
files older than a day (a runtime killed mid-put) are removed at start.
``.layotto`` is reserved: names in it are refused, and listings skip it, as they skip files whose
names are not UTF-8 (put there by other means).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from layotto.server.components.base import CHUNK_SIZE, ComponentContext, ComponentSpec, ConfigError, MetadataField
from layotto.server.components.file import FileInfo, FilePage, FileStore
from layotto.server.errors import BackendError, FileNotFound, InvalidArgument

RESERVED = ".layotto"
#: a temporary file untouched this long was left by a runtime killed mid-put, and is removed at start
STALE_TEMP_SECONDS = 24 * 3600
T = TypeVar("T")


def local_root(raw: str, data_dir: Path, where: str) -> Path:
    """The directory ``raw`` names (a relative one below ``data_dir``), absolute; a ConfigError naming
    ``where`` when it is empty or ``data_dir`` itself: there the store would serve, overwrite and
    delete the files of the embedded stores (``state.db``, ``scheduler.db``)."""
    if not raw.strip():
        raise ConfigError(f"{where}: required, a directory (a relative one is below the data directory)")
    root = Path(raw).expanduser()
    root = (root if root.is_absolute() else data_dir / root).resolve()
    if root == data_dir.expanduser().resolve():
        raise ConfigError(
            f"{where}: {raw!r} is the data directory itself, where the embedded stores keep their files;"
            " give the store a directory of its own"
        )
    return root


def _make_root(raw: str, data_dir: Path, where: str) -> Path:
    root = local_root(raw, data_dir, where)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for inner in ("tmp", "meta"):
            (root / RESERVED / inner).mkdir(parents=True, exist_ok=True)
        stale = time.time() - STALE_TEMP_SECONDS
        for entry in (root / RESERVED / "tmp").iterdir():  # left by a runtime that was killed mid-put
            if entry.stat().st_mtime < stale:
                entry.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(f"{where}: cannot create {root}: {error.strerror or error}") from None
    return root.resolve()


class LocalFileStore(FileStore):
    spec = ComponentSpec(
        type="local",
        building_block="file",
        description="Files in a local directory: a file's name is its path below `rootPath`. Names leading out "
        "of the root (`..`, absolute paths, symlinks) or to anything but a regular file are refused; writes are "
        "atomic (temporary file, then rename); PutFile's metadata is kept in sidecar files under "
        "`<rootPath>/.layotto/meta`.",
        metadata=(
            MetadataField(
                "rootPath",
                "Directory holding the files (created if missing); a relative path is below the runtime's data_dir.",
                required=True,
                example="/var/files",
            ),
            CHUNK_SIZE,
        ),
    )

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._root = Path()
        #: held while a file and its sidecar change or are read together, so concurrent writers of one
        #: name never leave one writer's data with another's metadata
        self._pairing = threading.Lock()

    async def init(self, metadata: Mapping[str, Any], context: ComponentContext) -> None:
        where = f"file.{self.name}.metadata.rootPath"
        self._root = await asyncio.to_thread(_make_root, str(metadata["rootPath"]), context.data_dir, where)

    # -- paths ---------------------------------------------------------------------------------

    def _inside(self, path: Path) -> bool:
        return path == self._root or self._root in path.parents

    def _path(self, name: str, field: str) -> Path:
        """The resolved path of a file name, or InvalidArgument when it leads out of the root."""
        if name.split("/", 1)[0] == RESERVED:
            raise InvalidArgument(field, f"{RESERVED!r} is reserved by the file store")
        resolved = Path(os.path.realpath(self._root / name))
        if not self._inside(resolved) or resolved == self._root:
            raise InvalidArgument(field, f"{name!r} leads out of the file store's root")
        if resolved.relative_to(self._root).parts[0] == RESERVED:
            raise InvalidArgument(field, f"{name!r} leads into {RESERVED!r}, reserved by the file store")
        return resolved

    def resolve(self, name: str, field: str) -> Path:
        """The path of file ``name`` below the root (symlinks followed); InvalidArgument naming ``field``
        when it leads out of the root or into the store's reserved directory."""
        return self._path(name, field)

    def _meta_path(self, path: Path) -> Path:
        """The sidecar of a file: named by the hash of its path, so no file name can collide with another's."""
        digest = hashlib.sha256(str(path.relative_to(self._root)).encode()).hexdigest()
        return self._root / RESERVED / "meta" / f"{digest}.json"

    def _open_regular(self, name: str, field: str) -> tuple[int, os.stat_result, Path]:
        path = self._path(name, field)
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # never open a device: opening one may act on it
                raise InvalidArgument(field, f"{name!r} is not a regular file")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):  # a parent that is a file: no such file either
            raise FileNotFound(field, self.name, name) from None
        except OSError as error:
            raise InvalidArgument(field, f"{name!r} cannot be opened: {error.strerror}") from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise InvalidArgument(field, f"{name!r} is not a regular file")
        return fd, info, path

    # -- operations ----------------------------------------------------------------------------

    async def put(
        self,
        name: str,
        chunks: AsyncIterator[bytes],
        metadata: Mapping[str, str],
        field: str,
        *,
        paired: Callable[[], None] | None = None,
    ) -> None:
        """Store ``name`` from ``chunks`` with its user ``metadata``, atomically; ``paired`` (a blocking
        call, e.g. another sidecar's write) runs in the same step as the data's replacement, so
        concurrent writers of ``name`` leave one writer's data, metadata and ``paired`` writes."""
        path = await asyncio.to_thread(self._path, name, field)
        await asyncio.to_thread(_require_no_other_kind, path, name, field)
        temp = self._root / RESERVED / "tmp" / uuid.uuid4().hex
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            async for chunk in chunks:
                await _settled(_write_all, fd, chunk)
            await _settled(functools.partial(self._commit, paired=paired), fd, temp, path, metadata, field)
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
            for leftover in (temp, temp.with_suffix(".meta")):  # both gone already when committed
                with contextlib.suppress(OSError):
                    os.unlink(leftover)

    def _commit(
        self,
        fd: int,
        temp: Path,
        path: Path,
        metadata: Mapping[str, str],
        field: str,
        *,
        paired: Callable[[], None] | None = None,
    ) -> None:
        name = str(path.relative_to(self._root))
        try:
            os.fsync(fd)
            path.parent.mkdir(parents=True, exist_ok=True)
            meta_temp = temp.with_suffix(".meta")
            meta_temp.write_text(json.dumps(dict(metadata)))
            with self._pairing:
                os.replace(meta_temp, self._meta_path(path))
                os.replace(temp, path)
                if paired is not None:
                    paired()
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise InvalidArgument(field, f"{name!r}: a parent of it is a file, or it is a directory") from None
        except OSError as error:
            raise BackendError(self.name, f"cannot store {name!r}: {error.strerror}") from None

    async def paired_update(self, action: Callable[[], None]) -> None:
        """Run the blocking ``action`` in a thread while no put commits: it sees and changes what a
        put's ``paired`` step writes as a whole (before or after that put, never in between)."""

        def locked() -> None:
            with self._pairing:
                action()

        await asyncio.to_thread(locked)

    async def get(
        self, name: str, field: str, offset: int = 0, length: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The file's chunks; ``offset`` and ``length`` (None: to the end) select a byte range of it."""
        fd, _, _ = await asyncio.to_thread(self._open_regular, name, field)
        if offset:
            os.lseek(fd, offset, os.SEEK_SET)
        return self._read(fd, length)

    async def _read(self, fd: int, length: int | None = None) -> AsyncGenerator[bytes, None]:
        left = length
        try:
            while left is None or left > 0:
                wanted = self.chunk_size if left is None else min(self.chunk_size, left)
                chunk = await _settled(os.read, fd, wanted)
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def _stat(self, name: str, field: str) -> FileInfo:
        with self._pairing:
            fd, info, path = self._open_regular(name, field)
            os.close(fd)
            try:
                metadata = json.loads(self._meta_path(path).read_text())
            except (OSError, ValueError):
                metadata = {}  # a file put there by other means
        return FileInfo(name, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC), metadata)

    async def stat(self, name: str, field: str) -> FileInfo:
        return await asyncio.to_thread(self._stat, name, field)

    def _delete(self, name: str, field: str) -> None:
        with self._pairing:
            fd, _, path = self._open_regular(name, field)
            os.close(fd)
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise FileNotFound(field, self.name, name) from None
            with contextlib.suppress(OSError):
                os.unlink(self._meta_path(path))

    async def delete(self, name: str, field: str) -> None:
        await asyncio.to_thread(self._delete, name, field)

    def _list(self, prefix: str, page_size: int, marker: str) -> FilePage:
        start = Path(os.path.realpath(self._root / prefix.rpartition("/")[0]))
        if not self._inside(start) or start.relative_to(self._root).parts[:1] == (RESERVED,):
            return FilePage([], "", False)  # outside the root, or in the store's own (reserved) files
        found: list[tuple[str, os.stat_result]] = []
        for directory, subdirectories, files in os.walk(start):
            if Path(directory) == self._root:
                subdirectories[:] = [d for d in subdirectories if d != RESERVED]
            for file in files:
                full = os.path.join(directory, file)
                relative = os.path.relpath(full, self._root).replace(os.sep, "/")
                if relative.startswith(prefix) and relative > marker and _is_utf8(relative):
                    info = os.lstat(full)
                    if stat.S_ISREG(info.st_mode):
                        found.append((relative, info))
        found.sort(key=lambda item: item[0])
        page = [
            FileInfo(relative, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC))
            for relative, info in found[:page_size]
        ]
        return FilePage(page, page[-1].name if page else "", len(found) > page_size)

    async def list(self, prefix: str, page_size: int, marker: str) -> FilePage:
        return await asyncio.to_thread(self._list, prefix, page_size, marker)


async def _settled(function: Callable[..., T], *args: Any) -> T:
    """``function(*args)`` in a thread. A cancelled caller still waits for the thread to finish
    (then re-raises), so the file descriptor it uses is not closed, and reused, under it."""
    future = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise


def _is_utf8(name: str) -> bool:
    """Whether a name read from the file system is text (one put there by other means may hold bytes that
    are not UTF-8, decoded as surrogates: no request can name it, nor can an answer carry it)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _require_no_other_kind(path: Path, name: str, field: str) -> None:
    """Raises InvalidArgument naming ``field`` when ``path`` holds anything but a regular file, or
    cannot be a file name at all (a segment over the file system's NAME_MAX)."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # nothing there, or a parent that is a file: commit says
        return
    except OSError as error:
        raise InvalidArgument(field, f"{name!r} cannot be created: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidArgument(field, f"{name!r} exists and is not a regular file")

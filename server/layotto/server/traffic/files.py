"""Capture files: JSON lines, one received call a line, in size-limited rotating files.

A record (one line, UTF-8 JSON, ``\\n``-terminated)::

    {"v": 1, "time": "2026-11-30T00:12:03.120Z", "method": "/spec.proto.runtime.v1.Runtime/SaveState",
     "metadata": [["traceparent", "00-..."], ["x-tag-bin", "AAE="]], "request": "Cgppbi1tZW1vcnk...",
     "status": "OK", "duration_ms": 0.412}

* ``time``: when the call was received, UTC, milliseconds;
* ``metadata``: the call's metadata as ``[key, value]`` pairs in order, without credentials
  (:data:`REDACTED_KEY_PARTS`); a value of a ``-bin`` key is base64;
* ``request``: the request message's bytes as received (protobuf wire format), base64;
* ``status``: the final gRPC status code name (``OK``, ``NOT_FOUND``, ...);
* ``duration_ms``: from the handler's start to its answer, milliseconds.

Files are named ``capture-NNNNNN.jsonl`` (NNNNNN counts up, and goes on after a restart), in the
order written; a file is closed before a record would take it past ``max_file_bytes``, and the
oldest files are deleted so that at most ``max_files`` remain. A record larger than
``max_file_bytes`` is dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

FORMAT_VERSION = 1
FILE_PATTERN = re.compile(r"^capture-(\d{6,})\.jsonl$")
#: a metadata key containing any of these (lower case) is never written
REDACTED_KEY_PARTS = ("token", "authorization", "cookie", "secret", "password", "api-key", "apikey")


@dataclass(frozen=True)
class CallRecord:
    """One captured call (see the module for its line)."""

    method: str
    metadata: tuple[tuple[str, str | bytes], ...]
    request: bytes
    status: str
    duration_ms: float
    received: float  # seconds since the epoch

    def to_line(self) -> bytes:
        """The record's JSON line, ``\\n`` included."""
        when = dt.datetime.fromtimestamp(self.received, dt.UTC).isoformat(timespec="milliseconds")
        body = {
            "v": FORMAT_VERSION,
            "time": when.replace("+00:00", "Z"),
            "method": self.method,
            "metadata": [[key, _text(value)] for key, value in self.metadata],
            "request": base64.b64encode(self.request).decode("ascii"),
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
        }
        return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def _text(value: str | bytes) -> str:
    return base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value


def kept_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[tuple[str, str | bytes], ...]:
    """``metadata`` without credentials (keys containing :data:`REDACTED_KEY_PARTS`)."""
    return tuple(
        (key, value) for key, value in metadata or () if not any(part in key.lower() for part in REDACTED_KEY_PARTS)
    )


@dataclass(frozen=True)
class ReplayCall:
    """A record read back: what a replay sends."""

    method: str
    metadata: tuple[tuple[str, str | bytes], ...]
    request: bytes
    status: str


def parse_line(line: bytes | str) -> ReplayCall:
    """One record; ValueError (or KeyError/TypeError, both ValueError here) for a line not in the format."""
    try:
        body = json.loads(line)
        if body.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown record version {body.get('v')!r}")
        metadata = tuple(
            (key, base64.b64decode(value) if key.endswith("-bin") else value) for key, value in body["metadata"]
        )
        return ReplayCall(body["method"], metadata, base64.b64decode(body["request"]), body["status"])
    except (KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a capture record: {error}") from None


def capture_files(directory: Path) -> list[Path]:
    """The capture files in ``directory``, oldest first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := FILE_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def read_calls(paths: Sequence[Path]) -> Iterator[ReplayCall]:
    """The records of ``paths`` (files, or directories of capture files) in order."""
    for path in paths:
        for file in capture_files(path) if path.is_dir() else [path]:
            with file.open("rb") as lines:
                for number, line in enumerate(lines, 1):
                    if line.strip():
                        try:
                            yield parse_line(line)
                        except ValueError as error:
                            raise ValueError(f"{file}:{number}: {error}") from None


class RotatingFiles:
    """Appends lines to ``capture-NNNNNN.jsonl`` files in ``directory`` within the limits (see the module).

    Not thread-safe: one writer thread owns it. Raises OSError when the directory cannot be written.
    """

    def __init__(self, directory: Path, max_file_bytes: int, max_files: int) -> None:
        self._directory = directory
        self._max_file_bytes = max_file_bytes
        self._max_files = max_files
        directory.mkdir(parents=True, exist_ok=True)
        existing = capture_files(directory)
        self._sequence = int(FILE_PATTERN.match(existing[-1].name).group(1)) if existing else 0  # type: ignore[union-attr]
        self._file: IO[bytes] | None = None
        self._size = 0
        self.too_large = 0  # records larger than a whole file, dropped
        self.bytes_written = 0  # bytes of the lines written, into every file
        self.files_opened = 0  # files made (the first, then one per rotation)

    def write(self, line: bytes) -> None:
        """Append ``line``, opening a new file (and deleting the oldest) when it would not fit."""
        if len(line) > self._max_file_bytes:
            self.too_large += 1
            return
        if self._file is None or self._size + len(line) > self._max_file_bytes:
            self._open_next()
        assert self._file is not None
        self._file.write(line)
        self._size += len(line)
        self.bytes_written += len(line)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open_next(self) -> None:
        self.close()
        self._sequence += 1
        self._file = (self._directory / f"capture-{self._sequence:06d}.jsonl").open("xb")
        self._size = 0
        self.files_opened += 1
        for old in capture_files(self._directory)[: -self._max_files]:
            old.unlink(missing_ok=True)

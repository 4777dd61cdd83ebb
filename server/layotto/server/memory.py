"""How the runtime's C heap is kept: large buffers reused (glibc's ``mallopt``), and freed memory
given back to the system (glibc's ``malloc_trim``) every few seconds.

File streams (GetFile, GetObject, PutFile) move data in buffers of about 1 MiB: a response body read
from the store, a message built from it, its serialization, the transport's copy. glibc serves an
allocation over ``M_MMAP_THRESHOLD`` (128 KiB at first) with an mmap of its own and unmaps it when
freed, so every such buffer is 256 pages the kernel maps in and zeroes again: a runtime serving
GetFile in 1 MiB messages took 300-320 page faults and 1.8-2.2 ms of CPU per MiB, of which 1.0-1.3 ms
went to those faults (glibc raises the threshold by itself only after freeing a larger mapped
buffer, e.g. once a PutFile part has gone). :func:`keep_large_buffers` raises the thresholds at
start-up: buffers below 16 MiB come from the heap and are reused (0-4 faults and about 1.0 ms per MiB);
up to 32 MiB of free heap stays mapped between two trims. One arena for every thread: with a heap per
thread, each kept its own 32 MiB that ``malloc_trim`` does not give back (twenty refused 50 MiB
requests on grpcio left RSS 51-104 MiB up instead of within 40).

gRPC core reads a request on its own threads, into buffers glibc takes from per-thread
arenas. A large request that is refused (over ``max_message_bytes``) has been read before
it is refused, and glibc keeps the freed chunks in the middle of an arena: twenty refused
50 MiB requests on one connection left RSS at 164-231 MiB after the connection closed, from a
baseline of about 100 MiB, whatever ``MALLOC_ARENA_MAX`` and ``MALLOC_MMAP_THRESHOLD_`` said.
``malloc_trim(0)`` returns every free page of every arena (about 1 ms); with it the same load
ends within 2 MiB of the baseline. On a C library without it (musl, macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import Any

from layotto.server.aio import stop_task

log = logging.getLogger(__name__)

TRIM_INTERVAL_SECONDS = 5.0
MiB = 1024 * 1024
#: allocations of this many bytes or more get an mmap of their own, unmapped when freed (M_MMAP_THRESHOLD)
MMAP_THRESHOLD_BYTES = 16 * MiB
#: free memory at the top of the heap above this is given back at once (M_TRIM_THRESHOLD)
TRIM_THRESHOLD_BYTES = 32 * MiB
#: arenas glibc may create (M_ARENA_MAX): one, so that the trimmer's ``malloc_trim(0)`` reaches all the
#: free heap (it gives back the top of the main arena only) and no thread's arena keeps its own 32 MiB
ARENAS = 1
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def keep_large_buffers() -> bool:
    """Have glibc serve buffers under MMAP_THRESHOLD_BYTES from one heap (ARENAS) and keep up to
    TRIM_THRESHOLD_BYTES of it free, so the ~1 MiB buffers of file streams are reused rather than
    mapped in and out for each message; call it before threads start. False on a C library without
    ``mallopt`` (musl, macOS: nothing changed) or when glibc refuses a value."""
    mallopt: Any = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_ARENA_MAX, ARENAS),
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
    )
    return all(mallopt(option, value) == 1 for option, value in settings)


def _malloc_trim() -> Callable[[int], int] | None:
    trim: Any = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


class MemoryTrimmer:
    """``start()`` a loop calling ``malloc_trim(0)`` every ``interval`` seconds; ``await stop()``."""

    def __init__(self, interval: float = TRIM_INTERVAL_SECONDS) -> None:
        self.interval = interval
        self._trim = _malloc_trim()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._trim is None:
            log.debug("no malloc_trim in this C library: freed memory stays with the allocator")
            return
        self._task = asyncio.get_running_loop().create_task(self._run(self._trim))

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    async def _run(self, trim: Callable[[int], int]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(trim, 0)  # ctypes releases the GIL; arenas are locked for ~1 ms

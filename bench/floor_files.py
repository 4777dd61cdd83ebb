"""The ``files`` case of bench/floors.py: GetFile and PutFile through the runtime and through the
cheapest Python relay one could write, against aiobotocore reading and writing the same S3 server
(moto, ``scripts/backends up s3``) directly, in alternating rounds of one run.

Paths, each moving one object of ``--mib`` MiB per transfer:

* ``direct``: this process with aiobotocore (bench/files.py's ``Direct``: a GetObject read in
  ``chunkSize`` reads; a multipart upload of ``partSize`` parts sent one after another).
* ``runtime native`` / ``runtime grpcio``: ``layotto serve --grpc-transport native|grpcio`` with an
  ``s3`` file store on the same bucket (bench/files.py's config), from a grpc.aio client (PutFile
  in 1 MiB messages).
* ``floor native`` / ``floor grpc.aio``: bench/floor_servers.py's ``files`` server on pygrpc-native
  or grpc.aio: only ``Runtime/GetFile`` and ``Runtime/PutFile``, the runtime's sizes (1 MiB
  GetFile messages, 8 MiB parts, one in flight), nothing else. On pygrpc-native, PutFile (a client
  stream) goes through the grpc.aio server pygrpc-native keeps behind it, as in the runtime.

Each round does a PutFile by every path (a new key each), then a GetFile by every path of one object
put once before the rounds; the paths' order is reversed every other round so a machine whose speed
drifts moves all of them. Per row: MiB/s (median of rounds), the ratio to direct (median of the
per-round ratios; target of issue #17: GetFile >= 0.7), and CPU ms per MiB (all rounds) of the relay
(utime + stime of its whole process, /proc/PID/stat), of moto's process (its pid from
$LAYOTTO_BACKENDS_DIR/s3.pid) and of this process (the client: ``time.process_time``).

The bound. A path whose processes spend C ms of CPU per MiB in all cannot move more than
``cores x 1000 / C`` MiB/s, and only that if every core is busy all the time with no process waiting
for another. Direct runs two CPU-bound processes (moto, the client); a relay path runs three (moto,
the relay, the client) on the same cores. So against the direct MiB/s of the same run, a ratio of 0.7
needs ``C <= cores x 1000 / (0.7 x direct MiB/s)`` on the relay path. And since a path's MiB/s is
``cores busy x 1000 / C`` (cores busy: its processes' CPU seconds per second, on average), the ratio
to direct is ``(cores busy / direct's) x (direct's C / the path's C)``: a relay path whose C is k
times direct's reaches 0.7 only by keeping 0.7 x k times as many cores busy as direct does, with one
more process in the pipeline. The table prints C and the cores busy of each path, the ceiling
``cores x 1000 / C`` of each, and under it, per operation, the budget and the cores busy the
cheapest relay path would need.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from _runtime import start_runtime
from files import (
    ENDPOINT,
    Direct,
    MiB,
    Plan,
    Sample,
    runtime_get,
    runtime_put,
    s3_bucket,
    s3_server_pid,
    timed,
    write_store_config,
)
from floors import floor_server, processes, ready

from layotto.proto.runtime.v1 import runtime_pb2_grpc

OPERATIONS = ("PutFile", "GetFile")
TARGET = 0.7
GET_KEY = "floors-files-get"


@dataclass(frozen=True)
class FilePath:
    """One way to move a file: its name, the relay's pid (None: direct), a put and a get."""

    name: str
    pid: int | None
    put: Callable[[str, bytes], Awaitable[None]]
    get: Callable[[str], Awaitable[int]]


Samples = dict[tuple[str, str], list[Sample]]
"""(operation, path name) -> one sample per round."""


async def run_files(plan: Plan) -> tuple[Samples, bool]:
    """The rounds of every path; and whether moto's CPU was read (its pid file readable)."""
    options = [("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)]
    async with s3_bucket() as (client, bucket):
        with tempfile.TemporaryDirectory(prefix="layotto-floors-files-") as tmp, processes() as started:
            servers = relays(tmp, bucket, plan, started)
            direct = Direct(client, bucket, plan.part_size, plan.chunk_size)
            paths = [FilePath("direct", None, direct.put, direct.get)]
            channels = []
            try:
                for name, pid, address in servers:
                    await ready(address, name)
                    channel = grpc.aio.insecure_channel(address, options=options)
                    channels.append(channel)
                    paths.append(grpc_path(name, pid, runtime_pb2_grpc.RuntimeStub(channel), plan.message_bytes))
                samples = await alternate(paths, plan, remover(client, bucket))
                return samples, s3_server_pid() is not None
            finally:
                for channel in channels:
                    await channel.close()


def remover(client: Any, bucket: str) -> Callable[[str], Awaitable[int]]:
    """A function that deletes an object of ``bucket`` and answers the size it had."""

    async def remove(key: str) -> int:
        size = int((await client.head_object(Bucket=bucket, Key=key))["ContentLength"])
        await client.delete_object(Bucket=bucket, Key=key)
        return size

    return remove


def relays(tmp: str, bucket: str, plan: Plan, started: list[Any]) -> list[tuple[str, int, str]]:
    """The runtime on each transport and the floor on each: (name, pid, address), all starting."""
    config = write_store_config(tmp, bucket, plan.part_size, plan.chunk_size)
    servers = []
    for transport in ("native", "grpcio"):
        data_dir = Path(tmp) / transport
        data_dir.mkdir()
        process, address = start_runtime(str(data_dir), config, ["--grpc-transport", transport])
        started.append(process)
        servers.append((f"runtime {transport}", process.pid, address))
    sizes = (str(plan.part_size), str(plan.chunk_size))
    for name, transport in (("floor native", "native"), ("floor grpc.aio", "grpcio")):
        pid, address = floor_server(started, "files", transport, ENDPOINT, bucket, *sizes)
        servers.append((name, pid, address))
    return servers


def grpc_path(name: str, pid: int, stub: Any, message_bytes: int) -> FilePath:
    async def put(key: str, data: bytes) -> None:
        await runtime_put(stub, key, data, message_bytes)

    async def get(key: str) -> int:
        return await runtime_get(stub, key)

    return FilePath(name, pid, put, get)


async def alternate(paths: list[FilePath], plan: Plan, remove: Callable[[str], Awaitable[int]]) -> Samples:
    """Every path's PutFile and GetFile in ``plan.rounds`` rounds (``remove``: an object's size, deleting it)."""
    data = os.urandom(plan.mib * MiB)
    server_pid = s3_server_pid()
    await paths[0].put(GET_KEY, data)
    for path in paths:  # first-call costs stay out
        await path.put(f"warm-{slug(path)}", data[:MiB])
        assert await path.get(f"warm-{slug(path)}") == MiB, path.name
    samples: Samples = {(operation, path.name): [] for operation in OPERATIONS for path in paths}
    for index in range(plan.rounds):
        key = f"floors-{uuid.uuid4().hex[:8]}"
        order = paths if index % 2 == 0 else paths[::-1]
        for path in order:

            async def put(p: FilePath = path, k: str = key) -> None:
                await p.put(f"{k}-{slug(p)}", data)

            samples["PutFile", path.name].append(await timed(put, plan.mib, path.pid, server_pid))
        for path in order:

            async def get(p: FilePath = path) -> None:
                assert await p.get(GET_KEY) == len(data), p.name

            samples["GetFile", path.name].append(await timed(get, plan.mib, path.pid, server_pid))
        for path in paths:
            assert await remove(f"{key}-{slug(path)}") == len(data), path.name  # each put stored it whole
    return samples


def slug(path: FilePath) -> str:
    return path.name.replace(" ", "-").replace(".", "")


def cpu_all(samples: list[Sample]) -> float:
    """CPU ms per MiB of every process on the path (the mean over rounds: finer than a round's ticks)."""
    return statistics.mean(s.runtime_ms_per_mib + s.server_ms_per_mib + s.client_ms_per_mib for s in samples)


def files_case(rounds: int, mib: int) -> list[str]:
    """Run the case (``rounds`` rounds of ``mib`` MiB transfers, bench/files.py's sizes): its report."""
    plan = Plan(mib, rounds, message_bytes=MiB, part_size=8 * MiB, chunk_size=MiB)
    start = os.getloadavg()
    samples, with_server_cpu = asyncio.run(run_files(plan))
    end = os.getloadavg()
    return [
        f"files: load average {' '.join(f'{v:.1f}' for v in start)} at the start, "
        f"{' '.join(f'{v:.1f}' for v in end)} at the end (1, 5, 15 min); {plan.mib} MiB per transfer, "
        f"{plan.rounds} rounds, {plan.part_size // MiB} MiB parts, {plan.chunk_size // 1024} KiB GetFile chunks, "
        f"{plan.message_bytes // 1024} KiB PutFile messages",
        *files_table(samples, with_server_cpu),
    ]


def files_table(samples: Samples, with_server_cpu: bool) -> list[str]:
    cores = os.cpu_count() or 1
    moto = "moto" if with_server_cpu else "moto (no pid: 0)"
    lines = [
        f"| operation, path | MiB/s | ÷ direct: median (rounds' range) | CPU ms/MiB: relay / {moto} / client "
        f"| all processes | cores busy | {cores}-core ceiling MiB/s (÷ direct) |",
        "|---|---|---|---|---|---|---|",
    ]
    for operation, name in samples:
        lines.append(file_row(operation, name, samples[operation, name], samples[operation, "direct"], cores))
    return [*lines, "", *bound_lines(samples, cores)]


def file_row(operation: str, name: str, rows: list[Sample], direct: list[Sample], cores: int) -> str:
    """One row of the table: ``rows`` of path ``name`` against ``direct``'s of the same rounds."""
    rate = statistics.median(s.rate for s in rows)
    direct_rate = statistics.median(s.rate for s in direct)
    ratios = [s.rate / d.rate for s, d in zip(rows, direct, strict=True)]
    ratio = "" if name == "direct" else f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
    relay = "—" if name == "direct" else f"{statistics.mean(s.runtime_ms_per_mib for s in rows):.2f}"
    server = statistics.mean(s.server_ms_per_mib for s in rows)
    client = statistics.mean(s.client_ms_per_mib for s in rows)
    total = cpu_all(rows)
    ceiling = cores * 1000 / total if total else float("inf")
    return (
        f"| {operation}, {name} | {rate:.0f} | {ratio} | {relay} / {server:.2f} / {client:.2f} | {total:.2f} "
        f"| {rate * total / 1000:.2f} | {ceiling:.0f} ({ceiling / direct_rate:.2f}) |"
    )


def bound_lines(samples: Samples, cores: int) -> list[str]:
    """Per operation, what the CPU per MiB allows: the budget for TARGET on ``cores`` cores, and the
    cores the cheapest relay path would have to keep busy, against direct's."""
    lines = []
    for operation in OPERATIONS:
        direct = samples[operation, "direct"]
        direct_rate, direct_cpu = statistics.median(s.rate for s in direct), cpu_all(direct)
        budget = cores * 1000 / (TARGET * direct_rate)
        relayed = {name: cpu_all(rows) for (op, name), rows in samples.items() if op == operation and name != "direct"}
        cheapest = min(relayed, key=relayed.__getitem__)
        cpu_ratio = direct_cpu / relayed[cheapest]
        busy = direct_rate * direct_cpu / 1000
        lines.append(
            f"{operation}: direct moved {direct_rate:.0f} MiB/s for {direct_cpu:.2f} ms of CPU per MiB (2 processes, "
            f"{busy:.2f} cores busy). {TARGET} of that on {cores} cores needs <= {cores} x 1000 / ({TARGET} x "
            f"{direct_rate:.0f}) = {budget:.2f} ms per MiB in all on a relay path (3 processes, every core busy "
            f"all the time); the cheapest, {cheapest}, spent {relayed[cheapest]:.2f} "
            f"({'within' if relayed[cheapest] <= budget else 'over'} that bound). As ratio = (cores busy / direct's) "
            f"x (direct's CPU per MiB / the path's) = (cores busy / {busy:.2f}) x {cpu_ratio:.2f}, {TARGET} needs "
            f"it to keep {TARGET / cpu_ratio:.2f}x the cores direct keeps busy: {busy * TARGET / cpu_ratio:.2f} "
            f"of {cores}."
        )
    return lines

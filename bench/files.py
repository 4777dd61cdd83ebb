"""File API throughput: PutFile and GetFile through `layotto serve` (its `s3` file store) against the
same transfers done directly with aiobotocore from this process, on the same S3 server (moto's, from
`scripts/backends up s3`), in the same run.

    scripts/backends up s3
    python bench/files.py [--mib 32] [--rounds 6] [--message-kib 1024]

Direct is what a plain aiobotocore client does with the store's part size: a multipart upload of
``partSize`` parts sent one after another (one PutObject for a file up to one part; the store sends
each part while it receives the next), and a GetObject whose body is read in ``chunkSize`` reads.
Through the runtime, a PutFile stream of ``--message-kib`` messages and a GetFile stream. Each round
runs a put by each side, then a get by each, direct first in odd rounds and runtime first in even
ones, so a machine whose speed drifts moves both sides; the summary reads the median of the
per-round ratios (runtime / direct).
Also per round: the CPU the runtime process and the S3 server spent per MiB (user + system time from
/proc/PID/stat; the server's pid from $LAYOTTO_BACKENDS_DIR/s3.pid, when readable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiobotocore.session import get_session

sys.path.insert(0, str(Path(__file__).parent))

from _runtime import start_runtime, stop, wait_ready

from layotto.proto.runtime.v1 import runtime_pb2 as pb
from layotto.proto.runtime.v1 import runtime_pb2_grpc

MiB = 1024 * 1024
ENDPOINT = os.environ.get("LAYOTTO_TEST_S3", "http://127.0.0.1:9000")
TICKS = os.sysconf("SC_CLK_TCK")
OPERATIONS = ("PutFile", "GetFile")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc/<pid>/stat); 0 without a pid."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def minor_faults(pid: int | None) -> int:
    """Minor page faults of process ``pid`` so far (from /proc/<pid>/stat): each maps a fresh page in;
    0 without a pid."""
    if pid is None:
        return 0
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[7])


def s3_server_pid() -> int | None:
    path = Path(os.environ.get("LAYOTTO_BACKENDS_DIR", "/tmp/layotto-backends")) / "s3.pid"
    try:
        pid = int(path.read_text())
        cpu_seconds(pid)
    except (OSError, ValueError):
        return None
    return pid


@dataclass
class Sample:
    """One timed transfer: MiB/s, and CPU ms per MiB of the runtime, of the S3 server and of this
    process (the client: aiobotocore's work direct, the gRPC client's through the runtime)."""

    rate: float
    runtime_ms_per_mib: float
    server_ms_per_mib: float
    client_ms_per_mib: float
    runtime_faults_per_mib: float
    client_faults_per_mib: float


@dataclass
class Figures:
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, name: str, sample: Sample) -> None:
        self.samples.setdefault(name, []).append(sample)


async def timed(
    run: Callable[[], Awaitable[None]], mib: float, runtime_pid: int | None, server_pid: int | None
) -> Sample:
    """Time ``run`` moving ``mib`` MiB; the runtime's CPU and faults are 0 without ``runtime_pid``."""
    cpu_runtime, cpu_server, cpu_client = cpu_seconds(runtime_pid), cpu_seconds(server_pid), time.process_time()
    faults_runtime, faults_client = minor_faults(runtime_pid), minor_faults(os.getpid())
    started = time.perf_counter()
    await run()
    seconds = time.perf_counter() - started
    return Sample(
        mib / seconds,
        (cpu_seconds(runtime_pid) - cpu_runtime) * 1000 / mib,
        (cpu_seconds(server_pid) - cpu_server) * 1000 / mib,
        (time.process_time() - cpu_client) * 1000 / mib,
        (minor_faults(runtime_pid) - faults_runtime) / mib,
        (minor_faults(os.getpid()) - faults_client) / mib,
    )


class Direct:
    """The s3 store's requests, made from this process with aiobotocore."""

    def __init__(self, client: Any, bucket: str, part_size: int, chunk_size: int) -> None:
        self._client, self._bucket = client, bucket
        self._part_size, self._chunk_size = part_size, chunk_size

    async def put(self, key: str, data: bytes) -> None:
        if len(data) <= self._part_size:
            await self._client.put_object(Bucket=self._bucket, Key=key, Body=data)
            return
        started = await self._client.create_multipart_upload(Bucket=self._bucket, Key=key)
        upload_id, parts = started["UploadId"], []
        for number, offset in enumerate(range(0, len(data), self._part_size), start=1):
            body = data[offset : offset + self._part_size]
            sent = await self._client.upload_part(
                Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
            )
            parts.append({"ETag": sent["ETag"], "PartNumber": number})
        await self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    async def get(self, key: str) -> int:
        response = await self._client.get_object(Bucket=self._bucket, Key=key)
        size = 0
        async with response["Body"] as body:
            while chunk := await body.read(self._chunk_size):
                size += len(chunk)
        return size


async def _messages(name: str, data: bytes, message_bytes: int) -> AsyncIterator[pb.PutFileRequest]:
    view = memoryview(data)
    yield pb.PutFileRequest(store_name="s3", name=name, data=bytes(view[:message_bytes]))
    for offset in range(message_bytes, len(data), message_bytes):
        yield pb.PutFileRequest(data=bytes(view[offset : offset + message_bytes]))


async def runtime_put(stub: Any, name: str, data: bytes, message_bytes: int) -> None:
    await stub.PutFile(_messages(name, data, message_bytes), timeout=120)


async def runtime_get(stub: Any, name: str) -> int:
    size = 0
    async for message in stub.GetFile(pb.GetFileRequest(store_name="s3", name=name), timeout=120):
        size += len(message.data)
    return size


@dataclass(frozen=True)
class Plan:
    mib: int
    rounds: int
    message_bytes: int
    part_size: int
    chunk_size: int


async def measure(plan: Plan, address: str, runtime_pid: int, client: Any, bucket: str) -> Figures:
    data = os.urandom(plan.mib * MiB)
    direct = Direct(client, bucket, plan.part_size, plan.chunk_size)
    server_pid = s3_server_pid()
    figures = Figures()
    options = [("grpc.max_receive_message_length", 64 * MiB), ("grpc.max_send_message_length", 64 * MiB)]
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await runtime_put(stub, "warm", data[:MiB], plan.message_bytes)  # first-call costs stay out
        await runtime_get(stub, "warm")
        for index in range(plan.rounds):
            key = f"bench-{uuid.uuid4().hex[:8]}"

            async def put_direct(k: str = key) -> None:
                await direct.put(f"{k}-direct", data)

            async def put_runtime(k: str = key) -> None:
                await runtime_put(stub, f"{k}-runtime", data, plan.message_bytes)

            async def get_direct(k: str = key) -> None:
                assert await direct.get(f"{k}-direct") == len(data)

            async def get_runtime(k: str = key) -> None:
                assert await runtime_get(stub, f"{k}-runtime") == len(data)

            steps = [
                (("PutFile direct", put_direct), ("PutFile runtime", put_runtime)),
                (("GetFile direct", get_direct), ("GetFile runtime", get_runtime)),
            ]
            for pair in steps:
                for name, run in pair if index % 2 == 0 else reversed(pair):  # ABBA: drift moves both sides
                    figures.add(name, await timed(run, plan.mib, runtime_pid, server_pid))
            for suffix in ("direct", "runtime"):
                await client.delete_object(Bucket=bucket, Key=f"{key}-{suffix}")
    return figures


@asynccontextmanager
async def s3_bucket() -> AsyncIterator[tuple[Any, str]]:
    """An aiobotocore client on ENDPOINT and a fresh bucket of its own, emptied and deleted at the end."""
    bucket = f"bench-files-{uuid.uuid4().hex[:8]}"
    session = get_session()
    async with session.create_client(
        "s3", region_name="us-east-1", endpoint_url=ENDPOINT, aws_access_key_id="test", aws_secret_access_key="test"
    ) as client:
        await client.create_bucket(Bucket=bucket)
        try:
            yield client, bucket
        finally:
            listed = await client.list_objects(Bucket=bucket)
            for item in listed.get("Contents") or []:
                await client.delete_object(Bucket=bucket, Key=item["Key"])
            await client.delete_bucket(Bucket=bucket)


def write_store_config(directory: str, bucket: str, part_size: int, chunk_size: int) -> Path:
    """A runtime config (JSON, in ``directory``) with one file store, ``s3``, on ``bucket``; its path."""
    metadata = {
        "bucket": bucket,
        "endpoint": ENDPOINT,
        "accessKey": "test",
        "secretKey": "test",
        "forcePathStyle": "true",
        "partSize": str(part_size),
        "chunkSize": str(chunk_size),
    }
    config = Path(directory) / "bench.json"
    config.write_text(json.dumps({"file": {"s3": {"type": "s3", "metadata": metadata}}}))
    return config


async def run(plan: Plan) -> tuple[Figures, bool]:
    async with s3_bucket() as (client, bucket):
        with tempfile.TemporaryDirectory(prefix="layotto-bench-files-") as tmp:
            process, address = start_runtime(tmp, write_store_config(tmp, bucket, plan.part_size, plan.chunk_size))
            try:
                await wait_ready(address)
                figures = await measure(plan, address, process.pid, client, bucket)
            finally:
                stop(process)
    return figures, s3_server_pid() is not None


def report(figures: Figures, plan: Plan, with_server_cpu: bool) -> list[str]:
    lines = [
        "| what | round | MiB/s | runtime CPU ms/MiB | S3 server CPU ms/MiB | client CPU ms/MiB "
        "| runtime / client page faults per MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, samples in figures.samples.items():
        for index, sample in enumerate(samples, start=1):
            server = f"{sample.server_ms_per_mib:.1f}" if with_server_cpu else "-"
            lines.append(
                f"| {name} | {index} | {sample.rate:.1f} | {sample.runtime_ms_per_mib:.1f} | {server} "
                f"| {sample.client_ms_per_mib:.1f} "
                f"| {sample.runtime_faults_per_mib:.0f} / {sample.client_faults_per_mib:.0f} |"
            )
    for operation in OPERATIONS:
        runtime = figures.samples[f"{operation} runtime"]
        direct = figures.samples[f"{operation} direct"]
        ratios = [r.rate / d.rate for r, d in zip(runtime, direct, strict=True)]
        # CPU: the mean over rounds (all rounds move the same MiB), finer than one round's 10 ms ticks
        cpu = statistics.mean(s.runtime_ms_per_mib for s in runtime)
        path = statistics.mean(s.runtime_ms_per_mib + s.client_ms_per_mib for s in runtime)
        client = statistics.mean(s.client_ms_per_mib for s in direct)
        lines.append(
            f"{operation}: runtime / direct aiobotocore = {statistics.median(ratios):.2f} (median of "
            f"{len(ratios)} rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.70); CPU per MiB "
            f"(all rounds): runtime {cpu:.1f} ms, runtime + its client {path:.1f} ms, direct client {client:.1f} ms"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=32, help="MiB per transfer")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds")
    parser.add_argument("--message-kib", type=int, default=1024, help="KiB of file data per PutFile message")
    parser.add_argument("--part-mib", type=int, default=8, help="the s3 store's partSize (and direct's), MiB")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="the s3 store's chunkSize (and direct's reads)")
    args = parser.parse_args()
    plan = Plan(args.mib, args.rounds, args.message_kib * 1024, args.part_mib * MiB, args.chunk_kib * 1024)
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()
    figures, with_server_cpu = asyncio.run(run(plan))
    print(
        f"{started}, {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start; {args.mib} MiB per transfer, "
        f"{args.message_kib} KiB PutFile messages, {args.part_mib} MiB parts, {args.chunk_kib} KiB chunks"
    )
    for line in report(figures, plan, with_server_cpu):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

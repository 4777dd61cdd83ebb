"""The gRPC path alone, for the File API's GetFile: a bare server (pygrpc-native or grpc.aio) streams
``--messages`` pre-encoded 1 MiB GetFileResponse messages to a grpc.aio client that decodes each; no
store, no runtime. Prints MiB/s and the CPU per MiB of the server process and of the client.

    python bench/grpc_stream_floor.py [--transport native|grpcio] [--rounds 10]

Run it with ``MALLOC_MMAP_THRESHOLD_=16777216 MALLOC_TRIM_THRESHOLD_=33554432 MALLOC_ARENA_MAX=1``
in the environment for both processes' allocator set as `layotto serve` sets its own (memory.py).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))

from _runtime import free_port

from layotto.proto.runtime.v1 import runtime_pb2 as pb

MiB = 1024 * 1024
TICKS = os.sysconf("SC_CLK_TCK")
SERVER = """
import asyncio, sys, grpc, uvloop
payload = b"\\x0a\\x80\\x80\\x40" + bytes(1024 * 1024)  # GetFileResponse(data=<1 MiB>), encoded
count = int(sys.argv[3])
async def stream(request, context):
    for _ in range(count):
        yield payload
async def main():
    if sys.argv[2] == "native":
        import pygrpc_native.aio
        server = pygrpc_native.aio.server()
    else:
        server = grpc.aio.server()
    handler = grpc.unary_stream_rpc_method_handler(stream)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Floor", {"Get": handler}),))
    server.add_insecure_port(sys.argv[1])
    await server.start()
    await server.wait_for_termination()
uvloop.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def measure(transport: str, messages: int, rounds: int) -> str:
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen([sys.executable, "-c", SERVER, address, transport, str(messages)])
    try:
        options = [("grpc.max_receive_message_length", 64 * MiB)]
        async with grpc.aio.insecure_channel(address, options=options) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            call = channel.unary_stream("/bench.Floor/Get", request_serializer=None, response_deserializer=None)

            async def get() -> None:
                size = 0
                async for raw in call(b""):
                    size += len(pb.GetFileResponse.FromString(raw).data)
                assert size == messages * MiB

            await get()  # first-call costs stay out
            server_cpu, client_cpu, started = cpu_seconds(server.pid), time.process_time(), time.perf_counter()
            for _ in range(rounds):
                await get()
            seconds, mib = time.perf_counter() - started, rounds * messages
            server_ms = (cpu_seconds(server.pid) - server_cpu) * 1000 / mib
            client_ms = (time.process_time() - client_cpu) * 1000 / mib
    finally:
        server.kill()
        server.wait()
    return f"{transport}: {mib / seconds:.0f} MiB/s; CPU per MiB: server {server_ms:.2f} ms, client {client_ms:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=("native", "grpcio"), default="native")
    parser.add_argument("--messages", type=int, default=32, help="1 MiB messages per stream")
    parser.add_argument("--rounds", type=int, default=10, help="streams timed")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    line = asyncio.run(measure(args.transport, args.messages, args.rounds))
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {load:.2f}: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

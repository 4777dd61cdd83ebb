"""WebAssembly functions: requests per second and latency through the trigger, against the same logic
as a plain Python (aiohttp) handler in the same process, same run; instance start time; memory per
instance.

The functions are the tests' WAT modules (server/tests/wasm_modules.py): an echo, and Layotto's
two-function inventory call (function 1 invokes function 2, which reads in-memory state). The Python
handlers do the same: echo the body; read the state and format the sentence. Usage:

    python bench/wasm_functions.py [--seconds 3] [--concurrency 1 8] [--instances 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "server" / "tests"))

import wasm_modules as wat  # noqa: E402  # the tests' modules, compiled here
from _load import LoadResult, closed_loop  # noqa: E402

from layotto.server import Runtime  # noqa: E402
from layotto.server.config import from_mapping  # noqa: E402


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _python_handlers(runtime: Runtime) -> tuple[web.AppRunner, int]:
    assert runtime.services is not None
    state = runtime.services.state

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=await request.read() or request.query_string.encode())

    async def inventory(request: web.Request) -> web.Response:
        book = request.query.get("name", "")
        entry = await state.get("state_demo", book)
        count = entry.value.decode() if entry is not None else ""
        return web.Response(text=f"There are {count} inventories for {book}.\n")

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_route("*", "/inventory", inventory)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


async def run(seconds: float, concurrencies: list[int], instances: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / f"{name}.wasm" for name in ("echo", "client", "server")}
        wat.write(paths["echo"], wat.echo("echo"))
        wat.write(paths["client"], wat.INVENTORY_CLIENT)
        wat.write(paths["server"], wat.INVENTORY_SERVER)
        functions = {
            name: {"name": name, "instance_num": max(concurrencies), "path": str(path)} for name, path in paths.items()
        }
        config = from_mapping(
            {
                "grpc_address": "127.0.0.1:0",
                "http_address": "127.0.0.1:0",
                "data_dir": folder,
                "state": {"state_demo": {"type": "in-memory"}},
                "wasm": {
                    "address": "127.0.0.1:0",
                    "admin_address": "127.0.0.1:0",
                    "watch_seconds": 0,
                    "functions": functions,
                },
            }
        )
        runtime = Runtime(config)
        await runtime.start()
        runner, python_port = await _python_handlers(runtime)
        try:
            await _measure(runtime, python_port, seconds, concurrencies)
            await _instances(runtime, instances)
        finally:
            await runner.cleanup()
            await runtime.stop(grace=1)


async def _measure(runtime: Runtime, python_port: int, seconds: float, concurrencies: list[int]) -> None:
    assert runtime.services is not None and runtime.wasm_listeners is not None
    from layotto.server.components.state import Concurrency
    from layotto.server.runtime.state import set_request

    write = set_request("book1", b"100", etag=None, metadata={}, concurrency=Concurrency.LAST_WRITE, field="")
    await runtime.services.state.write("state_demo", [write], ["states[0]"])
    trigger = f"http://127.0.0.1:{runtime.wasm_listeners.port}"
    python = f"http://127.0.0.1:{python_port}"
    results: list[LoadResult] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:

        def caller(url: str, function_id: str, body: bytes) -> object:
            async def call() -> None:
                async with http.post(url, data=body, headers={"id": function_id}) as response:
                    await response.read()
                    assert response.status == 200, response.status

            return call

        for concurrency in concurrencies:
            for name, url, function_id, body in (
                ("echo: wasm function", f"{trigger}/", "echo", b"x" * 100),
                ("echo: Python handler", f"{python}/echo", "", b"x" * 100),
                ("inventory: wasm, 2 functions", f"{trigger}/?name=book1", "id_1", b""),
                ("inventory: Python handler", f"{python}/inventory?name=book1", "", b""),
            ):
                results.append(await closed_loop(name, caller(url, function_id, body), concurrency, seconds))  # type: ignore[arg-type]
    print("| call | concurrency | req/s | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|---|")
    for result in results:
        print(result.row())


async def _instances(runtime: Runtime, count: int) -> None:
    manager = runtime.functions
    assert manager is not None
    for function_id in ("echo", "id_1"):
        before_rss, started = _rss_bytes(), time.perf_counter()
        size = manager.find(function_id).size
        await manager.update(function_id, size + count)
        elapsed = time.perf_counter() - started
        grown = _rss_bytes() - before_rss
        print(
            f"{function_id}: {count} more instances in {elapsed * 1000:.0f} ms "
            f"({elapsed / count * 1000:.1f} ms each), RSS +{grown / count / 1024:.0f} KiB per instance"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--instances", type=int, default=8)
    args = parser.parse_args()
    print(f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    asyncio.run(run(args.seconds, args.concurrency, args.instances))


if __name__ == "__main__":
    main()

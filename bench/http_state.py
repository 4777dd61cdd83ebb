"""HTTP GetState through the runtime against a bare aiohttp server answering a fixed 100-byte body.

The runtime (`layotto serve`, embedded defaults, ``GET /v1.0/state/in-memory/bench`` answering a
100-byte value) and the bare server (aiohttp's low-level ``web.Server``, the stack the runtime's
HTTP port uses, on the same event loop) run as child processes; the load comes from another child
process (an aiohttp client, closed loop) so the generator does not share a core's time with the
measured server's event loop. Rounds alternate (bare, runtime, bare, runtime, ...) so drifts of a
shared machine hit both alike. Per round: req/s, latency percentiles, and the server's CPU per
request (user + system time of its process from /proc/<pid>/stat over the round, divided by the
requests answered), and the load generator's CPU use (to see whether it is the bottleneck).
Usage:

    python bench/http_state.py [--seconds 5] [--rounds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

from _load import closed_loop
from _runtime import free_port, serve_like_the_runtime, start

BODY = b"v" * 100
TICKS = os.sysconf("SC_CLK_TCK")


# -- the bare server and the load generator (run as child processes) --------------------------


async def bare_server(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.BaseRequest) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    runner = web.ServerRunner(web.Server(handler, access_log=None))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def generate_load(url: str, concurrency: int, seconds: float) -> None:
    """Closed-loop GETs of ``url``; prints one JSON line: requests, seconds, percentiles, CPU."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def call() -> None:
            async with http.get(url) as response:
                body = await response.read()
                if response.status != 200 or len(body) != len(BODY):
                    raise SystemExit(f"unexpected answer {response.status} {body[:80]!r}")

        cpu = time.process_time()
        result = await closed_loop("load", call, concurrency, seconds, warmup=0.5)
        cpu = time.process_time() - cpu
    print(json.dumps({"requests": result.requests, "seconds": result.seconds, "p50": result.p50_ms,
                      "p99": result.p99_ms, "cpu": cpu / (seconds + 0.5)}))  # fmt: skip


# -- the parent: servers, rounds, figures ----------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if 200 <= response.status < 300:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def one_round(name: str, pid: int, url: str, concurrency: int, seconds: float) -> dict[str, float]:
    command = [sys.executable, __file__, "--load", url, "--concurrency", str(concurrency), "--seconds", str(seconds)]
    before = cpu_seconds(pid)
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60)
    server_cpu = cpu_seconds(pid) - before
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    requests = figures["requests"] / figures["seconds"] * (seconds + 0.5)  # the whole round, warm-up included
    return {
        "rps": figures["requests"] / figures["seconds"],
        "p50": figures["p50"],
        "p99": figures["p99"],
        "cpu_us": server_cpu / requests * 1e6,
        "load_cpu": figures["cpu"],
    }


def start_servers(data_dir: str) -> tuple[subprocess.Popen[bytes], str, subprocess.Popen[bytes], str]:
    bare_port, http_port = free_port(), free_port()
    bare = start([sys.executable, __file__, "--bare", str(bare_port)])
    command = [sys.executable, "-m", "layotto.server", "serve", "--grpc-address", f"127.0.0.1:{free_port()}"]
    command += ["--http-address", f"127.0.0.1:{http_port}", "--data-dir", data_dir, "--log-level", "WARNING"]
    runtime = start(command)
    bare_url = f"http://127.0.0.1:{bare_port}/"
    runtime_url = f"http://127.0.0.1:{http_port}/v1.0/state/in-memory/bench"
    wait_http(bare_url)
    wait_http(f"http://127.0.0.1:{http_port}/v1.0/healthz")
    save = urllib.request.Request(
        f"http://127.0.0.1:{http_port}/v1.0/state/in-memory",
        data=json.dumps([{"key": "bench", "value": "v" * 98}]).encode(),  # stored as 100 bytes of JSON
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(save, timeout=5).close()
    return bare, bare_url, runtime, runtime_url


def run(seconds: float, rounds: int, concurrency: int) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"bare aiohttp server": [], "runtime, in-memory": []}
    with tempfile.TemporaryDirectory() as data_dir:
        bare, bare_url, runtime, runtime_url = start_servers(data_dir)
        try:
            for _ in range(rounds):
                results["bare aiohttp server"].append(one_round("bare", bare.pid, bare_url, concurrency, seconds))
                results["runtime, in-memory"].append(
                    one_round("runtime", runtime.pid, runtime_url, concurrency, seconds)
                )
        finally:
            for process in (bare, runtime):
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
    return results


def report(results: dict[str, list[dict[str, float]]], seconds: float, rounds: int, concurrency: int) -> None:
    print(
        f"HTTP GetState, concurrency {concurrency}, {rounds} alternating rounds of {seconds:.0f} s,"
        f" {time.strftime('%Y-%m-%d %H:%M')}, {platform.platform()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
    )
    print("| server | req/s (median) | p50 ms | p99 ms | server CPU µs/request | load generator CPU |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(
            f"| {name} | {med['rps']:,.0f} | {med['p50']:.2f} | {med['p99']:.2f} | {med['cpu_us']:.0f} |"
            f" {med['load_cpu']:.0%} of a core |"
        )
    rps = {name: statistics.median(r["rps"] for r in rows) for name, rows in results.items()}
    cpu = {name: statistics.median(r["cpu_us"] for r in rows) for name, rows in results.items()}
    print(
        f"the runtime reaches {rps['runtime, in-memory'] / rps['bare aiohttp server']:.0%} of the bare server's req/s,"
        f" {cpu['bare aiohttp server'] / cpu['runtime, in-memory']:.2f} of its capacity by CPU per request;"
        f" load average {os.getloadavg()[0]:.1f} at the end"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--bare", type=int, help=argparse.SUPPRESS)  # child: serve on this port
    parser.add_argument("--load", help=argparse.SUPPRESS)  # child: generate load on this URL
    args = parser.parse_args()
    if args.bare:
        serve_like_the_runtime(bare_server(args.bare))
        return 0
    if args.load:
        serve_like_the_runtime(generate_load(args.load, args.concurrency, args.seconds))
        return 0
    report(run(args.seconds, args.rounds, args.concurrency), args.seconds, args.rounds, args.concurrency)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Import time of `layotto --help` and of `layotto serve` on the embedded defaults.

    python bench/startup_imports.py [--runs 3]

Runs each command under ``python -X importtime`` in a fresh interpreter (serve until it logs
that it is serving, then SIGTERM), sums the top-level imports, and prints the smallest of
``--runs`` runs (the least disturbed by other load) and the backend drivers serve imported.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile

IMPORT_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)")
DRIVERS = ("redis", "psycopg", "aiomysql", "aetcd", "kazoo", "nats", "aio_pika", "paho")
COMMAND = [sys.executable, "-X", "importtime", "-m", "layotto.server"]


def imports(lines: list[str]) -> tuple[float, set[str]]:
    """Seconds spent in top-level imports, and every module imported."""
    total, names = 0, set()
    for line in lines:
        match = IMPORT_LINE.match(line)
        if match:
            names.add(match.group(3))
            if not match.group(2):
                total += int(match.group(1))
    return total / 1e6, names


def help_run() -> float:
    done = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, check=True)
    return imports(done.stderr.splitlines())[0]


def serve_run() -> tuple[float, set[str]]:
    with tempfile.TemporaryDirectory() as data_dir:
        flags = ["--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0", "--data-dir", data_dir]
        process = subprocess.Popen([*COMMAND, "serve", *flags], stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        lines = []
        for line in process.stderr:
            lines.append(line)
            if "layotto serving" in line:
                break
        process.send_signal(signal.SIGTERM)
        process.wait(30)
    return imports(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    helps = [help_run() for _ in range(runs)]
    serves = [serve_run() for _ in range(runs)]
    drivers = sorted(d for d in DRIVERS if d in serves[0][1])
    sys.stdout.write(f"layotto --help: {min(helps):.2f} s importing (best of {runs})\n")
    sys.stdout.write(f"layotto serve (embedded defaults): {min(s[0] for s in serves):.2f} s importing\n")
    sys.stdout.write(f"backend drivers imported by serve: {', '.join(drivers) or 'none'}\n")


if __name__ == "__main__":
    main()

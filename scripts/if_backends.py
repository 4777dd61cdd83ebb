"""Run a command only when the named backends are reachable.

    python scripts/if_backends.py redis postgresql -- layotto-conformance --serve ...

When one is unreachable the command is skipped with a message, or fails when
LAYOTTO_REQUIRE_BACKENDS=1 (as in CI). Backends start with `scripts/backends up`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

PORTS = {
    "redis": 6379,
    "postgresql": 5432,
    "mysql": 3306,
    "etcd": 2379,
    "zookeeper": 2181,
    "nats": 4222,
    "mosquitto": 1883,
    "rabbitmq": 5672,
    "s3": 9000,
    "smtp": 2525,
}


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    if "--" not in argv:
        sys.stderr.write(__doc__ or "")
        return 2
    split = argv.index("--")
    names, command = argv[:split], argv[split + 1 :]
    missing = [n for n in names if not reachable(PORTS[n])]
    if missing:
        message = f"backends not reachable on loopback: {', '.join(missing)} (start them: scripts/backends up)"
        if os.environ.get("LAYOTTO_REQUIRE_BACKENDS") == "1":
            sys.stderr.write(f"FAILED: {message}\n")
            return 1
        sys.stdout.write(f"SKIPPED, not run: {' '.join(command)}\n  because {message}\n")
        return 0
    return subprocess.call(command)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

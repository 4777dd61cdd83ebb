"""A private dnsmasq (Debian's dnsmasq-base, which scripts/backends installs) on a free loopback
port, serving the records a test gives it, so the test may change them or stop the server."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from backends import require_installed
from server_helpers import free_port

DNSMASQ = "/usr/sbin/dnsmasq"


class PrivateDnsmasq:
    """dnsmasq on 127.0.0.1:``port`` answering for the zone ``zone`` only (unknown names there:
    NXDOMAIN), every record with the TTL ``ttl`` (seconds). Records are dnsmasq options:
    ``host-record=b1.test,127.0.0.1`` or ``srv-host=_layotto._tcp.b.test,b1.test,7001``."""

    def __init__(self, directory: Path, zone: str = "test", ttl: int = 1) -> None:
        if shutil.which(DNSMASQ) is None:
            require_installed("dnsmasq")
        self.directory, self.zone, self.ttl, self.port = directory, zone, ttl, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve(self, *records: str) -> None:
        """(Re)start the server with exactly ``records`` (dnsmasq reloads only hosts files on
        SIGHUP, not SRV records: a restart on the same port replaces them all)."""
        self.stop()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "dnsmasq.conf"
        options = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts"]
        options += [f"local=/{self.zone}/", f"local-ttl={self.ttl}", *records]
        config.write_text("\n".join(options) + "\n")
        log = self.directory / "dnsmasq.log"
        command = [DNSMASQ, "--keep-in-foreground", f"--conf-file={config}", "--pid-file=", f"--log-facility={log}"]
        with (self.directory / "dnsmasq.out").open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:  # dnsmasq listens on TCP as well: answering there means it is ready
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    said = "".join(p.read_text() for p in (log, self.directory / "dnsmasq.out") if p.exists())
                    raise AssertionError(f"dnsmasq did not start on {self.address}: {said}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

"""Unix domain socket listeners: the socket file's life around the servers that bind it.

Before binding, a socket file left by a runtime that did not stop cleanly is removed; a file
that is not a socket, or a socket some process still accepts connections on, stops start-up with
a ConfigError. The file is created with mode 0600 (the process umask is narrowed while binding),
then given the configured mode (0600 or 0660); it is removed when the runtime stops.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator

from layotto.server.components.base import ConfigError

#: the longest socket path Linux takes (sockaddr_un's sun_path: 108 bytes with the terminating NUL)
MAX_SOCKET_PATH_BYTES = 107


def prepare_socket_path(path: str, key: str) -> None:
    """Remove a stale socket file at ``path``; ConfigError (naming ``key``) when it cannot be used."""
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(f"{key}: {path} is {size} bytes; a Unix socket path is at most {MAX_SOCKET_PATH_BYTES}")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ConfigError(f"{key}: the directory of {path} does not exist") from None
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ConfigError(f"{key}: {path} exists and is not a socket")
    if _accepts_connections(path):
        raise ConfigError(f"{key}: {path} is in use (a process accepts connections on it)")
    os.unlink(path)


def _accepts_connections(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


@contextlib.contextmanager
def owner_only_umask() -> Iterator[None]:
    """Files created inside get no group or other permission (the socket file while it is bound)."""
    previous = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(previous)


def set_socket_mode(path: str, mode: int) -> None:
    """Give the bound socket file its configured mode (0600 or 0660)."""
    os.chmod(path, mode)


def remove_socket_file(path: str) -> None:
    """Remove the socket file at ``path`` if it is still there and still a socket."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)

"""Peers: the systems people would pick instead, measured beside shardline in the same run.

Each peer module starts its server on a free loopback port in a scratch
directory, measures from separate client processes with the same methods as
shardline's scenarios, and stops everything it started. A peer that cannot be
had on this machine (its server binary or its Python client is missing)
raises ``PeerUnavailable`` with the reason and the one-line step that installs
it; scenarios report that reason instead of failing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..broker_process import HOST, cpu_seconds, free_port, stop

__all__ = [
    "HOST",
    "PeerServer",
    "PeerUnavailable",
    "free_port",
    "require_binary",
    "require_module",
    "server_process",
]

START_TIMEOUT_S = 30.0
#: Debian puts some servers under sbin, which is not on every user's PATH.
_EXTRA_PATHS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
INSTALL_HINT = "sudo apt-get install -y redis-server redis-tools nats-server (or: make bench-peers)"


class PeerUnavailable(Exception):
    """A peer cannot run here; the message says why and how to install it."""


def require_binary(name: str) -> str:
    """The path of the executable ``name``, or PeerUnavailable."""
    found = shutil.which(name)
    if found is None:
        for directory in _EXTRA_PATHS:
            candidate = os.path.join(directory, name)
            if os.access(candidate, os.X_OK):
                return candidate
        raise PeerUnavailable(f"{name} is not installed ({INSTALL_HINT})")
    return found


def require_module(name: str, package: str) -> None:
    """PeerUnavailable unless the Python module ``name`` can be imported."""
    if importlib.util.find_spec(name) is None:
        raise PeerUnavailable(
            f"the Python package {package} is not installed (pip install -e '.[bench]')"
        )


@dataclass(frozen=True, slots=True)
class PeerServer:
    process: subprocess.Popen[bytes]
    port: int

    def cpu_seconds(self) -> float | None:
        """User plus system CPU seconds the server has used so far (None off Linux)."""
        return cpu_seconds(self.process.pid)


@contextlib.contextmanager
def server_process(
    command: Sequence[str], port: int, *, cwd: str | None = None
) -> Iterator[PeerServer]:
    """Run ``command`` until it accepts TCP connections on ``port``; stop it on exit."""
    process = subprocess.Popen(
        list(command), cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RuntimeError(
                    f"{command[0]} exited with status {process.returncode}: {err[-2000:]}"
                )
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not listen on port {port} in time")
            time.sleep(0.05)
        yield PeerServer(process, port)
    finally:
        stop(process)
        if process.stderr is not None:
            process.stderr.close()

"""A broker server in its own process, and child processes that talk to it.

Wire scenarios measure the server and its clients on separate processes (the
machine has few cores, and a client in the server's process would share its
interpreter lock). ``broker_server`` runs ``shardline serve`` on a free
loopback port over a data directory and stops it with SIGTERM afterwards;
``server_cpu_seconds`` reads its user+system CPU time from ``/proc``;
``run_child`` runs ``main(ARGS)`` of a module in a child Python and parses
the JSON document it prints last.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds process ``pid`` has used so far (None off Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


@dataclass(frozen=True, slots=True)
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def cpu_seconds(self) -> float | None:
        """User plus system CPU seconds the server has used so far (None off Linux)."""
        return cpu_seconds(self.process.pid)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the broker server exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the broker server did not listen on port {port} in time")


@contextlib.contextmanager
def broker_server(data: str) -> Iterator[ServerProcess]:
    """``shardline serve`` on a free loopback port over ``data``, stopped on exit."""
    port = free_port()
    command = [sys.executable, "-m", "broker.cli", "serve", "--data", data]
    command += ["--host", HOST, "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        _wait_listening(port, process)
        yield ServerProcess(process, port)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes], grace: float = 30.0) -> None:
    """SIGTERM a server and reap it; SIGKILL if it is still there after ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_child(module: str, *args: str, timeout: float = 600.0) -> dict[str, Any]:
    """Run ``module.child_main(args)`` in a child Python; its last stdout line is a JSON object."""
    code = f"import sys; from {module} import child_main; child_main(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        check=True,
        timeout=timeout,
    )
    lines = done.stdout.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"{module} printed nothing")
    value = json.loads(lines[-1])
    if not isinstance(value, dict):
        raise RuntimeError(f"{module} printed {lines[-1]!r}, not a JSON object")
    return value

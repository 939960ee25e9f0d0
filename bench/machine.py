"""The machine a benchmark ran on: CPU, cores, memory, Python, library versions, disk.

Figures mean little without the machine beside them; every result file
carries this description.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import lmdb

PACKAGES = (
    "lmdb",
    "msgpack",
    "trio",
    "h2",
    "numpy",
    "crc32c",
    "shardline",
    "redis",
    "hiredis",
    "nats-py",
)
#: The peers' servers: the command that prints each one's version.
PEER_SERVERS = {
    "redis-server": ("redis-server", "--version"),
    "nats-server": ("nats-server", "--version"),
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def filesystem_of(path: str) -> dict[str, str]:
    """The mount (device, mount point, type, options) that holds ``path``."""
    real = os.path.realpath(path)
    best: dict[str, str] = {}
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        device, mount, fstype, opts = parts[:4]
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best.get("mount", "")):
            best = {"device": device, "mount": mount, "type": fstype, "options": opts}
    return best


def _peer_version(command: tuple[str, ...]) -> str | None:
    """What a peer's server says of its version (None when it is not installed)."""
    from .peers import PeerUnavailable, require_binary

    try:
        done = subprocess.run(
            [require_binary(command[0]), *command[1:]], capture_output=True, timeout=30
        )
    except (PeerUnavailable, OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode(errors="replace").strip() or None


def describe(data_path: str) -> dict[str, Any]:
    """The machine, for a result file; ``data_path`` is where the scenarios' data lives."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in PACKAGES},
        "lmdb_library": ".".join(str(part) for part in lmdb.version()),
        "data_filesystem": filesystem_of(data_path),
        "peers": {name: _peer_version(command) for name, command in PEER_SERVERS.items()},
    }

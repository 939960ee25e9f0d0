"""Which code a benchmark measured: the git commit, uncommitted changes, a source fingerprint.

The broker changes between runs (and sometimes during them, in a shared
checkout); the fingerprint is a SHA-256 over every ``.py`` file of the
``broker`` package as it was when the run started, so two results can be told
apart even when the commit is the same.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import broker

ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.rstrip("\n")


def fingerprint(package_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(str(path.relative_to(package_dir)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def describe() -> dict[str, Any]:
    package_dir = Path(broker.__file__).resolve().parent
    status = _git("status", "--porcelain", "--", "broker", "pyproject.toml")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "changed": status.splitlines() if status else [],
        "broker_path": str(package_dir),
        "broker_fingerprint": fingerprint(package_dir),
    }

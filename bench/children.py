"""Child processes of a measurement: started, spoken to by lines, reaped whatever happens.

Scenarios and peers run every load generator and reader in a child Python of
its own (``module.child_main(argv)``), so that each has its own interpreter.
A child speaks by lines on stdout ("ready", ...), listens by lines on stdin
(the measurement window, a go) and prints a JSON object last.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

#: How long a child may take to answer a line before it counts as failed.
ANSWER_TIMEOUT_S = 60.0


def spawn(module: str, *args: str, **options: object) -> subprocess.Popen[bytes]:
    """``module.child_main([*args, --option value ...])`` in a child Python (``_`` as ``-``)."""
    code = f"import sys; from {module} import child_main; child_main(sys.argv[1:])"
    argv = list(args)
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return subprocess.Popen(
        [sys.executable, "-c", code, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@contextlib.contextmanager
def reaped() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list to put started children in; any still running at the end are killed and reaped,
    whether the measurement finished or failed."""
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for child in started:
            if child.poll() is None:
                child.kill()
            if child.returncode is None or (child.stdout and not child.stdout.closed):
                with contextlib.suppress(ValueError, OSError):
                    child.communicate()


def expect(child: subprocess.Popen[bytes], expected: str, who: str = "a child") -> None:
    """Read one line from ``child``; it must be ``expected``."""
    assert child.stdout is not None
    line = child.stdout.readline().decode().strip()
    if line != expected:
        _, err = child.communicate(timeout=ANSWER_TIMEOUT_S)
        raise RuntimeError(f"{who} said {line!r}, not {expected!r}: {err.decode()[-2000:]}")


def tell(child: subprocess.Popen[bytes], text: str) -> None:
    """Write one line to ``child``."""
    assert child.stdin is not None
    child.stdin.write(f"{text}\n".encode())
    child.stdin.flush()


def last_json(
    child: subprocess.Popen[bytes], timeout: float, who: str = "a child"
) -> dict[str, Any]:
    """Wait for ``child`` to end; the JSON object on its last stdout line."""
    out, err = child.communicate(timeout=timeout)
    lines = out.decode().strip().splitlines()
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"{who} failed ({child.returncode}): {err.decode()[-2000:]}")
    value: dict[str, Any] = json.loads(lines[-1])
    return value


def cpu_rate(before: float | None, after: float | None, seconds: float) -> float | None:
    """CPU seconds per second between two readings (None when either is unknown)."""
    if before is None or after is None or seconds <= 0:
        return None
    return (after - before) / seconds

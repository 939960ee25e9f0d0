"""Handlers the function benchmarks attach to streams (``python:bench.handlers:NAME``).

Lambda-style ``handler(event, context)`` functions, as users write them.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from typing import Any

_lock = threading.Lock()


def noop(event: dict[str, Any], context: Any) -> None:
    """Does nothing: the path's own cost."""
    return None


def sleep_10ms(event: dict[str, Any], context: Any) -> None:
    """Takes 10 ms per batch (a call to another service, say)."""
    time.sleep(0.010)


def record_due_times(event: dict[str, Any], context: Any) -> None:
    """Append ``<invocation start ns> <due ns> ...`` to ``$SHARDLINE_BENCH_LATENCY_FILE``.

    Each record's data starts with its due time (little-endian int64 of
    ``time.monotonic_ns()``, as the fan-out bench's producer writes it); the
    clock is the machine's, shared by every process.
    """
    started = time.monotonic_ns()
    dues = [
        int.from_bytes(base64.b64decode(r["kinesis"]["data"])[:8], "little", signed=True)
        for r in event["Records"]
    ]
    line = " ".join(map(str, [started, *dues])) + "\n"
    with _lock, open(os.environ["SHARDLINE_BENCH_LATENCY_FILE"], "a") as out:
        out.write(line)

"""Where one append's time goes: ``python -m bench.cycle [APPENDS]``.

A diagnostic, not a scenario: one appender appends 500 records of 100 B to one
shard, over and over, and each stage of every cycle is timestamped by wrapping
the log's internals (the wrappers add about a microsecond per stage). It prints
the median of each stage:

- pack: stamping and packing the records, building the operation (trio thread)
- hand-off: from the queue to the writer thread taking it
- begin: the writer thread opening the write transaction
- stage + put: validating, building the stored value, ``put``
- LMDB commit: the durable commit (data sync, then meta page)
- publish: making the commit visible in memory
- wake trio: from the writer thread's ``run_sync_soon`` to the trio callback
- resume: from the callback to ``append`` returning
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio

from broker.log import committer as committer_module
from broker.log import open_log
from broker.log import store as store_module
from broker.log import writer as writer_module

STAGES = (
    "pack",
    "hand-off",
    "begin",
    "stage + put",
    "LMDB commit",
    "publish",
    "wake trio",
    "resume",
    "total",
)


def _wrap(
    owner: type, name: str, before: str | None, after: str | None, marks: dict[str, float]
) -> Callable[[], None]:
    """Timestamp a method's entry and exit into ``marks``; returns the undo."""
    original = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before:
            marks[before] = time.perf_counter()
        result = original(*args, **kwargs)
        if after:
            marks[after] = time.perf_counter()
        return result

    setattr(owner, name, wrapped)
    return lambda: setattr(owner, name, original)


async def _measure(path: str, appends: int) -> list[tuple[float, ...]]:
    marks: dict[str, float] = {}
    undo = [
        _wrap(committer_module.GroupCommitter, "submit", "submit", None, marks),
        _wrap(store_module.LogStore, "commit", "commit", "committed", marks),
        _wrap(store_module.LogStore, "_apply", "apply", "applied", marks),
        _wrap(store_module.LogStore, "_publish", "publish", None, marks),
        _wrap(writer_module.Log, "_committed", "callback", None, marks),
    ]
    rows: list[tuple[float, ...]] = []
    try:
        async with open_log(path) as log:
            desc = await log.create_stream("cycle", 1)
            records = [(f"key-{i}", os.urandom(100)) for i in range(500)]
            for _ in range(appends):
                start = time.perf_counter()
                await log.append("cycle", {0: records}, incarnation=desc.incarnation)
                end = time.perf_counter()
                m = marks
                rows.append(
                    (
                        m["submit"] - start,
                        m["commit"] - m["submit"],
                        m["apply"] - m["commit"],
                        m["applied"] - m["apply"],
                        m["publish"] - m["applied"],
                        m["committed"] - m["publish"],
                        m["callback"] - m["committed"],
                        end - m["callback"],
                        end - start,
                    )
                )
    finally:
        for restore in undo:
            restore()
    return rows


def main(argv: list[str]) -> int:
    appends = int(argv[0]) if argv else 4000
    with tempfile.TemporaryDirectory() as path:
        rows = trio.run(_measure, path, appends)
    steady = rows[len(rows) // 10 :]
    print(f"one appender, 500 x 100 B records per append, {len(steady)} appends measured")
    for i, stage in enumerate(STAGES):
        print(f"  {stage:12} {statistics.median(r[i] for r in steady) * 1e6:8.1f} us (median)")
    print(f"command: python -m bench.cycle {appends}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

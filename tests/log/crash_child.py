"""The child process of the crash test: append forever, acknowledge each durable append.

Run as ``python crash_child.py DATA_DIR ACK_FILE SEED RUN``. It opens the log,
creates the stream if it is missing, and runs ``TASKS`` concurrent appenders.
Each append is identified by ``(run, task, n)``; its records are generated
from that identity and the seed (``append_records``), so the parent can
regenerate the exact bytes, and every record's data starts with
``b"<run>:<task>:<n>:<i>:"`` so that a record found in the log says which
append it came from. Only after ``await log.append`` returned (the commit is
durable) does the task write one JSON line to the acknowledgement file with
one ``os.write`` on an ``O_APPEND`` descriptor; then it starts its next append.

The parent kills this process with SIGKILL; as a safety net it also exits by
itself after ``MAX_SECONDS``.
"""

from __future__ import annotations

import json
import os
import random
import sys

import trio

from broker.errors import ResourceNotFoundError
from broker.hashing import ShardRouter
from broker.log import open_log

STREAM = "crash"
SHARDS = 4
TASKS = 4
MAX_SECONDS = 120


def append_records(seed: int, run: int, task: int, n: int) -> list[tuple[str, bytes]]:
    """The records of append ``n`` of ``task`` in ``run``: deterministic from the identity."""
    rng = random.Random(f"{seed}:{run}:{task}:{n}")
    count = rng.choice((1, 2, 3, rng.randint(1, 30), rng.randint(1, 200)))
    records = []
    for i in range(count):
        key = rng.choice(("k", "ключ", "键", "🔑")) + str(rng.randrange(10_000))
        data = f"{run}:{task}:{n}:{i}:".encode() + rng.randbytes(rng.choice((0, 7, 100, 700)))
        records.append((key, data))
    return records


def identity(data: bytes) -> tuple[int, int, int, int]:
    """``(run, task, n, i)`` of a record, from the prefix of its data."""
    run, task, n, i, _ = data.split(b":", 4)
    return int(run), int(task), int(n), int(i)


async def _appender(log, router, incarnation, seed, run, task, ack_fd) -> None:  # type: ignore[no-untyped-def]
    n = 0
    while True:
        grouped = router.group(append_records(seed, run, task, n))
        result = await log.append(STREAM, grouped, incarnation=incarnation)
        ranges = {str(index): list(r) for index, r in result.ranges.items()}
        line = json.dumps({"run": run, "task": task, "n": n, "ranges": ranges}) + "\n"
        os.write(ack_fd, line.encode())
        n += 1


async def main(data_dir: str, ack_path: str, seed: int, run: int) -> None:
    ack_fd = os.open(ack_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with trio.move_on_after(MAX_SECONDS):
        async with open_log(data_dir) as log:
            try:
                desc = log.describe(STREAM)
            except ResourceNotFoundError:
                desc = await log.create_stream(STREAM, SHARDS)
            router = ShardRouter(desc.shards)
            async with trio.open_nursery() as nursery:
                for task in range(TASKS):
                    nursery.start_soon(
                        _appender, log, router, desc.incarnation, seed, run, task, ack_fd
                    )


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))

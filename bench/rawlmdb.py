"""Baselines on raw py-lmdb: what the hardware and the bindings give without the log.

``RawWriter`` commits pre-encoded batch values durably, a given (possibly
fractional) number of values per commit; ``read_values`` walks stored batch
values with one cursor and unpacks each payload with ``msgpack.unpackb``. Both
open LMDB as the log does (``broker.log.env``): sync and metasync on, no
writemap, no readahead, no meminit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lmdb
import msgpack

from broker.log import batch as fmt
from broker.log import keys

#: Virtual size only: without writemap LMDB grows the file as it writes.
MAP_SIZE = 64 << 30
#: The named databases of the log's environment (``broker.log.env.DATABASES``), and some room.
MAX_DBS = 8


def open_env(path: str) -> Any:
    return lmdb.open(
        path,
        map_size=MAP_SIZE,
        max_dbs=MAX_DBS,
        sync=True,
        metasync=True,
        writemap=False,
        readahead=False,
        meminit=False,
    )


@dataclass(frozen=True, slots=True)
class WriteRun:
    """What ``write_values`` measured (after its warm-up)."""

    seconds: float
    commits: int
    values: int
    records: int
    value_bytes: int


class RawWriter:
    """Durable commits of pre-encoded values into a fresh environment, round after round.

    Values go round-robin over ``shards`` under the log's batch keys
    ``(incarnation 1, shard, first offset)``; the environment stays open between
    ``run`` calls, so that rounds can alternate with the log's.
    """

    def __init__(
        self, path: str, values: Sequence[bytes], records_per_value: int, shards: int
    ) -> None:
        self._env = open_env(path)
        self._db = self._env.open_db(b"batches")
        self._values = list(values)
        self._records_per_value = records_per_value
        self._shards = shards
        self._next_offset = [1] * shards
        self._written = 0

    def close(self) -> None:
        self._env.close()

    def run(self, *, per_commit: float, warmup: float, duration: float) -> WriteRun:
        """Commit for ``warmup`` + ``duration`` seconds; measure the last ``duration``.

        Commit k holds ``floor((k + 1) * per_commit) - floor(k * per_commit)``
        values (at least one), so the mean over the run is ``per_commit``.
        """
        per_commit = max(1.0, per_commit)
        env, db, values = self._env, self._db, self._values
        shards, next_offset, pool = self._shards, self._next_offset, len(self._values)
        step = self._records_per_value
        written = self._written
        commits = value_bytes = 0
        due = float(written)
        clock = time.perf_counter
        now = clock()
        measure_from = now + warmup
        end = measure_from + duration
        mark: tuple[float, int, int, int] | None = None
        while True:
            now = clock()
            if mark is None and now >= measure_from:
                mark = (now, commits, written, value_bytes)
            if now >= end:
                break
            due += per_commit
            with env.begin(write=True, db=db) as txn:
                while written < int(due):
                    shard = written % shards
                    value = values[written % pool]
                    txn.put(keys.batch(1, shard, next_offset[shard]), value)
                    next_offset[shard] += step
                    value_bytes += len(value)
                    written += 1
            commits += 1
        self._written = written
        assert mark is not None
        t0, c0, w0, b0 = mark
        n = written - w0
        return WriteRun(now - t0, commits - c0, n, n * step, value_bytes - b0)


@dataclass(frozen=True, slots=True)
class ReadRun:
    seconds: float
    values: int
    records: int


def read_values(path: str, db_name: bytes = b"batches") -> ReadRun:
    """Walk every stored value of ``db_name`` once, unpacking each payload to tuples."""
    env = open_env(path)
    try:
        db = env.open_db(db_name)
        unpackb = msgpack.unpackb
        skip = fmt.HEADER_SIZE
        values = records = 0
        clock = time.perf_counter
        with env.begin(db=db) as txn:
            start = clock()
            for value in txn.cursor().iternext(keys=False, values=True):
                records += len(unpackb(memoryview(value)[skip:], use_list=False))
                values += 1
            seconds = clock() - start
        return ReadRun(seconds, values, records)
    finally:
        env.close()

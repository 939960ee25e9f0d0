"""The conformance suite's base: what an implementation provides, and the helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from broker.log import Log, LogConfig

HOUR_MS = 3_600_000
MAX_SHARDS = 16

#: One record as a test sees it: (offset, arrival_ms, partition_key, data).
Row = tuple[int, int, str, bytes]


class FakeClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.now = start_ms

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def make_records(count: int, tag: str = "r", size: int = 0) -> list[tuple[str, bytes]]:
    """``count`` distinct ``(partition_key, data)`` pairs; ``size`` pads the data."""
    return [(f"{tag}-{i}", f"{tag}:{i}:".encode().ljust(size, b".")) for i in range(count)]


def read_all(log: Log, stream: str, index: int, offset: int = 0, **bounds: int) -> list[Row]:
    """Every record from ``offset`` to the shard's end, read in as many reads as it takes."""
    rows: list[Row] = []
    for _ in range(100_000):
        result = log.read(stream, index, offset, **bounds)
        rows.extend(result.records())
        if result.count == 0:
            return rows
        assert result.next_offset > offset
        offset = result.next_offset
    raise AssertionError("read_all did not reach the end of the shard")


def payloads(rows: Sequence[Row]) -> list[tuple[str, bytes]]:
    return [(key, data) for _, _, key, data in rows]


def offsets(rows: Sequence[Row]) -> list[int]:
    return [row[0] for row in rows]


class ConformanceBase:
    """What an implementation provides (``open_log``), and the helpers every part uses."""

    path: str
    clock: FakeClock

    # -- what an implementation provides -------------------------------------

    def open_log(
        self, path: str, config: LogConfig, clock: Callable[[], int]
    ) -> AbstractAsyncContextManager[Log]:
        raise NotImplementedError

    def stored_keys(self, log: Log, incarnation: int) -> int | None:
        """How many stored keys still belong to a stream incarnation; None: cannot tell."""
        return None

    # -- helpers --------------------------------------------------------------

    @pytest.fixture(autouse=True)
    def _conformance_setup(self, tmp_path: Path) -> None:
        self.path = str(tmp_path / "log")
        self.clock = FakeClock()

    def config(self, **changes: Any) -> LogConfig:
        # Maintenance runs only when a test asks for it (``maintain``), so that
        # what it trims depends on the fake clock alone.
        settings: dict[str, Any] = {
            "max_shards_per_stream": MAX_SHARDS,
            "maintenance_interval": 1e9,
        }
        settings.update(changes)
        return LogConfig(**settings)

    def opened(self, **changes: Any) -> AbstractAsyncContextManager[Log]:
        return self.open_log(self.path, self.config(**changes), self.clock)

    async def settle(self, log: Log, done: Callable[[], bool], limit: int = 500) -> int:
        """Run maintenance steps until ``done()``; how many it took.

        For work larger than one ``delete_chunk``, which maintenance spreads
        over several commits.
        """
        for step in range(1, limit + 1):
            await log.maintain()
            if done():
                return step
        raise AssertionError(f"maintenance did not finish in {limit} steps")

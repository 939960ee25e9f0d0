"""The append queue's bound: appenders wait for room, and stamps keep queue order."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from broker.log import LogConfig, open_log
from broker.log.committer import GroupCommitter

from .conformance.base import FakeClock


async def test_a_stamped_append_that_waits_for_room_is_stamped_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    async with open_log(tmp_path / "data", LogConfig(max_pending_bytes=1000), clock=clock) as log:
        await log.create_stream("s", 1)
        # The queue's fill level, held by the test (the writer thread would empty it
        # whenever it likes): full, so the appender below must wait.
        queued = {"bytes": 1000}
        monkeypatch.setattr(GroupCommitter, "queued_bytes", property(lambda self: queued["bytes"]))
        stamped = log.now_ms()
        results = []

        async def append() -> None:
            results.append(await log.append_stamped("s", {0: [(stamped, "k", b"late")]}, stamped))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(append)
            await trio.testing.wait_all_tasks_blocked()
            assert results == [], "the appender waits while the queue is full"
            later = clock.advance(250)
            queued["bytes"] = 0
            log._space.unpark_all()
        assert results and results[0].ranges == {0: (1, 1)}
        (record,) = log.read("s", 0, 1).records()
        assert record == (1, later, "k", b"late")  # the wait's end, not the first stamp


async def test_a_stamped_append_with_room_keeps_its_stamp(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_log(tmp_path / "data", LogConfig(), clock=clock) as log:
        await log.create_stream("s", 1)
        stamped = log.now_ms()
        await log.append_stamped("s", {0: [(stamped, "k", b"x"), (stamped, "j", b"y")]}, stamped)
        assert [r[1] for r in log.read("s", 0, 1).records()] == [stamped, stamped]

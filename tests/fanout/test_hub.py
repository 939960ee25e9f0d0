"""The fan-out hub on a real log: one encoding for all, LMDB for laggards, no gap, no duplicate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from broker.errors import ResourceInUseError
from broker.fanout.hub import FanoutHub, HubConfig, Subscription
from broker.log import Log, LogConfig, open_log


class ListSink:
    """Collects a subscription's events; ``gate`` (if set) holds every send until opened."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.gate: trio.Event | None = None
        self.changed = trio.Event()

    async def send(self, chunk: bytes) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.chunks.append(chunk)
        self.changed.set()
        self.changed = trio.Event()

    def send_nowait(self, chunk: bytes) -> bool:
        if self.gate is not None and not self.gate.is_set():
            return False  # "no room": the subscription's task will send it
        self.chunks.append(chunk)
        self.changed.set()
        self.changed = trio.Event()
        return True

    def events(self) -> list[dict[str, Any]]:
        unpacker = msgpack.Unpacker(raw=False)
        for chunk in self.chunks:
            unpacker.feed(chunk)
        return list(unpacker)

    def records(self) -> list[tuple[int, bytes]]:
        out = []
        for event in self.events():
            if event["Type"] == "records":
                first = int(event["FirstSequenceNumber"])
                out += [(first + i, r[2]) for i, r in enumerate(event["Records"])]
        return out

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        with trio.fail_after(timeout):
            while not predicate(self):
                await self.changed.wait()


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[Log]:
    async with open_log(tmp_path / "data", LogConfig(maintenance_interval=3600.0)) as opened:
        yield opened


@pytest.fixture
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stalled subscription is cut 0.2 s after its cause, not STALL_GRACE_S."""
    from broker.fanout import hub as hub_module

    monkeypatch.setattr(hub_module, "STALL_GRACE_S", 0.2)


async def put(log: Log, *payloads: bytes, index: int = 0) -> None:
    await log.append("s", {index: [("k", p) for p in payloads]})


def data(sink: ListSink) -> list[bytes]:
    return [d for _seq, d in sink.records()]


def no_gap(sink: ListSink) -> None:
    seqs = [s for s, _ in sink.records()]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))) if seqs else True


async def test_subscribers_get_the_stored_then_the_live_records_as_the_same_bytes(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    await put(log, b"a", b"b")
    hub = FanoutHub(log, HubConfig(heartbeat_s=60))
    sinks = [ListSink() for _ in range(3)]
    async with trio.open_nursery() as nursery:
        subs = [hub.subscribe(f"c{i}", desc, 0, 1) for i in range(3)]
        for sub, sink in zip(subs, sinks, strict=True):
            nursery.start_soon(sub.run, sink)
        for sink in sinks:
            await sink.wait_for(lambda s: len(data(s)) == 2)
        await put(log, b"c", b"d")
        for sink in sinks:
            await sink.wait_for(lambda s: len(data(s)) == 4)
        await put(log, b"e")
        for sink in sinks:
            await sink.wait_for(lambda s: len(data(s)) == 5)
        hub.close()
        for sub in subs:
            sub.interrupt()
    for sink in sinks:
        assert data(sink) == [b"a", b"b", b"c", b"d", b"e"]
        no_gap(sink)
    # The live batch was encoded once: every subscriber holds the same object.
    assert sinks[0].chunks[-1] is sinks[1].chunks[-1] is sinks[2].chunks[-1]


async def test_a_laggard_reads_from_the_store_and_rejoins_without_gap(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    hub = FanoutHub(log, HubConfig(heartbeat_s=60, tail_bytes=200))
    slow, fast = ListSink(), ListSink()
    slow.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.subscribe("slow", desc, 0, 1).run, slow)
        nursery.start_soon(hub.subscribe("fast", desc, 0, 1).run, fast)
        for i in range(30):
            await put(log, bytes([i]) * 20, bytes([i]) * 21)
        await fast.wait_for(lambda s: len(data(s)) == 60)
        assert hub.feeds[(desc.incarnation, 0)].nbytes <= 200 + 200  # bounded (one entry over)
        slow.gate.set()  # the slow reader wakes far behind the feed
        await slow.wait_for(lambda s: len(data(s)) == 60)
        await put(log, b"live")
        await slow.wait_for(lambda s: len(data(s)) == 61)
        hub.close()
        for sub in list(hub.active.values()):
            sub.interrupt()
    assert data(slow) == [*data(fast)[:60], b"live"]
    no_gap(slow)


async def test_a_subscription_inside_a_batch_starts_at_its_position(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    await put(log, b"1", b"2", b"3", b"4")
    hub = FanoutHub(log, HubConfig(heartbeat_s=60))
    sink = ListSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.subscribe("c", desc, 0, 3).run, sink)
        await sink.wait_for(lambda s: len(data(s)) == 2)
        await put(log, b"5")
        await sink.wait_for(lambda s: len(data(s)) == 3)
        hub.close()
        for sub in list(hub.active.values()):
            sub.interrupt()
    assert data(sink) == [b"3", b"4", b"5"]


async def test_heartbeats_while_idle_and_a_clean_end_after_the_lifetime(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    await put(log, b"x")
    hub = FanoutHub(log, HubConfig(heartbeat_s=0.02, lifetime_s=0.3))
    sink = ListSink()
    with trio.fail_after(10):
        await hub.subscribe("c", desc, 0, 2).run(sink)  # returns when the lifetime ends
    events = sink.events()
    assert events and all(e["Type"] == "heartbeat" for e in events)
    # Starting after the only record: the continuation is that record.
    assert events[0]["ContinuationSequenceNumber"] == str(int(_seq(desc, 1)))
    assert not hub.active


def _seq(desc: Any, offset: int) -> int:
    from broker.sequence import base

    return base(desc.incarnation, 0) + offset


async def test_takeover_refused_within_the_window_then_the_old_one_ends(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    hub = FanoutHub(log, HubConfig(heartbeat_s=60, takeover_window_s=3600))
    first = hub.subscribe("c", desc, 0, 1)
    old = ListSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first.run, old)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ResourceInUseError):
            hub.subscribe("c", desc, 0, 1)
        hub.config = HubConfig(heartbeat_s=60, takeover_window_s=0)
        second = hub.subscribe("c", desc, 0, 1)
        await old.wait_for(lambda s: bool(s.events()))
        hub.close()
        second.interrupt()
    assert old.events()[-1]["Type"] == "error"
    assert old.events()[-1]["ErrorCode"] == "ResourceInUseException"
    assert first.finished


async def test_the_end_of_a_closed_shard_names_its_children(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    await put(log, b"old")
    hub = FanoutHub(log, HubConfig(heartbeat_s=60))
    sink = ListSink()
    sub: Subscription = hub.subscribe("c", desc, 0, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sub.run, sink)
        await sink.wait_for(lambda s: len(data(s)) == 1)
        await log.split_shard("s", 0, 1 << 127)
        await sink.wait_for(lambda s: s.events()[-1]["Type"] == "end")
    end = sink.events()[-1]
    assert end["ContinuationSequenceNumber"] is None
    assert sorted(c["ShardId"] for c in end["ChildShards"]) == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]


async def test_a_subscriber_behind_by_several_commits_gets_them_in_one_write(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    hub = FanoutHub(log, HubConfig(heartbeat_s=60))
    sink = ListSink()
    sink.gate = trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.subscribe("c", desc, 0, 1).run, sink)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(5):
            await put(log, bytes([i]))  # five commits while the subscriber waits to send
        sink.gate.set()
        await sink.wait_for(lambda s: len(data(s)) == 5)
        hub.close()
        for sub in list(hub.active.values()):
            sub.interrupt()
    assert data(sink) == [bytes([i]) for i in range(5)]
    assert len(sink.chunks) <= 3  # the first alone (it was being sent), the rest joined


async def test_parked_subscribers_get_new_batches_written_without_a_wake(log: Log) -> None:
    desc = await log.create_stream("s", 1)
    hub = FanoutHub(log, HubConfig(heartbeat_s=60))
    sinks = [ListSink() for _ in range(3)]
    async with trio.open_nursery() as nursery:
        subs = [hub.subscribe(f"c{i}", desc, 0, 1) for i in range(3)]
        for sub, sink in zip(subs, sinks, strict=True):
            nursery.start_soon(sub.run, sink)
        await trio.testing.wait_all_tasks_blocked()
        assert all(sub.machine.state.value == "TAIL" for sub in subs)
        await put(log, b"a")
        # Written by the commit listener itself: each sink has it, the tasks still parked.
        assert all(data(sink) == [b"a"] for sink in sinks)
        assert all(sub._wake is not None and not sub._wake.is_set() for sub in subs)
        assert sinks[0].chunks[0] is sinks[1].chunks[0] is sinks[2].chunks[0]
        hub.close()
        for sub in subs:
            sub.interrupt()


async def test_a_subscriber_that_stops_reading_is_cut_after_its_lifetime(
    log: Log, short_grace: None
) -> None:
    desc = await log.create_stream("s", 1)
    await put(log, b"x")
    hub = FanoutHub(log, HubConfig(heartbeat_s=0.05, lifetime_s=0.3))
    sink = ListSink()
    sink.gate = trio.Event()  # never opened: the subscriber reads nothing
    subscription = hub.subscribe("c", desc, 0, 1)
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError, match="stopped reading"):
        await subscription.run(sink)
    assert subscription.finished and not hub.active
    assert hub.statistics()["feeds"] == 0  # nothing held for it any more


async def test_a_subscriber_that_waited_once_is_not_cut_later(
    log: Log, short_grace: None, mock_clock: trio.testing.MockClock
) -> None:
    # A batch the commit listener cannot write (no room) wakes the subscription's
    # task instead; that wake-up must not start the stall grace, or every subscriber
    # that once had to wait would be cut STALL_GRACE_S later.
    desc = await log.create_stream("s", 1)
    hub = FanoutHub(log, HubConfig(heartbeat_s=60, lifetime_s=3600))
    sink = ListSink()
    subscription = hub.subscribe("c", desc, 0, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(subscription.run, sink)
        await trio.testing.wait_all_tasks_blocked()  # parked at the tail
        sink.gate = trio.Event()  # no room for a while
        await put(log, b"a")
        await trio.testing.wait_all_tasks_blocked()  # its task waits in send
        mock_clock.jump(5)  # far beyond the grace
        await trio.testing.wait_all_tasks_blocked()  # a cut would happen here
        sink.gate.set()
        await sink.wait_for(lambda s: data(s) == [b"a"])
        await put(log, b"b")
        await sink.wait_for(lambda s: data(s) == [b"a", b"b"])
        assert not subscription.finished
        hub.close()
    assert data(sink) == [b"a", b"b"]


async def test_a_stalled_subscription_taken_over_is_cut_after_the_grace(
    log: Log, short_grace: None
) -> None:
    desc = await log.create_stream("s", 1)
    await put(log, b"x")
    hub = FanoutHub(log, HubConfig(heartbeat_s=60, lifetime_s=3600, takeover_window_s=0))
    stalled = ListSink()
    stalled.gate = trio.Event()
    first = hub.subscribe("c", desc, 0, 1)
    cut: list[BaseException] = []

    async def run_first() -> None:
        try:
            await first.run(stalled)
        except trio.BrokenResourceError as exc:
            cut.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_first)
            await trio.testing.wait_all_tasks_blocked()
            second = hub.subscribe("c", desc, 0, 1)  # takes over
            fresh = ListSink()
            nursery.start_soon(second.run, fresh)
            await fresh.wait_for(lambda s: data(s) == [b"x"])
            while not first.finished:
                await trio.sleep(0.01)
            second.interrupt()
            hub.close()
    assert cut and first.finished

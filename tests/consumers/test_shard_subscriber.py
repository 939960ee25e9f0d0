"""``ShardSubscriber``: resubscription, backoff and errors, against a scripted source.

Tests that look at waits run on trio's ``autojump_clock``: the clock jumps
over sleeps, so the backoff schedule is checked exactly and fast.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import trio
import trio.testing

from broker.client import ConnectionLostError, EndEvent, RecordsEvent
from broker.errors import (
    InternalFailureError,
    ResourceInUseError,
    ResourceNotFoundError,
    SerializationError,
)
from consumers.subscriber import Backoff, ShardSubscriber, position_after
from tests.consumers.fakes import HOLD, FakeSource, Refuse, end, error, heartbeat, records

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1"
S0 = "shardId-000000000000"
TRIM = {"Type": "TRIM_HORIZON"}
LIMIT_S = 60


def after(sequence: int) -> dict[str, Any]:
    return {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": str(sequence)}


async def take(subscriber: ShardSubscriber, count: int) -> list[Any]:
    events = []
    with trio.fail_after(LIMIT_S):
        while len(events) < count:
            events.append(await subscriber.__anext__())
    return events


def gaps(source: FakeSource) -> list[float]:
    times = [call.at for call in source.calls]
    return [b - a for a, b in itertools.pairwise(times)]


def test_backoff_grows_exponentially_within_its_jitter() -> None:
    backoff = Backoff(initial_s=1, max_s=8, multiplier=2)
    rng = random.Random(3)
    for attempt, step in enumerate([1, 2, 4, 8, 8, 8], 1):
        assert backoff.step(attempt) == step
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert max(delays) - min(delays) > step / 4  # jittered, not fixed


def test_the_next_position_is_after_the_continuation_once_there_is_one() -> None:
    start = {"Type": "AT_TIMESTAMP", "Timestamp": 1234}
    assert position_after(None, start) == start
    assert position_after(2**100, start) == after(2**100)


async def test_it_resubscribes_after_the_lifetime_from_the_last_continuation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    source.script(
        S0,
        [records(10, b"a", b"b"), heartbeat(11)],  # then the body ends: the lifetime ran out
        [heartbeat(11)],
        [records(12, b"c"), end(("shardId-000000000001", [S0]), ("shardId-000000000002", [S0]))],
    )
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        with trio.fail_after(LIMIT_S):
            events = [event async for event in subscriber]
    assert [c.position for c in source.calls] == [TRIM, after(11), after(11)]
    assert gaps(source) == [0, 0]  # a clean end is followed at once, without a backoff
    data = [r[2] for e in events if isinstance(e, RecordsEvent) for r in e.records]
    assert data == [b"a", b"b", b"c"]
    assert isinstance(events[-1], EndEvent)
    assert subscriber.ended
    assert subscriber.child_shards is not None
    assert [c["ShardId"] for c in subscriber.child_shards] == [
        "shardId-000000000001",
        "shardId-000000000002",
    ]
    assert source.open == 0
    assert subscriber.subscriptions == 3


async def test_until_an_event_arrives_the_callers_position_is_used_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = {"Type": "AT_TIMESTAMP", "Timestamp": 1234}
    source = FakeSource()
    source.script(S0, [ConnectionLostError("lost")], [records(5, b"x"), HOLD])
    async with ShardSubscriber(source, ARN, S0, start) as subscriber:
        [event] = await take(subscriber, 1)
    assert isinstance(event, RecordsEvent)
    assert [c.position for c in source.calls] == [start, start]
    assert source.open == 0


async def test_connection_losses_back_off_exponentially_and_reset_after_an_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lost = ConnectionLostError("the broker closed the connection")
    source = FakeSource()
    source.script(
        S0,
        *[[lost]] * 5,
        [records(1, b"a"), lost],
        [records(2, b"b"), HOLD],
    )
    backoff = Backoff(initial_s=1, max_s=8, multiplier=2)
    async with ShardSubscriber(source, ARN, S0, TRIM, backoff=backoff, rng=random.Random(1)) as s:
        events = await take(s, 2)
    assert [e.records[0][2] for e in events] == [b"a", b"b"]
    waits = gaps(source)
    for wait, step in zip(waits, [1, 2, 4, 8, 8, 1], strict=True):
        assert step / 2 <= wait <= step
    assert len(set(waits)) == len(waits)  # jittered
    assert [c.position for c in source.calls] == [TRIM] * 6 + [after(1)]
    assert s.last_error is lost


async def test_resource_in_use_before_streaming_is_retried_past_the_takeover_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    in_use = ResourceInUseError("Another active subscription exists ... 5 s after it started")
    source = FakeSource()
    source.script(S0, *[Refuse(in_use)] * 6, [records(1, b"a"), HOLD])
    started = trio.current_time()
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        [event] = await take(subscriber, 1)
    assert isinstance(event, RecordsEvent)
    assert len(source.calls) == 7
    # Default backoff: steps 0.2, 0.4, ... 6.4 s; at least half of each is waited.
    assert trio.current_time() - started >= (0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 6.4) / 2
    assert source.open == 0


async def test_a_takeover_error_event_is_raised(autojump_clock: trio.testing.MockClock) -> None:
    source = FakeSource()
    source.script(S0, [records(1, b"a"), error("ResourceInUseException", "taken over")])
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        await take(subscriber, 1)
        with pytest.raises(ResourceInUseError, match="taken over"):
            await take(subscriber, 1)
    assert len(source.calls) == 1
    assert source.open == 0


async def test_a_retriable_error_event_resubscribes_after_a_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    source.script(
        S0, [records(1, b"a"), error("InternalFailureException")], [records(2, b"b"), HOLD]
    )
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        events = await take(subscriber, 2)
    assert [e.records[0][2] for e in events] == [b"a", b"b"]
    assert [c.position for c in source.calls] == [TRIM, after(1)]
    assert 0.1 <= gaps(source)[0] <= 0.2
    assert isinstance(subscriber.last_error, InternalFailureError)


@pytest.mark.parametrize(
    "script",
    [
        Refuse(ResourceNotFoundError("Stream s not found")),
        [records(1, b"a"), error("ResourceNotFoundException", "Stream s was deleted")],
    ],
    ids=["before-streaming", "error-event"],
)
async def test_errors_that_are_not_retriable_are_raised_at_once(script: Any) -> None:
    source = FakeSource()
    source.script(S0, script)
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        with pytest.raises(ResourceNotFoundError), trio.fail_after(LIMIT_S):
            async for _ in subscriber:
                pass
    assert len(source.calls) == 1


async def test_an_undecodable_body_is_raised() -> None:
    source = FakeSource()
    source.script(S0, [SerializationError("the event stream is not valid msgpack")])
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        with pytest.raises(SerializationError):
            await take(subscriber, 1)


async def test_it_gives_up_after_max_attempts_with_the_last_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    source.script(S0, *[[ConnectionLostError(f"lost {i}")] for i in range(3)])
    subscriber = ShardSubscriber(source, ARN, S0, TRIM, backoff=Backoff(max_attempts=2))
    with pytest.raises(ConnectionLostError, match="lost 2"):
        await take(subscriber, 1)
    assert len(source.calls) == 3


async def test_bodies_without_events_back_off_instead_of_spinning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    source.script(S0, [], [], [records(1, b"a"), HOLD])
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        await take(subscriber, 1)
    waits = gaps(source)
    assert 0.1 <= waits[0] <= 0.2
    assert 0.2 <= waits[1] <= 0.4


async def test_leaving_ends_the_open_subscription() -> None:
    source = FakeSource()
    source.script(S0, [records(1, b"a"), HOLD])
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        await take(subscriber, 1)
        assert source.open == 1
    assert source.open == 0
    assert source.closed == 1


async def test_a_cancelled_wait_keeps_the_subscription_and_its_place() -> None:
    gate = trio.Event()
    source = FakeSource()
    source.script(S0, [records(1, b"a"), gate, records(2, b"b"), HOLD])
    async with ShardSubscriber(source, ARN, S0, TRIM) as subscriber:
        await take(subscriber, 1)
        with trio.move_on_after(0.01):
            await subscriber.__anext__()
        gate.set()
        [event] = await take(subscriber, 1)
    assert event.records[0][2] == b"b"
    assert len(source.calls) == 1


async def test_a_silent_subscription_is_taken_for_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    source = FakeSource()
    source.script(S0, [records(1, b"a"), HOLD], [records(2, b"b"), HOLD])
    async with ShardSubscriber(source, ARN, S0, TRIM, idle_timeout_s=10) as subscriber:
        events = await take(subscriber, 2)
    assert [e.records[0][2] for e in events] == [b"a", b"b"]
    assert [c.position for c in source.calls] == [TRIM, after(1)]
    assert 10 + 0.1 <= gaps(source)[0] <= 10 + 0.2  # the silence, then one backoff
    assert isinstance(subscriber.last_error, ConnectionLostError)
    assert source.open == 0

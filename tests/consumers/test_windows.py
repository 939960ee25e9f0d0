"""Tumbling windows in ``ShardProcessor``: state carried, the final flag, windows ending early.

The harness is ``test_batching``'s: scripted callables writing one ordered
log, trio's ``autojump_clock``, and a wall clock at ``BASE`` + trio time
(``BASE`` is a multiple of 60 s, so minute windows start at t = 0, 60, ...).
"""

from __future__ import annotations

import trio
import trio.testing

from consumers.batching import EVENT_OVERHEAD_BYTES, BatchingConfig, Invocation, InvokeOutcome
from tests.consumers.test_batching import BASE, LIMIT_S, Handler, Harness, make, numbers, seq


def counting(fail_first_without_state: bool = False) -> Handler:
    """A window handler that counts records in its state (and once forgets the state)."""
    forgot = [fail_first_without_state]

    async def handler(invocation: Invocation) -> InvokeOutcome:
        if forgot[0]:
            forgot[0] = False
            return InvokeOutcome(ok=True, response={"answer": 42})
        assert invocation.state is not None
        total = invocation.state.get("count", 0) + len(invocation.records)
        return InvokeOutcome(ok=True, response={"state": {"count": total}})

    return handler


async def test_window_state_is_carried_and_the_final_invocation_comes_after_the_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=2, tumbling_window_s=60), counting(True))
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            await trio.sleep(1)
            await h.processor.put(make(0, 3))
            await h.wait_checkpoint(seq(2))
            assert 61 <= trio.current_time() <= 63  # window end + grace
            await trio.sleep(9)
            await h.processor.put(make(3, 1))  # at t = 70: the window [60, 120)
            await h.processor.end_of_shard()
    inv = h.invocations
    assert [numbers(i.records) for i in inv] == [[0, 1], [0, 1], [2], [], [3]]
    assert [i.state for i in inv] == [{}, {}, {"count": 2}, {"count": 3}, {}]
    assert [i.is_final for i in inv] == [False, False, False, True, True]
    assert inv[3].window == (BASE, BASE + 60) and not inv[3].terminated_early
    assert inv[4].window == (BASE + 60, BASE + 120) and inv[4].terminated_early
    # Window 1's records were checkpointed only after its final invocation.
    final = h.position("invoke", lambda i: i.is_final)
    assert h.position("checkpoint", lambda _: True) > final
    assert h.processor.statistics().function_errors == 1  # the answer without state


async def test_a_later_record_closes_the_window_with_a_final_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=10, tumbling_window_s=60), counting())
    records = [*make(0, 2, at=BASE + 1), *make(2, 2, at=BASE + 61)]
    await h.feed(records)
    inv = h.invocations
    assert [numbers(i.records) for i in inv] == [[0, 1], [2, 3]]
    assert [i.is_final for i in inv] == [True, True]
    assert [i.terminated_early for i in inv] == [False, True]
    assert inv[1].state == {}  # a new window starts fresh


async def test_a_past_window_is_not_cut_while_a_backlog_is_read(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=2, tumbling_window_s=60), counting())
    with trio.fail_after(LIMIT_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.processor.run)
            for first in range(0, 9, 3):  # the window [-120, -60) s, read late, in puts
                await h.processor.put(make(first, 3, at=BASE - 100))
                await trio.sleep(0.5)
            await h.wait_checkpoint(seq(8))
            nursery.cancel_scope.cancel()
    inv = h.invocations
    assert sorted(n for i in inv for n in numbers(i.records)) == list(range(9))
    assert [i.is_final for i in inv].count(True) == 1 and inv[-1].is_final
    assert inv[-1].state == {"count": 9 - len(inv[-1].records)}
    assert all(i.window == (BASE - 120, BASE - 60) for i in inv)


async def test_a_window_that_fills_the_buffer_ends_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(
        BatchingConfig(batch_size=2, tumbling_window_s=60), counting(), max_buffered_records=4
    )
    await h.feed(make(0, 6, at=BASE + 1))
    inv = h.invocations
    assert [numbers(i.records) for i in inv] == [[0, 1], [2, 3], [4, 5]]
    assert inv[1].is_final and inv[1].terminated_early and inv[1].state == {"count": 2}
    # The rest of the records go to the next window, with fresh state.
    assert inv[2].window == (BASE + 60, BASE + 120) and inv[2].state == {}


def holding(blob_bytes: int) -> Handler:
    async def handler(invocation: Invocation) -> InvokeOutcome:
        return InvokeOutcome(ok=True, response={"state": {"blob": "x" * blob_bytes}})

    return handler


async def test_the_state_counts_against_the_payload_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Records count 100 bytes; the state returned is about 160.
    config = BatchingConfig(
        batch_size=10, tumbling_window_s=60, max_payload_bytes=EVENT_OVERHEAD_BYTES + 300
    )
    h = Harness(config, holding(150))
    await h.feed(make(0, 5, at=BASE + 1))
    assert h.batches() == [[0, 1], [2], [3], [4]]


async def test_a_window_whose_state_grows_too_big_ends_early(
    autojump_clock: trio.testing.MockClock,
) -> None:
    h = Harness(BatchingConfig(batch_size=1, tumbling_window_s=60), holding(1 << 20))
    await h.feed(make(0, 2, at=BASE + 1))
    inv = h.invocations
    assert [numbers(i.records) for i in inv] == [[0], [], [1]]
    assert inv[1].is_final and inv[1].terminated_early and inv[1].window == (BASE, BASE + 60)
    assert inv[2].window == (BASE + 60, BASE + 120) and inv[2].state == {} and inv[2].is_final

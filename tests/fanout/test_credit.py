"""Byte credit: own bounds, the global budget, fair waiting, close, and the rate limit."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.fanout.credit import ByteBudget, Credit, TokenBucket

# -- without waiting ------------------------------------------------------------


def test_try_take_respects_the_own_bound_and_release_gives_back() -> None:
    budget = ByteBudget(1000)
    credit = Credit(budget, 100)
    assert credit.try_take(60)
    assert not credit.try_take(41)
    assert credit.try_take(40)
    assert (credit.held, budget.held, credit.available) == (100, 100, 0)
    credit.release(70)
    assert (credit.held, budget.held, credit.available) == (30, 30, 70)
    with pytest.raises(ValueError):
        credit.release(31)
    with pytest.raises(ValueError):
        credit.try_take(-1)


def test_one_chunk_over_the_own_bound_passes_when_nothing_is_held() -> None:
    budget = ByteBudget(1000)
    credit = Credit(budget, 100)
    assert credit.try_take(500)
    assert not credit.try_take(1)
    credit.release(450)
    assert not credit.try_take(51)  # 50 held: the bound applies again
    assert credit.try_take(50)


def test_the_global_budget_bounds_every_subscription_together() -> None:
    budget = ByteBudget(250)
    a, b, c = (Credit(budget, 100) for _ in range(3))
    assert a.try_take(100) and b.try_take(100)
    assert not c.try_take(51)
    assert c.available == 50
    assert c.try_take(50)
    assert budget.statistics().held == 250


def test_one_chunk_over_the_whole_budget_passes_only_when_the_broker_holds_nothing() -> None:
    budget = ByteBudget(100)
    a, b = Credit(budget, 1000), Credit(budget, 1000)
    assert a.try_take(10)
    assert not b.try_take(500)
    a.release(10)
    assert b.try_take(500)
    assert not a.try_take(1)  # nothing else while the budget is over
    b.release(500)
    assert a.try_take(1)


def test_close_gives_everything_back_and_further_use_is_closed() -> None:
    budget = ByteBudget(100)
    a, b = Credit(budget, 80), Credit(budget, 80)
    assert a.try_take(70)
    assert not b.try_take(40)
    a.close()
    a.close()  # idempotent
    assert (a.held, budget.held) == (0, 0)
    a.release(70)  # bytes in flight when it closed: nothing left to give back
    assert budget.held == 0
    assert b.try_take(40)
    with pytest.raises(trio.ClosedResourceError):
        a.try_take(1)


# -- waiting ----------------------------------------------------------------------


async def _taker(credit: Credit, n: int, log: list[str], name: str) -> None:
    try:
        await credit.take(n)
    except trio.ClosedResourceError:
        log.append(f"{name} closed")
        return
    log.append(name)


async def test_waiting_takers_are_granted_in_order_across_subscriptions() -> None:
    budget = ByteBudget(100)
    holder = Credit(budget, 100)
    subs = {name: Credit(budget, 100) for name in "BCDE"}
    assert holder.try_take(100)
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        for name, n in zip("BCDE", [60, 60, 50, 10], strict=True):
            nursery.start_soon(_taker, subs[name], n, log, name)
            await trio.testing.wait_all_tasks_blocked()
        assert budget.statistics().waiting == 4
        holder.release(100)
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["B"]  # C (60) does not fit beside B, and D and E queue behind C
        subs["B"].release(60)
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["B", "C"]  # D (50) does not fit beside C; E does, but waits its turn
        assert not holder.try_take(1)  # nobody jumps the queue
        subs["C"].release(60)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(log[2:]) == ["D", "E"]
    assert budget.held == 60


async def test_takers_of_one_subscription_are_granted_in_order() -> None:
    budget = ByteBudget(1000)
    credit = Credit(budget, 100)
    assert credit.try_take(100)
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        for name, n in zip("ABC", [80, 10, 10], strict=True):
            nursery.start_soon(_taker, credit, n, log, name)
            await trio.testing.wait_all_tasks_blocked()
        credit.release(20)
        await trio.testing.wait_all_tasks_blocked()
        assert log == []  # B and C would fit, but A is first
        credit.release(80)
        await trio.testing.wait_all_tasks_blocked()
        assert sorted(log) == ["A", "B", "C"]
    assert credit.held == 100


async def test_the_next_taker_of_a_subscription_follows_the_first_at_once() -> None:
    budget = ByteBudget(100)
    holder, credit = Credit(budget, 100), Credit(budget, 100)
    assert holder.try_take(100)
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_taker, credit, 30, log, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_taker, credit, 20, log, "second")
        await trio.testing.wait_all_tasks_blocked()
        holder.release(100)  # the budget grants the first; the second fits beside it
    assert sorted(log) == ["first", "second"]
    assert credit.held == 50


async def test_a_stalled_subscription_costs_the_others_nothing() -> None:
    budget = ByteBudget(300)
    stalled, other = Credit(budget, 100), Credit(budget, 100)
    assert stalled.try_take(100)  # its reader stopped: it never releases
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_taker, stalled, 100, log, "stalled")
        await trio.testing.wait_all_tasks_blocked()
        assert budget.statistics().waiting == 0  # waiting on its own bound only
        for i in range(10):
            await other.take(100)
            other.release(100)
            log.append(f"other {i}")
        assert log[-1] == "other 9" and "stalled" not in log
        stalled.close()
    assert log[-1] == "stalled closed"
    assert budget.held == 0


async def test_close_frees_all_it_held_and_wakes_its_takers_closed() -> None:
    budget = ByteBudget(100)
    closing, other = Credit(budget, 100), Credit(budget, 100)
    assert closing.try_take(100)
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_taker, closing, 50, log, "own")
        nursery.start_soon(_taker, other, 90, log, "other")
        await trio.testing.wait_all_tasks_blocked()
        assert log == []
        closing.close()
    assert sorted(log) == ["other", "own closed"]
    assert (budget.held, other.held, closing.held) == (90, 90, 0)


async def test_a_cancelled_taker_takes_nothing_and_lets_the_next_one_go() -> None:
    budget = ByteBudget(100)
    holder, big, small = Credit(budget, 100), Credit(budget, 100), Credit(budget, 100)
    assert holder.try_take(50)
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()
        nursery.start_soon(_cancellable, big, 80, scope)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_taker, small, 30, log, "small")
        await trio.testing.wait_all_tasks_blocked()
        assert log == []  # small waits behind big
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["small"]
    assert (budget.held, big.held) == (80, 0)


async def _cancellable(credit: Credit, n: int, scope: trio.CancelScope) -> None:
    with scope:
        await credit.take(n)


async def test_take_with_room_does_not_wait_but_is_a_checkpoint() -> None:
    credit = Credit(ByteBudget(100), 100)
    with trio.CancelScope() as scope:
        scope.cancel()
        await credit.take(10)
    assert credit.held == 0  # cancelled before it took anything
    await credit.take(10)
    assert credit.held == 10


# -- random sequences against the invariants ----------------------------------------

# Small enough against the limits that the budget is often what holds takers up.
TOTAL = 400
LIMITS = [50, 100, 200, 400]


@dataclass
class _Request:
    credit: Credit
    n: int
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    outcome: str = "waiting"  # granted | cancelled | closed


async def _request(request: _Request) -> None:
    with request.scope:
        try:
            await request.credit.take(request.n)
        except trio.ClosedResourceError:
            request.outcome = "closed"
            return
        request.outcome = "granted"
        return
    request.outcome = "cancelled"


# Round amounts fill the budget and the bounds exactly; others land anywhere.
amounts = st.one_of(st.sampled_from([10, 20, 50, 100, 200, 400]), st.integers(0, TOTAL))
fractions = st.one_of(st.sampled_from([0.5, 1.0]), st.floats(0, 1))
slots = st.integers(0, len(LIMITS) - 1)
operations = st.lists(
    st.one_of(
        # Waiting takes are what the invariants are about: drawn most often.
        st.tuples(st.sampled_from(["take", "take", "take", "try_take"]), slots, amounts),
        st.tuples(st.just("release"), slots, fractions),
        # A subscription closes, and a new one takes its place.
        st.tuples(st.just("close"), slots, st.just(0)),
        st.tuples(st.just("cancel"), st.integers(0, 50), st.just(0)),
    ),
    max_size=60,
)


# Cheap examples (a few ms each), and liveness bugs need many to show: more than the default.
@settings(max_examples=max(400, settings().max_examples))
@given(ops=operations)
async def test_random_take_release_close_sequences_keep_the_invariants(
    ops: list[tuple[str, int, float]],
) -> None:
    budget = ByteBudget(TOTAL)
    live = [Credit(budget, limit) for limit in LIMITS]
    every = list(live)
    requests: list[_Request] = []
    async with trio.open_nursery() as nursery:
        for op, arg, amount in ops:
            credit = live[arg % len(live)]
            if op == "take":
                request = _Request(credit, int(amount))
                requests.append(request)
                nursery.start_soon(_request, request)
            elif op == "try_take":
                credit.try_take(int(amount))
            elif op == "release":
                credit.release(int(credit.held * amount))
            elif op == "close":
                credit.close()
                live[arg] = Credit(budget, credit.limit)
                every.append(live[arg])
            elif op == "cancel" and requests:
                requests[arg % len(requests)].scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            _check(budget, every, requests)
        for credit in live:
            credit.close()
    assert budget.held == 0
    assert all(r.outcome != "waiting" for r in requests)


def _check(budget: ByteBudget, credits: list[Credit], requests: list[_Request]) -> None:
    # The global budget is never exceeded, and it is exactly what the subscriptions hold.
    assert budget.held <= budget.total
    assert budget.held == sum(c.held for c in credits)
    ready = []
    for credit in credits:
        mine = [r for r in requests if r.credit is credit and r.outcome != "cancelled"]
        # Each subscription's takers are granted in the order they asked: a prefix.
        outcomes = [r.outcome for r in mine]
        assert outcomes == sorted(outcomes, key=lambda o: o == "waiting")
        if credit.closed:
            assert credit.held == 0 and "waiting" not in outcomes
        waiting = [r for r in mine if r.outcome == "waiting"]
        if waiting and (credit.held == 0 or credit.held + waiting[0].n <= credit.limit):
            ready.append(waiting[0].n)
    # Nobody who could go is left waiting: if some subscription's first waiting
    # taker is allowed by its own bound, one such taker is held up by the budget.
    if ready:
        assert budget.held > 0 and any(budget.held + n > budget.total for n in ready)


# -- rate -------------------------------------------------------------------------


def test_token_bucket_arithmetic() -> None:
    bucket = TokenBucket(1000, 500)
    assert bucket.delay(500, now=10.0) == 0  # starts full at first use
    bucket.consume(500, now=10.0)
    assert bucket.delay(100, now=10.0) == pytest.approx(0.1)
    assert bucket.delay(100, now=10.05) == pytest.approx(0.05)
    assert bucket.delay(2000, now=10.05) == pytest.approx(0.45)  # over a burst: a full bucket
    bucket.consume(2000, now=10.5)  # into debt
    assert bucket.delay(1, now=10.5) == pytest.approx(1.501)
    # A clock that went back refills nothing, and counts from when it went back.
    assert bucket.delay(1, now=9.0) == pytest.approx(1.501)
    assert bucket.delay(1, now=10.0) == pytest.approx(0.501)
    with pytest.raises(ValueError):
        TokenBucket(0)


async def test_rate_limit_paces_bytes_out(autojump_clock: trio.testing.MockClock) -> None:
    credit = Credit(ByteBudget(1 << 20), 1 << 20, rate_bytes_per_s=1000)
    start = trio.current_time()
    await credit.wait_rate(1000)  # one second's burst is there at once
    assert trio.current_time() == start
    for _ in range(10):
        await credit.wait_rate(500)
    assert trio.current_time() == pytest.approx(start + 5.0)
    await trio.sleep(100)  # idle: the bucket refills to one burst, not more
    t = trio.current_time()
    await credit.wait_rate(1000)
    await credit.wait_rate(1000)
    assert trio.current_time() == pytest.approx(t + 1.0)


async def test_a_chunk_over_the_burst_passes_and_the_rate_holds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    credit = Credit(ByteBudget(1 << 20), 1 << 20, rate_bytes_per_s=1000, burst_bytes=100)
    start = trio.current_time()
    await credit.wait_rate(5000)
    assert trio.current_time() == start
    await credit.wait_rate(100)  # the debt of 4900 and then 100 more: 5 s
    assert trio.current_time() == pytest.approx(start + 5.0)


async def test_without_a_rate_limit_nothing_waits(autojump_clock: trio.testing.MockClock) -> None:
    credit = Credit(ByteBudget(100), 100)
    start = trio.current_time()
    for _ in range(100):
        await credit.wait_rate(1 << 30)
    assert trio.current_time() == start


async def test_a_cancelled_rate_wait_spends_nothing(autojump_clock: trio.testing.MockClock) -> None:
    credit = Credit(ByteBudget(100), 100, rate_bytes_per_s=100, burst_bytes=100)
    await credit.wait_rate(100)
    with trio.move_on_after(0.5):
        await credit.wait_rate(100)
    t = trio.current_time()
    await credit.wait_rate(100)  # the half second already waited counts
    assert trio.current_time() == pytest.approx(t + 0.5)

"""The balancing decision of consumer groups (``consumers.balance``), as a pure function.

Properties over random lease tables: a worker never takes more than its fair
share (and never beyond ``base`` while another worker is under it), steals at
most one lease and only from a worker two above it, takes only free or
expired leases; and repeated passes by every worker, in any order, reach an
even split and stay there.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.balance import (
    Decision,
    LeaseState,
    decide,
    eligible_shards,
    fair_share,
    holder,
)

WORKERS = [f"w{i}" for i in range(6)]


def shard(i: int) -> str:
    return f"shardId-{i:012d}"


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[str], dict[str, LeaseState]]:
    """A worker, the shards to balance, and a lease table over them (some free or expired)."""
    count = draw(st.integers(0, 24))
    shards = [shard(i) for i in range(count)]
    owners = st.sampled_from(["", *WORKERS])
    table: dict[str, LeaseState] = {}
    for s in shards:
        if draw(st.integers(0, 4)) == 0:
            continue  # never leased
        owner = draw(owners)
        held = bool(owner) and draw(st.integers(0, 5)) > 0  # else released or expired
        table[s] = LeaseState(owner, draw(st.integers(1, 9)), held)
    return draw(st.sampled_from(WORKERS)), shards, table


def held_counts(worker: str, shards: list[str], table: dict[str, LeaseState]) -> dict[str, int]:
    counts = {worker: 0}
    for s in shards:
        who = holder(worker, table.get(s))
        if who is not None:
            counts[who] = counts.get(who, 0) + 1
    return counts


@given(tables())
@settings(max_examples=1500)
def test_a_worker_never_takes_beyond_its_fair_share(
    case: tuple[str, list[str], dict[str, LeaseState]],
) -> None:
    worker, shards, table = case
    decision = decide(worker, shards, table)
    counts = held_counts(worker, shards, table)
    assert decision.counts == counts
    base, extra = fair_share(len(shards), len(counts))
    mine = counts[worker]
    gained = len(decision.take) + (decision.steal is not None)
    # Only free or expired leases are taken, each once, and only shards being balanced.
    assert len(set(decision.take)) == len(decision.take)
    for s in decision.take:
        assert s in shards
        assert holder(worker, table.get(s)) is None
    if gained:
        after = mine + gained
        assert after <= base + (1 if extra else 0)
        others_under = any(c < base for w, c in counts.items() if w != worker)
        if others_under:
            assert after <= base, "took an extra shard while another worker is under its share"
    # A steal: one lease, of the most loaded worker, only when two apart and nothing is free.
    if decision.steal is not None:
        victim = decision.steal.owner
        assert victim != worker
        lease = table[decision.steal.shard_id]
        assert (lease.owner, lease.counter, lease.held) == (victim, decision.steal.counter, True)
        assert counts[victim] == max(counts.values())
        assert counts[victim] - mine >= 2
        assert all(holder(worker, table.get(s)) is not None for s in shards)


def apply(worker: str, decision: Decision, table: dict[str, LeaseState]) -> bool:
    """Acquire as the broker would: a free or expired lease, or a steal; True if anything moved."""
    moved = False
    for s in decision.take:
        current = table.get(s)
        if current is None or not current.held or current.owner == worker:
            counter = (current.counter if current else 0) + 1
            table[s] = LeaseState(worker, counter, True)
            moved = True
    if decision.steal is not None:
        current = table[decision.steal.shard_id]
        if (current.owner, current.counter) == (decision.steal.owner, decision.steal.counter):
            table[decision.steal.shard_id] = LeaseState(worker, current.counter + 1, True)
            moved = True
    return moved


@given(
    shard_count=st.integers(0, 30),
    worker_count=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    start=st.sampled_from(["empty", "one_has_all", "random"]),
)
@settings(max_examples=300)
def test_repeated_passes_by_every_worker_converge_to_an_even_split(
    shard_count: int, worker_count: int, seed: int, start: str
) -> None:
    rng = random.Random(seed)
    workers = WORKERS[:worker_count]
    shards = [shard(i) for i in range(shard_count)]
    table: dict[str, LeaseState] = {}
    if start == "one_has_all":
        table = {s: LeaseState(workers[0], 1, True) for s in shards}
    elif start == "random":
        table = {s: LeaseState(rng.choice(workers), 1, True) for s in shards if rng.random() < 0.7}
    # Each steal lowers the sum of squared counts by at least 2, each take fills a free
    # shard: the number of passes needed is bounded by the shards, whatever the order.
    limit = shard_count * shard_count + 4
    for _ in range(limit):
        order = list(workers)
        rng.shuffle(order)
        moved = False
        for worker in order:
            moved |= apply(worker, decide(worker, shards, table), table)
        if not moved:
            break
    else:
        raise AssertionError(f"no even split after {limit} rounds: {table}")
    counts = {w: sum(1 for s in shards if table[s].owner == w) for w in workers}
    assert all(s in table and table[s].held for s in shards), "a shard is left free"
    assert max(counts.values()) - min(counts.values()) <= 1, counts
    # And it stays there: nobody wants anything in a further pass.
    for worker in workers:
        decision = decide(worker, shards, table)
        assert decision.take == () and decision.steal is None


def test_twelve_shards_over_three_workers_end_four_each() -> None:
    shards = [shard(i) for i in range(12)]
    table = {s: LeaseState("w0", 1, True) for s in shards}
    for _ in range(20):
        for worker in ("w1", "w2", "w0"):
            apply(worker, decide(worker, shards, table), table)
    counts = sorted(sum(1 for s in shards if table[s].owner == w) for w in ("w0", "w1", "w2"))
    assert counts == [4, 4, 4]


def test_one_steal_per_pass_from_the_most_loaded() -> None:
    shards = [shard(i) for i in range(9)]
    table = {s: LeaseState("w0" if i < 6 else "w1", 3, True) for i, s in enumerate(shards)}
    decision = decide("w2", shards, table)
    assert decision.take == ()
    assert decision.steal is not None and decision.steal.owner == "w0"
    assert decision.steal.counter == 3


def test_expired_leases_are_taken_and_own_expired_ones_kept() -> None:
    shards = [shard(i) for i in range(4)]
    table = {
        shards[0]: LeaseState("dead", 2, False),  # expired: free to anyone
        shards[1]: LeaseState("w0", 1, False),  # our own, expired: still ours to renew
        shards[2]: LeaseState("", 4, False),  # released
    }
    decision = decide("w0", shards, table)
    assert decision.counts == {"w0": 1}
    assert sorted(decision.take) == [shards[0], shards[2], shards[3]]


def test_a_worker_under_its_share_goes_first() -> None:
    # 7 shards, 3 workers: base 2, one extra. w1 holds 1 (under), one shard is free:
    # w0 (at base) leaves it to w1.
    shards = [shard(i) for i in range(7)]
    owners = ["w0", "w0", "w1", "w2", "w2", "w2", ""]
    table = {s: LeaseState(o, 1, bool(o)) for s, o in zip(shards, owners, strict=True)}
    assert decide("w0", shards, table).take == ()
    assert decide("w1", shards, table).take == (shards[6],)


def test_children_wait_for_their_finished_parents() -> None:
    listing = [
        ("p", ()),
        ("q", ()),
        ("a", ("p",)),
        ("b", ("p",)),
        ("m", ("a", "q")),  # a merge of a child of p and of q
    ]
    assert eligible_shards(listing, set()) == ["p", "q"]
    assert eligible_shards(listing, {"p"}) == ["a", "b", "q"]
    assert eligible_shards(listing, {"p", "a"}) == ["b", "q"]
    assert eligible_shards(listing, {"p", "a", "q"}) == ["b", "m"]
    # A parent that is not listed (trimmed away) holds nothing back.
    assert eligible_shards([("c", ("gone",))], set()) == ["c"]

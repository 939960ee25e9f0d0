"""Which shards a consumer-group worker takes next: KCL's lease balancing, as pure functions.

Every worker of a group runs the same decision against the same kind of
snapshot (the stream's shards, the group's lease table) and acts on its own
part of the answer; nobody coordinates. The rules are KCL's ``LeaseTaker``
with the fair share made exact, so that repeated passes by every worker end in
an even split (no two workers more than one shard apart) and then stay there:

* **Workers** are the owners of unexpired leases on the shards being balanced,
  plus the deciding worker itself (it may hold nothing yet). A worker that
  holds nothing is invisible to the others until it takes something, which is
  why the taking side, not the giving side, acts.
* **Fair share.** ``N`` shards over ``W`` workers: ``base = N // W`` each, and
  ``N % W`` of them one more. A worker below ``base`` takes free or expired
  leases up to ``base``. A worker at ``base`` takes one more only while fewer
  than ``N % W`` workers are above ``base`` and nobody is below it: a worker
  under its share goes first.
* **Stealing.** A worker that wants shards when none is free takes one lease
  per pass from the most loaded worker, if that one holds at least two more
  than itself (while some shard is free, it takes those and waits a pass:
  steals cost duplicates). Each such step lowers the sum of squared counts, so the
  passes cannot cycle; once no worker is two above another and no shard is
  free, nobody wants anything.
* Candidate shards are tried in an order that depends on the worker
  (``preference``): workers that start together reach for different shards
  instead of all racing for the same one.

What the group does with a decision (``consumers.group``): a take is an
``AcquireLease``; a steal is a ``ReleaseLease`` in the holder's name under its
current counter, then an ``AcquireLease`` (the broker raises the counter, so
the old holder's renewals and checkpoints are refused from then on: the same
fencing as for an expired lease).

``eligible_shards`` says which shards are balanced at all: the ones not
finished (checkpointed at ``SHARD_END``) whose parents are finished
(``consumers.subscriber.Lineage``), so a parent is processed to its end
before any of its children is taken.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .subscriber import Lineage


@dataclass(frozen=True, slots=True)
class LeaseState:
    """One row of the lease table as a worker saw it (``ListLeases``)."""

    owner: str
    counter: int
    #: An owner and not expired when the broker answered.
    held: bool


@dataclass(frozen=True, slots=True)
class Steal:
    """Take ``shard_id`` from ``owner``, whose lease carries ``counter``."""

    shard_id: str
    owner: str
    counter: int


@dataclass(frozen=True, slots=True)
class Decision:
    """What one worker does in one pass: acquire ``take``, then perhaps one ``steal``."""

    take: tuple[str, ...]
    steal: Steal | None
    #: The counts the decision was made from: shards held per worker (the decider included).
    counts: Mapping[str, int]

    @property
    def workers(self) -> int:
        return len(self.counts)


def preference(worker: str, shard_id: str) -> int:
    """A stable order of shards that differs from worker to worker."""
    return zlib.crc32(f"{worker}/{shard_id}".encode())


def holder(worker: str, lease: LeaseState | None) -> str | None:
    """Who holds a lease for balancing: its owner while held; the worker itself, always.

    The worker's own lease counts as its own even when the table shows it
    expired: nobody took it, so the worker may still renew it.
    """
    if lease is None or not lease.owner:
        return None
    if lease.owner == worker or lease.held:
        return lease.owner
    return None


def fair_share(shards: int, workers: int) -> tuple[int, int]:
    """``(base, extra)``: every worker holds ``base`` shards, ``extra`` of them one more."""
    return divmod(shards, max(workers, 1))


def decide(worker: str, eligible: Iterable[str], leases: Mapping[str, LeaseState]) -> Decision:
    """The leases ``worker`` acquires in this pass, and the one it steals (module docstring)."""
    shards = sorted(set(eligible))
    counts: Counter[str] = Counter({worker: 0})
    free: list[str] = []
    owned: dict[str, list[str]] = {}
    for shard in shards:
        who = holder(worker, leases.get(shard))
        if who is None:
            free.append(shard)
        else:
            counts[who] += 1
            owned.setdefault(who, []).append(shard)
    base, extra = fair_share(len(shards), len(counts))
    mine = counts[worker]
    others = [count for who, count in counts.items() if who != worker]
    if mine < base:
        want = base - mine
    elif mine == base and extra and all(c >= base for c in others):
        want = 1 if sum(c > base for c in others) < extra else 0
    else:
        want = 0
    free.sort(key=lambda shard: preference(worker, shard))
    take = tuple(free[:want])
    steal: Steal | None = None
    if want and not free:
        victim = max(
            (who for who in counts if who != worker),
            key=lambda who: (counts[who], who),
            default=None,
        )
        if victim is not None and counts[victim] - mine >= 2:
            shard = min(owned[victim], key=lambda s: preference(worker, s))
            lease = leases[shard]
            steal = Steal(shard, lease.owner, lease.counter)
    return Decision(take, steal, dict(counts))


def eligible_shards(
    shards: Iterable[tuple[str, tuple[str, ...]]], finished: Iterable[str]
) -> list[str]:
    """The shards to balance: not finished, and every parent (that is listed) finished.

    ``shards`` are ``(shard id, parent ids)`` for every shard of the stream;
    ``finished``: the shards checkpointed at ``SHARD_END``.
    """
    lineage = Lineage()
    for shard_id, parents in shards:
        lineage.follow(shard_id, parents)
    done = set(finished)
    lineage.ended.update(done & lineage.parents.keys())
    return [shard for shard in lineage.startable() if shard not in done]

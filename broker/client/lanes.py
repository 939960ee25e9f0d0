"""The ``Producer``'s shard map: one lane per open shard, and moving records between lanes.

A ``Lane`` is one shard's side of the producer: its open batch (filling),
its queue of closed batches (oldest first) and the state of the task that
sends them one at a time (``current``: the batch it took from the queue and
has not settled yet).

``ShardMap`` routes records to lanes with the broker's own router
(``broker.hashing.ShardRouter``: MD5 digests, or explicit hash keys, as
16-byte strings bisected against the open shards' range ends) and installs a
new map from ``ListShards``:

* a shard still open keeps its lane, batches and batch numbers;
* a shard that is no longer open *retires* its lane: the lane's queued and
  open records are routed again (``reroute``) into the lanes that now cover
  them, ahead of anything those lanes hold, and its ``current`` batch follows
  them once the broker refused it (``ShardMismatchException``);
* a new lane lists as ``blockers`` the retired lanes over its range whose
  ``current`` batch is not settled yet (``drained`` not set): it sends
  nothing before those settle, so a record sent earlier never lands after one
  sent later, whichever way the refused batch goes.

Synchronous, no I/O: the producer calls it between awaits.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable

import trio

from ..errors import InternalFailureError, ShardlineError
from ..hashing import ShardRouter, md5
from ..model import HashKeyRange, parse_shard_id
from ..model import Shard as RoutedShard
from ..model import shard_id as format_shard_id
from .batches import Batch, Entry
from .results import Shard


class Lane:
    """One shard's batches and the state of the task that sends them (module docstring)."""

    __slots__ = (
        "blockers",
        "current",
        "drained",
        "end",
        "id_generation",
        "next_number",
        "open",
        "queue",
        "retired",
        "shard_id",
        "start",
        "wake",
    )

    def __init__(self, shard_id: str, start: int, end: int) -> None:
        self.shard_id = shard_id
        self.start = start
        self.end = end
        self.open: Batch | None = None
        self.queue: deque[Batch] = deque()
        #: Set when there is something new to look at (a batch opened or closed, retirement).
        self.wake = trio.Event()
        self.current: Batch | None = None
        self.retired = False
        self.drained = trio.Event()
        self.blockers: list[Lane] = []
        #: Batch numbering: the producer id generation it counts under, and the next number.
        self.id_generation = -1
        self.next_number = 0

    def overlaps(self, other: Lane) -> bool:
        return self.start <= other.end and other.start <= self.end


def entry_size(entry: Entry) -> int:
    """A record's size as the broker counts it: data plus the key's UTF-8 bytes."""
    return len(entry["Data"]) + len(entry["PartitionKey"].encode())


class ShardMap:
    """The open shards' lanes and the router to them (module docstring)."""

    def __init__(
        self, max_batch_records: int, max_batch_bytes: int, live: dict[Batch, None]
    ) -> None:
        self.max_batch_records = max_batch_records
        self.max_batch_bytes = max_batch_bytes
        #: The producer's unsettled batches: batches made here join it, moved ones leave.
        self.live = live
        #: The range ends as 16-byte digests, and the lane of each position.
        self.ends: list[bytes] = []
        self.positions: list[Lane] = []
        self.lanes: dict[str, Lane] = {}
        #: Retired lanes whose current batch is not settled yet.
        self.undrained: list[Lane] = []
        #: Grows at every install: a caller that saw generation g refreshes only once.
        self.generation = 0

    def lane_of(self, entry: Entry) -> Lane:
        explicit = entry.get("ExplicitHashKey")
        if explicit is not None:
            digest = int(explicit).to_bytes(16, "big")
        else:
            digest = md5(entry["PartitionKey"].encode()).digest()
        return self.positions[bisect.bisect_left(self.ends, digest)]

    def install(self, shards: Iterable[Shard]) -> list[Lane]:
        """Make ``shards``' open ones the map; the new lanes, whose tasks the caller starts."""
        open_shards = [s for s in shards if s.is_open]
        ranges = {
            s.shard_id: (
                int(s.hash_key_range.starting_hash_key),
                int(s.hash_key_range.ending_hash_key),
            )
            for s in open_shards
        }
        try:
            router = ShardRouter(
                RoutedShard(parse_shard_id(sid), HashKeyRange(*bounds), 0)
                for sid, bounds in ranges.items()
            )
        except (ValueError, ShardlineError) as exc:
            raise InternalFailureError(f"ListShards gave no usable shard map: {exc}") from None
        lanes: dict[str, Lane] = {}
        fresh: list[Lane] = []
        for sid, (start, end) in ranges.items():
            lane = self.lanes.get(sid)
            if lane is None:
                lane = Lane(sid, start, end)
                fresh.append(lane)
            lanes[sid] = lane
        retiring = [lane for sid, lane in self.lanes.items() if sid not in lanes]
        self.lanes = lanes
        self.ends = router.digest_ends
        self.positions = [lanes[format_shard_id(index)] for index in router.indexes]
        self.generation += 1
        for lane in retiring:
            lane.retired = True
            lane.wake.set()
            waiting = list(lane.queue) + ([lane.open] if lane.open is not None else [])
            lane.queue.clear()
            lane.open = None
            self.reroute(waiting)
            if lane.current is None:
                lane.drained.set()
        self.undrained = [lane for lane in self.undrained + retiring if not lane.drained.is_set()]
        for lane in fresh:
            lane.blockers = [old for old in self.undrained if old.overlaps(lane)]
        return fresh

    def reroute(self, batches: list[Batch]) -> None:
        """Route ``batches``' records (oldest first) again, ahead of their lanes' queues.

        Each batch settles as *moved*; its records keep their send times and
        stay buffered. The new batches respect the batch bounds.
        """
        if not batches:
            return
        targets: dict[Lane, list[Batch]] = {}
        for batch in batches:
            moved: dict[int, tuple[Batch, int]] = {}
            for i, entry in enumerate(batch.entries):
                out = targets.setdefault(self.lane_of(entry), [])
                size = entry_size(entry)
                if not out or len(out[-1].entries) >= self.max_batch_records or size > out[-1].free:
                    out.append(Batch(batch.opened_at, self.max_batch_bytes))
                    self.live[out[-1]] = None
                moved[i] = (out[-1], out[-1].add(entry, size, batch.times[i]))
            batch.moved = moved
            self.live.pop(batch, None)
            batch.done.set()
        for lane, fresh in targets.items():
            lane.queue.extendleft(reversed(fresh))
            lane.wake.set()

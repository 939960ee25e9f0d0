"""The fan-out hub: each committed batch encoded once, every subscriber sent the same bytes.

Theory of operation. The hub listens to the log's commits (on the trio
thread, right after each durable commit). For every shard that has at least
one subscriber it keeps a *feed*: the newest committed batches of that shard,
each already encoded as a push *records* event (``events.encode_records``:
the stored payload spliced in unread), bounded by ``tail_bytes`` per shard,
oldest dropped first. A commit appends to the feeds and hands the new event
to the subscriptions parked at the tail: the commit listener writes it into
each one's transport at once where flow control has room
(``BodySink.send_nowait``: no task wake-up per subscriber), and wakes the
others. Nothing polls.

A subscription (``Subscription.run``) owns a position (the next offset it
sends) and a state in the table of ``broker.fanout.state``: each turn it
observes what is true (``_observe``: taken over, lifetime over, stream gone,
shard end reached, behind the feed, at the tail with or without new
batches), steps the table with it, and does the action the table answers.
A feed never has a gap (it is cleared rather), so a position it does not
hold is ``FELL_BEHIND``, never ``BATCH_GAP``. In effect it:

* sends the feed's events from its position on, if the feed holds that
  position at a batch boundary: the same ``bytes`` objects for everyone (a
  subscriber that several commits wait for gets them joined into one write
  of at most ``COALESCE_BYTES``);
* else (it starts in the past, lagged behind what the feed keeps, or its
  position is inside a batch) reads stored batches from LMDB in chunks of at
  most ``read_bytes`` (``Log.read_batches``: whole batches forwarded without
  decoding records), encodes one event per batch and sends it, then tries the
  feed again: it rejoins the tail where the stored batches end, with no gap
  and no duplicate, since feed and store hold the same batches at the same
  offsets;
* at the end of a closed shard sends the *end* event with the child shards;
* caught up, waits for the next commit, a heartbeat interval, its lifetime,
  or a takeover, whichever comes first.

Sending waits for the transport (``BodySink.send``): a subscriber that stops
reading stops its own task and nothing else. What it pins meanwhile is one
event, a shared feed entry or at most one chunk of stored batches, so memory
per subscription is bounded; the feeds are bounded per shard, and exist only
while a shard has subscribers. A send still blocked ``STALL_GRACE_S`` after
the subscription's lifetime ended (or after a takeover or shutdown asked it
to end) is cut: ``run`` raises ``BrokenResourceError`` and the transport
resets the stream or closes the connection, so a client that never reads
holds nothing past its subscription.

Takeover (Kinesis): a second subscription for the same (consumer, shard)
within ``takeover_window_s`` of the first is refused with
``ResourceInUseException``; after it, the new one takes over and the old one
ends with an *error* event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from ..errors import ResourceInUseError, ShardlineError
from ..log import CommitReport, Log
from ..log import batch as fmt
from ..model import StreamDescription
from ..operations.base import BodySink, Streamed
from ..operations.shapes import child_shard_view
from ..sequence import base
from . import events
from .credit import ByteBudget, Credit
from .state import Action, Input, State, SubscriptionState, takeover

KIB = 1024
MIB = 1024 * KIB
#: Most bytes of feed events joined into one write for a subscriber that fell behind.
COALESCE_BYTES = 1 * MIB
#: A subscription whose send is still blocked this long after its lifetime ended (or
#: after a takeover or shutdown asked it to end) is cut: its subscriber stopped reading.
STALL_GRACE_S = 10.0


@dataclass(frozen=True, slots=True)
class HubConfig:
    #: Encoded events kept per subscribed shard for subscribers at the tail.
    tail_bytes: int = 32 * MIB
    #: Most stored bytes read from LMDB at once by a lagging subscriber.
    read_bytes: int = 1 * MIB
    #: A heartbeat event after this long without records.
    heartbeat_s: float = 1.0
    #: A subscription ends cleanly after this long (Kinesis: 5 minutes).
    lifetime_s: float = 300.0
    #: A second subscription for a (consumer, shard) within this is refused.
    takeover_window_s: float = 5.0
    #: All subscriptions' reads from LMDB together hold at most this many bytes.
    budget_bytes: int = 256 * MIB
    #: Optional per-subscription rate (Kinesis: 2 MiB/s per consumer per shard); None: off.
    rate_bytes_per_s: float | None = None


@dataclass(slots=True)
class _Entry:
    first: int
    end: int
    event: bytes


@dataclass(eq=False)
class _Feed:
    """One shard's newest batches as encoded events, and who waits for more."""

    limit: int
    entries: deque[_Entry] = field(default_factory=deque)
    nbytes: int = 0
    subscribers: int = 0
    #: Subscriptions caught up and waiting for the next batch.
    parked: set[Subscription] = field(default_factory=set)

    def append(self, entry: _Entry) -> None:
        if self.entries and self.entries[-1].end != entry.first:
            self.clear()  # never a gap inside a feed: older positions read from LMDB
        self.entries.append(entry)
        self.nbytes += len(entry.event)
        while self.nbytes > self.limit and len(self.entries) > 1:
            self.nbytes -= len(self.entries.popleft().event)

    def clear(self) -> None:
        self.entries.clear()
        self.nbytes = 0

    def wake(self) -> None:
        for subscription in self.parked:
            subscription.wake()

    def deliver(self, entry: _Entry) -> None:
        """A new batch for the parked: written at once where it can be, woken otherwise."""
        for subscription in self.parked:
            if not subscription.deliver_now(entry):
                subscription.wake()

    def since(self, position: int) -> list[_Entry] | None:
        """The entries from ``position`` on; None when the feed does not hold it."""
        entries = self.entries
        if not entries or position < entries[0].first:
            return None
        if position >= entries[-1].end:
            return [] if position == entries[-1].end else None
        out: list[_Entry] = []
        for entry in reversed(entries):
            if entry.first < position:
                break
            out.append(entry)
        if not out or out[-1].first != position:
            return None  # inside a batch: the store cuts it
        out.reverse()
        return out


class FanoutHub:
    """Feeds per subscribed shard, and the registry of live subscriptions."""

    def __init__(self, log: Log, config: HubConfig = HubConfig()) -> None:
        self.log = log
        self.config = config
        self.feeds: dict[tuple[int, int], _Feed] = {}
        self.active: dict[tuple[str, int, int], Subscription] = {}
        self.budget = ByteBudget(config.budget_bytes)
        self.closing = False
        #: Set (and replaced) each time a subscription ends: for whoever waits for that.
        self.ended = trio.Event()
        log.add_commit_listener(self._on_commit)

    # -- commits --------------------------------------------------------------

    def _on_commit(self, report: CommitReport) -> None:
        feeds = self.feeds
        if not feeds:
            return
        if report.changed_streams:
            # A shard closed or a stream went away: subscribers at the tail look again.
            changed = set(report.changed_streams)
            for (inc, _index), changed_feed in feeds.items():
                if inc in changed:
                    changed_feed.wake()
        for batch in report.batches:
            feed = feeds.get((batch.incarnation, batch.shard_index))
            if feed is None:
                continue
            start = base(batch.incarnation, batch.shard_index)
            first = batch.first_offset
            end = first + batch.count
            event = events.encode_records(
                start + first, fmt.payload_of(batch.value), start + end - 1, 0
            )
            entry = _Entry(first, end, event)
            feed.append(entry)
            feed.deliver(entry)

    def _feed(self, inc: int, index: int) -> _Feed:
        feed = self.feeds.get((inc, index))
        if feed is None:
            feed = self.feeds[(inc, index)] = _Feed(self.config.tail_bytes)
        feed.subscribers += 1
        return feed

    def _release(self, inc: int, index: int, feed: _Feed) -> None:
        feed.subscribers -= 1
        if feed.subscribers <= 0 and self.feeds.get((inc, index)) is feed:
            del self.feeds[(inc, index)]

    # -- subscriptions --------------------------------------------------------

    def subscribe(
        self, consumer: str, desc: StreamDescription, index: int, position: int
    ) -> Subscription:
        """A subscription from ``position``; refused within the takeover window."""
        if self.closing:
            raise ResourceInUseError("the broker is shutting down: subscribe again elsewhere")
        key = (consumer, desc.incarnation, index)
        now = trio.current_time()
        previous = self.active.get(key)
        live = previous if previous is not None and not previous.finished else None
        decision = takeover(
            None if live is None else live.started_at, now, self.config.takeover_window_s
        )
        if decision == "refuse":
            raise ResourceInUseError(
                f"Another active subscription exists for consumer {consumer} on shard "
                f"{desc.shard(index).shard_id}: a new one may take it over "
                f"{self.config.takeover_window_s:g} s after it started"
            )
        if live is not None:
            live.take_over()
        subscription = Subscription(self, key, desc, index, position, now)
        self.active[key] = subscription
        return subscription

    def close(self) -> None:
        """End every subscription at its next turn (shutdown)."""
        self.closing = True
        for subscription in list(self.active.values()):
            subscription.interrupt()

    def metrics_text(self) -> str:
        """The hub's gauges in Prometheus' text format (for ``GET /metrics``)."""
        stats = self.statistics()
        out = []
        for key, help_text in (
            ("subscriptions", "Live SubscribeToShard subscriptions."),
            ("feeds", "Shards with subscribers, each with a feed of encoded events."),
            ("feed_bytes", "Bytes of encoded events held by the feeds."),
            ("read_bytes_held", "Bytes lagging subscriptions hold from LMDB reads."),
        ):
            name = f"shardline_fanout_{key}"
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {stats[key]}"]
        return "\n".join(out) + "\n"

    def statistics(self) -> dict[str, int]:
        return {
            "subscriptions": sum(1 for s in self.active.values() if not s.finished),
            "feeds": len(self.feeds),
            "feed_bytes": sum(f.nbytes for f in self.feeds.values()),
            "read_bytes_held": self.budget.held,
        }


class Subscription(Streamed):
    """One SubscribeToShard response: push events from a position until it ends."""

    #: A body of concatenated msgpack maps (docs/protocol.md, SubscribeToShard).
    content_type = "application/msgpack"

    def __init__(
        self,
        hub: FanoutHub,
        key: tuple[str, int, int],
        desc: StreamDescription,
        index: int,
        position: int,
        started_at: float,
    ) -> None:
        self.hub = hub
        self.key = key
        self.stream = desc.name
        self.incarnation = desc.incarnation
        self.index = index
        self.position = position
        self.started_at = started_at
        self.base = base(desc.incarnation, index)
        self.taken_over = False
        self.finished = False
        #: The subscription's state in the table of ``broker.fanout.state``.
        self.machine = SubscriptionState()
        #: What an END or FAILED input carries to its event.
        self.children: list[dict[str, Any]] = []
        self.failure = ("InternalFailureException", "")
        self.credit = Credit(
            hub.budget, hub.config.read_bytes, rate_bytes_per_s=hub.config.rate_bytes_per_s
        )
        self._wake: trio.Event | None = None
        self._sink: BodySink | None = None
        self.next_heartbeat = started_at + hub.config.heartbeat_s
        #: Cuts a subscription whose subscriber stopped reading: a send still blocked
        #: ``STALL_GRACE_S`` after the lifetime's end (or a takeover, or shutdown).
        self._cut = trio.CancelScope(deadline=started_at + hub.config.lifetime_s + STALL_GRACE_S)

    def deliver_now(self, entry: _Entry) -> bool:
        """Write a new tail batch from the commit listener, if this parked subscription can.

        The parked task is not woken: one write queued per subscriber, no task
        switch. Only at the tail, in order, without a rate limit, and while
        the transport's flow control has room; else the task does it.
        """
        sink = self._sink
        if (
            sink is None
            or self._wake is None
            or self._wake.is_set()
            or self.taken_over
            or self.hub.closing
            or self.credit.rate is not None
            or self.machine.state is not State.TAIL
            or self.position != entry.first
            or trio.current_time() >= self.started_at + self.hub.config.lifetime_s
        ):
            return False
        if not sink.send_nowait(entry.event):
            return False
        self.position = entry.end
        self.next_heartbeat = trio.current_time() + self.hub.config.heartbeat_s
        return True

    def take_over(self) -> None:
        self.taken_over = True
        self.interrupt()

    def wake(self) -> None:
        """Look again now: there is something new to send."""
        if self._wake is not None:
            self._wake.set()

    def interrupt(self) -> None:
        """End at the next turn (taken over, shutting down); a send blocked past a grace is cut.

        Only for an ending: a plain wake-up (``wake``) must not bring the cut nearer,
        or a subscriber that once had to wait would be cut ``STALL_GRACE_S`` later.
        """
        self.wake()
        self._cut.deadline = min(self._cut.deadline, trio.current_time() + STALL_GRACE_S)

    @property
    def continuation(self) -> int:
        """The sequence number of the last record sent (or before the first position)."""
        return self.base + self.position - 1

    async def run(self, sink: BodySink) -> None:
        hub = self.hub
        feed = hub._feed(self.incarnation, self.index)
        self._sink = sink
        try:
            with self._cut:
                try:
                    await self._run(sink, feed)
                except ShardlineError as exc:
                    self.failure = (exc.wire_name, exc.message)
                    if self.machine.step(Input.FAILED) is Action.SEND_ERROR:
                        await sink.send(events.encode_error(*self.failure))
            if self._cut.cancelled_caught:
                # Its subscriber stopped reading: nothing more can reach it, not even
                # an end. The transport cuts the stream (HTTP/2) or the connection.
                raise trio.BrokenResourceError(
                    "the subscriber stopped reading: its subscription was cut"
                )
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.machine.step(Input.CONNECTION_CLOSED)  # ABORT: nothing more to send
            raise
        finally:
            self.finished = True
            self.credit.close()
            hub._release(self.incarnation, self.index, feed)
            if hub.active.get(self.key) is self:
                del hub.active[self.key]
            ended, hub.ended = hub.ended, trio.Event()
            ended.set()

    def _observe(self, feed: _Feed) -> tuple[Input, list[_Entry]]:
        """What is true now, as the state table's input (and the feed entries to send)."""
        hub, log = self.hub, self.hub.log
        if self.taken_over:
            return Input.TAKEN_OVER, []
        if hub.closing or trio.current_time() >= self.started_at + hub.config.lifetime_s:
            return Input.LIFETIME_EXPIRED, []
        desc = log.store.by_incarnation.get(self.incarnation)
        if desc is None:
            self.failure = ("ResourceNotFoundException", f"Stream {self.stream} was deleted")
            return Input.FAILED, []
        shard = desc.shard(self.index)
        if shard.ending_offset is not None and self.position > shard.ending_offset:
            self.children = [child_shard_view(c) for c in desc.children_of(self.index)]
            return Input.END_REACHED, []
        entries = feed.since(self.position)
        tail = log.store.tails.get((self.incarnation, self.index))
        stored_end = 1 if tail is None else tail.next_offset
        if entries is None and self.position < stored_end:
            # The feed does not hold the position: stored batches, first or still.
            caught = self.machine.state is State.CATCHING_UP
            return (Input.STORED_READ if caught else Input.FELL_BEHIND), []
        if self.machine.state is not State.TAIL:
            return Input.CAUGHT_UP, []
        return (Input.BATCH_CONTIGUOUS, entries) if entries else (Input.CAUGHT_UP, [])

    async def _run(self, sink: BodySink, feed: _Feed) -> None:
        """Drive the state table (``broker.fanout.state``): observe, step, act."""
        config = self.hub.config
        deadline = self.started_at + config.lifetime_s
        self.next_heartbeat = trio.current_time() + config.heartbeat_s
        machine = self.machine
        while True:
            event, entries = self._observe(feed)
            action = machine.step(event)
            if action is Action.SEND_BATCH:
                await self._send_entries(sink, entries)
                self.next_heartbeat = trio.current_time() + config.heartbeat_s
            elif action is Action.READ_STORED or action is Action.SEND_STORED:
                await self._send_stored(sink)
                self.next_heartbeat = trio.current_time() + config.heartbeat_s
            elif action is Action.SEND_HEARTBEAT:
                await self._send(sink, events.encode_heartbeat(str(self.continuation), 0))
                self.next_heartbeat = trio.current_time() + config.heartbeat_s
            elif action is Action.SEND_END:
                await sink.send(events.encode_end(self.children))
                return
            elif action is Action.SEND_ERROR:
                await sink.send(events.encode_error(*self.failure))
                return
            elif action is Action.SEND_ERROR_TAKEN_OVER:
                await sink.send(
                    events.encode_error(
                        ResourceInUseError.wire_name,
                        "a newer subscription for this consumer and shard took over",
                    )
                )
                return
            elif action is Action.CLOSE or action is Action.ABORT:
                return
            elif event is Input.CAUGHT_UP and machine.state is State.TAIL and not entries:
                # Nothing to send: wait for a commit, a heartbeat, the lifetime's end or
                # a takeover; a heartbeat that comes due is the table's next input.
                # (New batches may be written for it meanwhile: ``deliver_now``.)
                self._wake = wake = trio.Event()
                feed.parked.add(self)
                with trio.move_on_at(min(self.next_heartbeat, deadline)):
                    await wake.wait()
                feed.parked.discard(self)
                self._wake = None
                if not wake.is_set() and trio.current_time() >= self.next_heartbeat:
                    await self._heartbeat_due(sink)
                    self.next_heartbeat = trio.current_time() + config.heartbeat_s

    async def _heartbeat_due(self, sink: BodySink) -> None:
        action = self.machine.step(Input.HEARTBEAT_DUE)
        if action is Action.SEND_HEARTBEAT:
            await self._send(sink, events.encode_heartbeat(str(self.continuation), 0))

    async def _send_entries(self, sink: BodySink, entries: list[_Entry]) -> None:
        """Feed events from the position; several that waited leave in one write.

        Under load several commits wait for a subscriber: they go in one write
        (one HTTP/2 frame run, one socket call) of at most ``COALESCE_BYTES``.
        """
        taken = entries[:1]
        size = len(entries[0].event)
        for entry in entries[1:]:
            if size + len(entry.event) > COALESCE_BYTES:
                break
            taken.append(entry)
            size += len(entry.event)
        if len(taken) == 1:
            await self._send(sink, taken[0].event)
        else:
            await self._send(sink, b"".join(entry.event for entry in taken))
        self.position = taken[-1].end

    async def _send(self, sink: BodySink, event: bytes) -> None:
        if self.credit.rate is not None:
            await self.credit.wait_rate(len(event))
        await sink.send(event)

    async def _send_stored(self, sink: BodySink) -> None:
        """One chunk of stored batches from the position, one event per batch.

        The chunk's bytes are taken from the hub's budget before the read and
        given back once sent: laggards together hold at most ``budget_bytes``
        (events of the feeds are shared and bounded per shard instead).
        """
        log = self.hub.log
        chunk = self.hub.config.read_bytes
        await self.credit.take(chunk)
        try:
            await self._read_and_send(sink, log, chunk)
        finally:
            self.credit.release(chunk)

    async def _read_and_send(self, sink: BodySink, log: Log, chunk: int) -> None:
        batches, result = log.read_batches(self.stream, self.index, self.position, max_bytes=chunk)
        newest = result.tail.last_arrival_ms
        for stored in batches:
            first = self.base + stored.first_offset
            last = first + stored.count - 1
            behind = 0
            if stored.first_offset + stored.count < result.tail.next_offset:
                behind = max(0, newest - stored.last_arrival_ms)
            await self._send(sink, events.encode_records(first, stored.payload, last, behind))
            self.position = stored.first_offset + stored.count
        if not batches:
            # Nothing stored past the position (a trimmed or empty shard): skip to
            # where the log continues, so the feed can take over.
            self.position = max(self.position, result.next_offset)

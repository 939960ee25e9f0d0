"""Consumer groups: processes that share a stream's shards through the broker's leases.

``ConsumerGroup(endpoint, stream, group)`` is one member (a *worker*) of the
group ``group``. Every worker with the same group name shares the stream's
shards with the others, KCL's way, with the leases and checkpoints kept in the
broker (``docs/protocol.md``, "Leases and checkpoints")::

    async with ConsumerGroup("http://127.0.0.1:4567", "orders", "billing") as group:
        async for batch in group:
            for record in batch.records:
                handle(record)
            await batch.checkpoint()

* **The group name is the application name**: it names the registered
  fan-out consumer (registered if missing, reused if present) and keys the
  leases and checkpoints, so two groups read the same stream independently.
* **Balancing.** Every ``balance_interval`` (and at once after a shard
  finished or a lease was lost) the worker lists the shards and the group's
  leases and decides what to take (``consumers.balance``): free or expired
  leases up to its fair share, and, when none is free and another worker holds
  two more than it does, one lease stolen from the most loaded worker per
  pass. A steal is ``ReleaseLease`` in the holder's name under its counter and
  then ``AcquireLease``: the counter grows, and the old holder is fenced off
  as if its lease had expired.
* **Renewal.** Every ``renew_interval`` each held lease is renewed. A renewal
  refused (``LeaseLostException``: another worker took it), a listing that
  shows another owner or counter, or a lease whose time ran out here while the
  broker could not be reached: the shard is *lost*. Its subscription is
  dropped at once and no batch of it is delivered any more.
* **Reading.** Each held shard is followed by a ``ShardSubscriber`` (enhanced
  fan-out) from ``AFTER_SEQUENCE_NUMBER`` its checkpoint, or from
  ``starting_position`` when it has none. A ``LATEST`` start is pinned at
  once: the position it began at is checkpointed, so a worker that takes the
  shard over later starts there, not at a later ``LATEST``.
* **Batches.** Each records event is one ``Batch`` (shard id, records,
  ``millis_behind_latest``); ``await batch.checkpoint()`` writes its last
  sequence number under the lease's counter. Batches are handed over one at a
  time through an unbuffered channel: a worker that does not take batches
  stops its subscriptions (HTTP/2 flow control), it never buffers.
* **Finished shards.** At a closed shard's end the worker delivers one last
  batch with ``ended`` set and no records. Checkpointing it writes
  ``SHARD_END`` and releases the lease: the shard is *finished*. Only then are
  its children balanced (``balance.eligible_shards``), so a parent is always
  processed to its end before any child is taken. A worker that never
  checkpoints the end batch keeps the shard, and its children wait.
* **At-least-once.** A checkpoint is the last record processed; a worker that
  takes a shard over (after a release, a steal, or the lease timeout of a
  worker that died) resumes after it. Records delivered and not checkpointed
  are delivered again, never skipped. ``checkpoint`` returns False when the
  lease was lost: the records will be processed again elsewhere.
* **Shutdown.** Leaving the ``async with`` block ends the subscriptions and
  releases every lease, after the last checkpoint the caller made: another
  worker takes the shards at its next pass, without waiting for a timeout.

``BlockingConsumerGroup`` (``consumers.blocking``, re-exported here) runs a
group in a background thread for code that is not async.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import trio

from broker.client import (
    Client,
    Consumer,
    ConsumerDescription,
    HeartbeatEvent,
    LeaseInfo,
    Record,
    RecordsEvent,
    Shard,
    records_of,
)
from broker.errors import InvalidArgumentError, ResourceInUseError, ShardlineError
from broker.model import SHARD_END

from .balance import LeaseState, Steal, decide, eligible_shards
from .blocking import BlockingBatch, BlockingConsumerGroup
from .subscriber import DEFAULT_IDLE_TIMEOUT_S, ShardSubscriber, parents_of

DEFAULT_LEASE_DURATION_S = 10.0
#: How long entering a group waits for its registered consumer to be ``ACTIVE``.
CONSUMER_ACTIVE_TIMEOUT_S = 30.0
#: How long leaving a group spends releasing its leases before it gives up on them.
RELEASE_TIMEOUT_S = 5.0
StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]

_LEASE_LOST = "LeaseLostException"
_IN_USE = "ResourceInUseException"
_NOT_FOUND = "ResourceNotFoundException"


def default_worker_id() -> str:
    """Host, process id and a random suffix: unique even for a restarted process."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class _Lease:
    """A lease this worker holds, and the cancel scope of its shard's reader."""

    __slots__ = ("counter", "ended", "lost", "scope", "shard_id", "valid_until")

    def __init__(self, shard_id: str, counter: int, valid_until: float) -> None:
        self.shard_id = shard_id
        self.counter = counter
        #: trio time after which the lease may have expired on the broker.
        self.valid_until = valid_until
        self.scope = trio.CancelScope()
        self.lost = False
        #: Set once the lease is not this worker's any more (lost, released, finished).
        self.ended = trio.Event()


class Batch:
    """One records event of one shard, or the end of a closed shard (``ended``)."""

    __slots__ = ("_group", "_lease", "_records", "child_shards", "ended", "event", "shard_id")

    def __init__(
        self,
        group: ConsumerGroup,
        lease: _Lease,
        event: RecordsEvent | None,
        child_shards: list[dict[str, Any]] | None = None,
    ) -> None:
        self._group = group
        self._lease = lease
        self._records: list[Record] | None = None if event is not None else []
        self.shard_id = lease.shard_id
        #: The push event as it came (``None`` for the end): for bulk handling and printing.
        self.event = event
        self.ended = event is None
        #: At the end: the shards that continue this one (``ChildShard`` maps).
        self.child_shards = child_shards or []

    @property
    def records(self) -> list[Record]:
        """The records, typed as ``GetRecords`` gives them (built on first use)."""
        if self._records is None:
            assert self.event is not None
            self._records = records_of(self.event)
        return self._records

    @property
    def millis_behind_latest(self) -> int:
        return 0 if self.event is None else self.event.millis_behind

    @property
    def sequence_number(self) -> str:
        """What ``checkpoint`` writes: the last record's sequence number, or ``SHARD_END``."""
        if self.event is None:
            return SHARD_END
        return str(self.event.sequence_number(-1))

    async def checkpoint(self) -> bool:
        """Record this batch as processed; False if the shard's lease was lost meanwhile."""
        return await self._group._checkpoint(self._lease, self.sequence_number)

    async def checkpoint_at(self, sequence_number: str) -> bool:
        """Checkpoint ``sequence_number`` under the lease this batch was read under.

        False once that lease is not this worker's any more, even if the worker
        took the shard again since (a new lease): what was read under an old
        lease must not move the new one's checkpoint.
        """
        return await self._group._checkpoint(self._lease, sequence_number)

    @property
    def lease(self) -> object:
        """The lease it was read under: batches of one lease share it (compare with ``is``)."""
        return self._lease

    @property
    def lease_ended(self) -> trio.Event:
        """Set once that lease is not this worker's any more (lost, released, finished)."""
        return self._lease.ended

    def __repr__(self) -> str:
        what = "end" if self.event is None else f"{len(self.event.records)} records"
        return f"<Batch {self.shard_id} {what}>"


@dataclass(frozen=True, slots=True)
class GroupStatistics:
    worker_id: str
    #: The shards this worker holds now.
    shards: tuple[str, ...]
    #: Shards known to be processed to their end.
    finished: int
    #: Balancing passes made (each lists the shards and the leases).
    passes: int
    batches: int
    checkpoints: int
    leases_taken: int
    leases_stolen: int
    leases_lost: int


class ConsumerGroup:
    """One worker of a consumer group (module docstring); ``async with`` it."""

    def __init__(
        self,
        endpoint: str,
        stream: str,
        group: str,
        *,
        worker_id: str | None = None,
        starting_position: StartingPosition = "TRIM_HORIZON",
        lease_duration: float = DEFAULT_LEASE_DURATION_S,
        renew_interval: float | None = None,
        balance_interval: float | None = None,
        client: Client | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        starting_timestamp_ms: int | None = None,
        consumer_arn: str | None = None,
        shard_handler: Callable[[Batch], Awaitable[object]] | None = None,
    ) -> None:
        """See the module docstring; three keywords serve function consumers.

        ``starting_position="AT_TIMESTAMP"`` starts shards without a checkpoint
        at ``starting_timestamp_ms``. ``consumer_arn`` reads through that
        registered consumer instead of one named after the group (an event
        source mapping names its own). ``shard_handler`` is awaited with each
        batch by the shard's own reader, instead of the iteration: a shard
        whose handler waits (a batch being retried) holds back only itself.
        """
        if starting_position not in ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"):
            raise InvalidArgumentError(
                f"a group starts shards without a checkpoint at TRIM_HORIZON, LATEST or "
                f"AT_TIMESTAMP, not {starting_position!r}"
            )
        if (starting_position == "AT_TIMESTAMP") != (starting_timestamp_ms is not None):
            raise InvalidArgumentError(
                "starting_timestamp_ms goes with starting_position AT_TIMESTAMP, and only with it"
            )
        if not lease_duration > 0:
            raise InvalidArgumentError(f"lease_duration must be positive, not {lease_duration}")
        renew = lease_duration / 3 if renew_interval is None else renew_interval
        if not 0 < renew < lease_duration:
            raise InvalidArgumentError(
                f"renew_interval must be positive and below lease_duration ({lease_duration} s), "
                f"not {renew}"
            )
        self.endpoint = endpoint
        self.stream = stream
        self.group = group
        self.worker_id = worker_id or default_worker_id()
        self.starting_position: StartingPosition = starting_position
        self.lease_duration = lease_duration
        self.renew_interval = renew
        # Failover is the lease timeout plus at most one pass: short passes are cheap
        # (two listings), so they are at most a second apart.
        self.balance_interval = (
            min(1.0, lease_duration / 2) if balance_interval is None else balance_interval
        )
        self.idle_timeout_s = idle_timeout_s
        self.starting_timestamp_ms = starting_timestamp_ms
        self._given_consumer_arn = consumer_arn
        self._shard_handler = shard_handler
        self.stream_arn: str | None = None
        self.consumer_arn: str | None = None
        self._client = client
        self._client_stack = AsyncExitStack()
        self._task_stack = AsyncExitStack()
        #: Opened in ``__aenter__``, so it encloses the caller's block too: it is
        #: cancelled only on the way out. It runs ``_service``, whose nursery holds
        #: the group's tasks and is what a failure cancels, leaving the caller's
        #: own tasks alone.
        self._nursery: trio.Nursery | None = None
        self._tasks: trio.Nursery | None = None
        self._send: trio.MemorySendChannel[Batch] | None = None
        self._receive: trio.MemoryReceiveChannel[Batch] | None = None
        self._leases: dict[str, _Lease] = {}
        self._finished: set[str] = set()
        self._wake = trio.Event()
        self._failure: ShardlineError | None = None
        self._failed = trio.Event()
        #: Each listed shard's parents (from the last balancing pass).
        self._parents: dict[str, tuple[str, ...]] = {}
        self._counts = dict.fromkeys(
            ("passes", "batches", "checkpoints", "leases_taken", "leases_stolen", "leases_lost"),
            0,
        )

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("use the ConsumerGroup as `async with ConsumerGroup(...)`")
        return self._client

    @property
    def _duration_ms(self) -> int:
        return max(1, round(self.lease_duration * 1000))

    def statistics(self) -> GroupStatistics:
        return GroupStatistics(
            self.worker_id, tuple(sorted(self._leases)), len(self._finished), **self._counts
        )

    # -- lifetime -----------------------------------------------------------------

    async def __aenter__(self) -> ConsumerGroup:
        try:
            if self._client is None:
                self._client = await self._client_stack.enter_async_context(Client(self.endpoint))
            self.stream_arn, self.consumer_arn = await self._registered_consumer()
            self._send, self._receive = trio.open_memory_channel[Batch](0)
            self._nursery = await self._task_stack.enter_async_context(trio.open_nursery())
            await self._nursery.start(self._service)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop reading, release every lease, close the connection (if the group opened it)."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        try:
            await self._task_stack.aclose()
        finally:
            self._nursery = self._tasks = None
            if self._send is not None:
                self._send.close()
            async with trio.open_nursery() as nursery:
                for lease in list(self._leases.values()):
                    nursery.start_soon(self._release, lease)
            await self._client_stack.aclose()

    async def _registered_consumer(self) -> tuple[str, str]:
        """The stream's ARN and the group's consumer ARN, registering it if missing."""
        client = self.client
        stream_arn = (await client.describe_stream_summary(self.stream)).stream_arn
        deadline = trio.current_time() + CONSUMER_ACTIVE_TIMEOUT_S
        given = self._given_consumer_arn
        while True:
            found: Consumer | ConsumerDescription | None = None
            if given is not None:
                found = await client.describe_stream_consumer(consumer_arn=given)
                if found.consumer_status == "ACTIVE":
                    return stream_arn, found.consumer_arn
                if trio.current_time() >= deadline:
                    raise ResourceInUseError(
                        f"consumer {given} is {found.consumer_status}, not ACTIVE, "
                        f"after {CONSUMER_ACTIVE_TIMEOUT_S:g} s"
                    )
                await trio.sleep(0.1)
                continue
            try:
                found = await client.describe_stream_consumer(stream_arn, self.group)
            except ShardlineError as exc:
                if exc.wire_name != _NOT_FOUND:
                    raise
                try:
                    found = await client.register_stream_consumer(stream_arn, self.group)
                except ShardlineError as again:
                    if again.wire_name != _IN_USE:  # else another worker registered it first
                        raise
            if found is not None and found.consumer_status == "ACTIVE":
                return stream_arn, found.consumer_arn
            if trio.current_time() >= deadline:
                status = "missing" if found is None else found.consumer_status
                raise ResourceInUseError(
                    f"consumer {self.group} of stream {self.stream} is {status}, not ACTIVE, "
                    f"after {CONSUMER_ACTIVE_TIMEOUT_S:g} s"
                )
            await trio.sleep(0.1)

    async def _service(self, *, task_status: trio.TaskStatus[None]) -> None:
        async with trio.open_nursery() as tasks:
            self._tasks = tasks
            tasks.start_soon(self._coordinate)
            tasks.start_soon(self._renew)
            task_status.started()

    async def wait_failed(self) -> None:
        """Wait until the group fails, and raise why (for ``shard_handler`` users).

        With a ``shard_handler`` nothing iterates the group, so its failure
        would not be raised anywhere: await this beside the handler's work.
        """
        await self._failed.wait()
        assert self._failure is not None
        raise self._failure

    def _fail(self, error: ShardlineError) -> None:
        """A failure the group cannot work around: the iteration raises it."""
        self._failed.set()
        if self._failure is None:
            self._failure = error
        if self._send is not None:
            self._send.close()
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()

    # -- delivery -----------------------------------------------------------------

    def __aiter__(self) -> ConsumerGroup:
        return self

    async def __anext__(self) -> Batch:
        if self._receive is None:
            raise RuntimeError("use the ConsumerGroup as `async with ConsumerGroup(...)`")
        while True:
            try:
                batch = await self._receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                if self._failure is not None:
                    raise self._failure from None
                raise StopAsyncIteration from None
            if batch._lease.lost:
                continue
            self._counts["batches"] += 1
            return batch

    async def run(
        self, callback: Callable[[Batch], Awaitable[object]], *, checkpoint: bool = True
    ) -> None:
        """Hand every batch to ``callback``; checkpoint it once the callback returned.

        With ``checkpoint=False`` the callback checkpoints when it sees fit. An
        error from the callback ends the run (and, leaving the ``async with``,
        releases the leases): the batch it failed on is not checkpointed.
        """
        async for batch in self:
            await callback(batch)
            if checkpoint:
                await batch.checkpoint()

    async def checkpoint(self, shard_id: str, sequence_number: str) -> bool:
        """Record ``sequence_number`` (or ``"SHARD_END"``) of a held shard as processed.

        False if this worker does not hold the shard (any more): it was lost, and
        its records after the last checkpoint will be delivered again elsewhere.
        """
        lease = self._leases.get(shard_id)
        if lease is None:
            return False
        return await self._checkpoint(lease, sequence_number)

    async def _checkpoint(self, lease: _Lease, sequence_number: str) -> bool:
        if lease.lost or self._leases.get(lease.shard_id) is not lease:
            return False
        try:
            await self.client.set_checkpoint(
                self.stream,
                self.group,
                lease.shard_id,
                sequence_number,
                lease_counter=lease.counter,
            )
        except ShardlineError as exc:
            if exc.wire_name != _LEASE_LOST:
                raise
            self._lose(lease)
            return False
        self._counts["checkpoints"] += 1
        if sequence_number == SHARD_END:
            await self._finish(lease)
        return True

    # -- balancing ----------------------------------------------------------------

    async def _coordinate(self) -> None:
        while True:
            try:
                await self._balance_once()
            except ShardlineError as exc:
                if not exc.retriable:
                    self._fail(exc)
                    return
                # A lost connection or an overloaded broker: try again next pass.
            with trio.move_on_after(self.balance_interval):
                await self._wake.wait()
            self._wake = trio.Event()

    async def _balance_once(self) -> None:
        shards = await self._list_shards()
        self._parents = {s.shard_id: parents_of(s) for s in shards}
        table = await self._list_leases()
        await self._refresh_finished(shards)
        eligible = eligible_shards(((s.shard_id, parents_of(s)) for s in shards), self._finished)
        states: dict[str, LeaseState] = {}
        for row in table.values():
            mine = row.owner == self.worker_id
            if mine and row.shard_id not in self._leases:
                # Ours on the broker but dropped here (its time ran out unseen): free
                # to us, so we take it again (same owner: the counter stays).
                states[row.shard_id] = LeaseState("", row.lease_counter, False)
            else:
                states[row.shard_id] = LeaseState(row.owner, row.lease_counter, row.held)
        for lease in list(self._leases.values()):
            listed = table.get(lease.shard_id)
            if listed is None or (listed.owner, listed.lease_counter) != (
                self.worker_id,
                lease.counter,
            ):
                self._lose(lease)  # stolen, or taken after it expired unseen
        decision = decide(self.worker_id, eligible, states)
        for shard_id in decision.take:
            await self._acquire(shard_id)
        if decision.steal is not None:
            await self._steal(decision.steal)
        self._counts["passes"] += 1

    async def _list_shards(self) -> list[Shard]:
        page = await self.client.list_shards(self.stream)
        shards = list(page.shards)
        while page.next_token:
            page = await self.client.list_shards(next_token=page.next_token)
            shards += page.shards
        return shards

    async def _list_leases(self) -> dict[str, LeaseInfo]:
        page = await self.client.list_leases(self.stream, self.group)
        rows = list(page.leases)
        while page.next_token:
            page = await self.client.list_leases(
                self.stream, self.group, next_token=page.next_token
            )
            rows += page.leases
        return {row.shard_id: row for row in rows}

    async def _refresh_finished(self, shards: list[Shard]) -> None:
        """Learn which closed shards some worker finished (checkpointed ``SHARD_END``)."""
        for shard in shards:
            if shard.is_open or shard.shard_id in self._finished:
                continue
            try:
                cp = await self.client.get_checkpoint(self.stream, self.group, shard.shard_id)
            except ShardlineError as exc:
                if exc.wire_name != _NOT_FOUND:
                    raise
                continue
            if cp.shard_end:
                self._finished.add(shard.shard_id)

    async def _acquire(self, shard_id: str) -> None:
        if shard_id in self._leases:
            return
        asked = trio.current_time()
        try:
            info = await self.client.acquire_lease(
                self.stream, self.group, shard_id, self.worker_id, self._duration_ms
            )
        except ShardlineError as exc:
            if exc.wire_name != _IN_USE:
                raise
            return  # another worker was quicker
        lease = _Lease(shard_id, info.lease_counter, asked + self.lease_duration)
        self._leases[shard_id] = lease
        self._counts["leases_taken"] += 1
        assert self._tasks is not None
        self._tasks.start_soon(self._read, lease)

    async def _steal(self, steal: Steal) -> None:
        try:
            await self.client.release_lease(
                self.stream, self.group, steal.shard_id, steal.owner, steal.counter
            )
        except ShardlineError as exc:
            if exc.wire_name != _LEASE_LOST:
                raise
            return  # it changed hands since the listing: decide again next pass
        self._counts["leases_stolen"] += 1
        await self._acquire(steal.shard_id)

    def _lose(self, lease: _Lease) -> None:
        """Stop the shard at once: its reader is cancelled, its batches are not delivered."""
        if self._leases.get(lease.shard_id) is lease:
            del self._leases[lease.shard_id]
            self._counts["leases_lost"] += 1
        lease.lost = True
        lease.scope.cancel()
        lease.ended.set()
        self._wake.set()

    async def _finish(self, lease: _Lease) -> None:
        """The shard was processed to its end: its children may be taken now."""
        self._finished.add(lease.shard_id)
        await self._release(lease)
        self._wake.set()

    async def _release(self, lease: _Lease) -> None:
        """Give a lease back (best effort: a lease not released expires by itself)."""
        if self._leases.get(lease.shard_id) is lease:
            del self._leases[lease.shard_id]
        lease.scope.cancel()
        lease.ended.set()
        # Shielded: the caller may be the shard's reader, whose scope was just cancelled.
        with trio.move_on_after(RELEASE_TIMEOUT_S, shield=True):
            with suppress(ShardlineError):
                await self.client.release_lease(
                    self.stream, self.group, lease.shard_id, self.worker_id, lease.counter
                )

    # -- renewal ------------------------------------------------------------------

    async def _renew(self) -> None:
        while True:
            await trio.sleep(self.renew_interval)
            async with trio.open_nursery() as nursery:
                for lease in list(self._leases.values()):
                    nursery.start_soon(self._renew_one, lease)

    async def _renew_one(self, lease: _Lease) -> None:
        asked = trio.current_time()
        try:
            with trio.move_on_after(self.renew_interval) as scope:
                await self.client.renew_lease(
                    self.stream,
                    self.group,
                    lease.shard_id,
                    self.worker_id,
                    lease.counter,
                    self._duration_ms,
                )
        except ShardlineError as exc:
            if exc.wire_name == _LEASE_LOST:
                self._lose(lease)
            elif not exc.retriable:
                self._fail(exc)
            elif trio.current_time() >= lease.valid_until:
                self._lose(lease)
            return
        if scope.cancelled_caught:
            if trio.current_time() >= lease.valid_until:
                self._lose(lease)
            return
        lease.valid_until = asked + self.lease_duration

    # -- reading ------------------------------------------------------------------

    async def _read(self, lease: _Lease) -> None:
        with lease.scope:
            try:
                await self._follow(lease)
            except trio.ClosedResourceError:
                pass  # the group is closing
            except ShardlineError as exc:
                if exc.wire_name == _IN_USE:
                    # A newer subscription of our consumer took the shard: another
                    # worker reads it now. Give the lease up; balancing sorts it out.
                    await self._release(lease)
                    self._wake.set()
                elif exc.wire_name == _LEASE_LOST:
                    self._lose(lease)
                else:
                    self._fail(exc)

    async def _follow(self, lease: _Lease) -> None:
        position = await self._start_position(lease)
        if position is None:
            await self._finish(lease)  # finished by a worker before us
            return
        # A LATEST start is pinned by checkpointing where it began (module docstring);
        # if the lease was lost meanwhile, the checkpoint cancelled this reader.
        pin = position["Type"] in ("LATEST", "AT_TIMESTAMP")
        assert self.consumer_arn is not None and self._send is not None
        deliver = self._shard_handler or self._send.send
        async with ShardSubscriber(
            self.client,
            self.consumer_arn,
            lease.shard_id,
            position,
            idle_timeout_s=self.idle_timeout_s,
        ) as events:
            async for event in events:
                if isinstance(event, RecordsEvent):
                    if pin:
                        await self._checkpoint(lease, str(event.first_sequence - 1))
                        pin = False
                    await deliver(Batch(self, lease, event))
                elif isinstance(event, HeartbeatEvent):
                    if pin:
                        await self._checkpoint(lease, str(event.continuation_sequence))
                        pin = False
                else:
                    await deliver(Batch(self, lease, None, list(event.child_shards)))
                    return

    async def _start_position(self, lease: _Lease) -> dict[str, Any] | None:
        """After the shard's checkpoint, or the group's starting position; None if finished."""
        try:
            cp = await self.client.get_checkpoint(self.stream, self.group, lease.shard_id)
        except ShardlineError as exc:
            if exc.wire_name != _NOT_FOUND:
                raise
            if any(p in self._finished for p in self._parents.get(lease.shard_id, ())):
                # A child of a shard this group finished: from its first record, as KCL
                # and Lambda do (a LATEST start here would skip what came since the split).
                return {"Type": "TRIM_HORIZON"}
            if self.starting_position == "AT_TIMESTAMP":
                return {"Type": "AT_TIMESTAMP", "Timestamp": self.starting_timestamp_ms}
            return {"Type": self.starting_position}
        if cp.shard_end:
            return None
        return {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": cp.sequence_number}


__all__ = [
    "SHARD_END",
    "Batch",
    "BlockingBatch",
    "BlockingConsumerGroup",
    "ConsumerGroup",
    "GroupStatistics",
    "StartingPosition",
    "default_worker_id",
]

"""Following shards with push subscriptions: resubscribing, backing off, shard lineage.

One SubscribeToShard answer lasts a few minutes at most, ends at a closed
shard's end, and can fail. This module turns subscriptions into what a
consumer wants: every record of a shard, or of a whole stream, in order.

``ShardSubscriber`` follows one shard: an async iterator of its events
(``RecordsEvent``, ``HeartbeatEvent``, and a final ``EndEvent``)::

    async with ShardSubscriber(client, arn, shard_id, {"Type": "TRIM_HORIZON"}) as events:
        async for event in events:
            ...

* The first subscription starts at the caller's ``StartingPosition``. Every
  later one starts ``AFTER_SEQUENCE_NUMBER`` the last continuation received
  (``continuation``), so nothing is missed and nothing repeats; until some
  event carried a continuation, the caller's position is used again.
* A body that ends without an *end* event (its lifetime ran out, the broker
  shut down) is followed by a new subscription at once.
* A subscription that sends nothing for ``idle_timeout_s`` (the broker sends
  a heartbeat every second while idle) is taken for a lost connection: a
  half-open TCP connection or a stuck sender would otherwise hang it forever.
* A lost connection, a retriable error (answered before streaming or as an
  *error* event: ``InternalFailureException``, ``LimitExceededException``,
  ...) and ``ResourceInUseException`` *answered before streaming* (another
  subscription for this consumer and shard started less than the takeover
  window ago, typically our own from before a lost connection; or the broker
  is shutting down) are retried after a backoff: exponential with equal
  jitter (``Backoff``), reset by the next event received. A body that ends
  without any event counts as a failure too, so nothing spins.
* ``ResourceInUseException`` *as an error event* means a newer subscription
  took this one over: someone else reads the shard now, so it is raised, as
  is every error that is not retriable (``ResourceNotFoundException``, ...).
* At a closed shard's end the ``EndEvent`` is the last event; ``child_shards``
  then lists the shards that continue it.

``StreamSubscriber`` follows a whole stream, shard lineage included: it lists
the shards (``ListShards``), subscribes to each with a ``ShardSubscriber``
(one task each), and yields ``ShardEvent(shard_id, event)`` from all of them.
A shard starts only once each of its parents that is followed has ended, and
the parent's ``EndEvent`` has been handed to the caller: the parent's records
all come before any of its children's. The first shards start at the caller's
position; the shards that come after them start at ``TRIM_HORIZON``. Which
shards are first depends on the position: every shard for ``TRIM_HORIZON``
(roots first), the open ones for ``LATEST``, the ones open at the time for
``AT_TIMESTAMP`` (the ``ListShards`` filters). A sequence number belongs to one
shard, so ``AT_``/``AFTER_SEQUENCE_NUMBER`` are for ``ShardSubscriber`` only.

The lineage bookkeeping (``Lineage``) is pure: it is given what the broker
said and answers which shards may start.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Protocol

import trio

from broker.client import (
    Backoff,
    ConnectionLostError,
    EndEvent,
    ErrorEvent,
    Event,
    HeartbeatEvent,
    ListShardsResult,
    RecordsEvent,
    Shard,
    error_class,
)
from broker.errors import InvalidArgumentError, ShardlineError

#: What a ``ShardSubscriber`` yields.
ShardEventType = RecordsEvent | HeartbeatEvent | EndEvent

TRIM_HORIZON = {"Type": "TRIM_HORIZON"}
#: A subscription silent this long is taken for lost (the broker heartbeats every 1 s).
DEFAULT_IDLE_TIMEOUT_S = 30.0
#: ``ListShards`` filters choosing a stream follower's first shards, by starting position.
_FIRST_SHARDS_FILTER = {
    "TRIM_HORIZON": None,
    "LATEST": "AT_LATEST",
    "AT_TIMESTAMP": "AT_TIMESTAMP",
}


class SubscriptionSource(Protocol):
    """What ``ShardSubscriber`` needs of a ``Client``; tests give a fake."""

    def subscribe_to_shard(
        self, consumer_arn: str, shard_id: str, starting_position: dict[str, Any]
    ) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...


class StreamSource(SubscriptionSource, Protocol):
    """What ``StreamSubscriber`` needs of a ``Client``."""

    async def list_shards(
        self,
        stream_name: str | None = None,
        *,
        next_token: str | None = None,
        shard_filter: dict[str, Any] | None = None,
    ) -> ListShardsResult: ...


def error_of(event: ErrorEvent) -> ShardlineError:
    """An *error* event as the named error it reports."""
    return error_class(event.error_code, 400)(event.message)


def retriable_before_streaming(error: ShardlineError) -> bool:
    """Whether a refused subscription is tried again: the takeover window passes."""
    return error.retriable or error.wire_name == "ResourceInUseException"


def retriable_in_stream(error: ShardlineError) -> bool:
    """Whether a subscription that failed while streaming is tried again.

    ``ResourceInUseException`` here says a newer subscription took over.
    """
    return error.retriable and error.wire_name != "ResourceInUseException"


def position_after(continuation: int | None, initial: dict[str, Any]) -> dict[str, Any]:
    """Where the next subscription starts: after the continuation, or where the first did."""
    if continuation is None:
        return dict(initial)
    return {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": str(continuation)}


class ShardSubscriber:
    """One shard's events across as many subscriptions as it takes (module docstring)."""

    def __init__(
        self,
        source: SubscriptionSource,
        consumer_arn: str,
        shard_id: str,
        starting_position: dict[str, Any],
        *,
        backoff: Backoff = Backoff(),
        rng: random.Random | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self._source = source
        self.consumer_arn = consumer_arn
        self.shard_id = shard_id
        self.starting_position = dict(starting_position)
        self.backoff = backoff
        self.idle_timeout_s = idle_timeout_s
        self._rng = rng if rng is not None else random.Random()
        #: The last continuation received: the next subscription starts after it.
        self.continuation: int | None = None
        #: Set at the shard's end: the shards that continue it (ChildShard maps).
        self.child_shards: list[dict[str, Any]] | None = None
        #: Failed attempts in a row (reset by an event).
        self.failures = 0
        self.subscriptions = 0
        self.last_error: ShardlineError | None = None
        self._stack: AsyncExitStack | None = None
        self._events: AsyncIterator[Event] | None = None
        self._received = 0
        self._ended = False

    @property
    def ended(self) -> bool:
        """Whether the shard's end was reached (``child_shards`` is set)."""
        return self._ended

    def next_position(self) -> dict[str, Any]:
        return position_after(self.continuation, self.starting_position)

    async def __aenter__(self) -> ShardSubscriber:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> ShardSubscriber:
        return self

    async def __anext__(self) -> ShardEventType:
        while True:
            if self._ended:
                raise StopAsyncIteration
            if self._events is None:
                await self._subscribe()
            assert self._events is not None
            try:
                with trio.move_on_after(self.idle_timeout_s) as idle:
                    event = await self._events.__anext__()
                if idle.cancelled_caught:
                    raise ConnectionLostError(
                        f"the subscription sent nothing for {self.idle_timeout_s:g} s"
                    )
            except StopAsyncIteration:
                # The lifetime ran out (or the broker shut down): subscribe again.
                quiet = self._received == 0
                await self._drop()
                if quiet:
                    await self._back_off(
                        ConnectionLostError("the subscription ended before any event")
                    )
                continue
            except ShardlineError as exc:
                await self._drop()
                if not retriable_in_stream(exc):
                    raise
                await self._back_off(exc)
                continue
            if isinstance(event, ErrorEvent):
                await self._drop()
                error = error_of(event)
                if not retriable_in_stream(error):
                    raise error
                await self._back_off(error)
                continue
            self._received += 1
            self.failures = 0
            if isinstance(event, EndEvent):
                self._ended = True
                self.child_shards = list(event.child_shards)
                await self._drop()
            else:
                self.continuation = event.continuation_sequence
            return event

    async def _subscribe(self) -> None:
        while True:
            stack = AsyncExitStack()
            try:
                events = await stack.enter_async_context(
                    self._source.subscribe_to_shard(
                        self.consumer_arn, self.shard_id, self.next_position()
                    )
                )
            except ShardlineError as exc:
                await stack.aclose()
                if not retriable_before_streaming(exc):
                    raise
                await self._back_off(exc)
                continue
            except BaseException:
                await stack.aclose()
                raise
            self._stack, self._events, self._received = stack, events, 0
            self.subscriptions += 1
            return

    async def _back_off(self, error: ShardlineError) -> None:
        self.failures += 1
        self.last_error = error
        limit = self.backoff.max_attempts
        if limit is not None and self.failures > limit:
            raise error
        await trio.sleep(self.backoff.delay(self.failures, self._rng))

    async def _drop(self) -> None:
        stack, self._stack, self._events = self._stack, None, None
        if stack is not None:
            with trio.CancelScope(shield=True):
                await stack.aclose()

    async def aclose(self) -> None:
        """End the current subscription, if any (its stream is reset)."""
        await self._drop()


# -- lineage ---------------------------------------------------------------------


def parents_of(shard: Shard) -> tuple[str, ...]:
    return tuple(p for p in (shard.parent_shard_id, shard.adjacent_parent_shard_id) if p)


class Lineage:
    """Which followed shards may start: each one once all of its followed parents ended.

    A parent that is not followed (trimmed away, or before the starting
    position) does not hold its children back. Pure: no I/O, no clock.
    """

    def __init__(self) -> None:
        self.parents: dict[str, tuple[str, ...]] = {}
        self.started: set[str] = set()
        self.ended: set[str] = set()

    def follow(self, shard_id: str, parents: Iterable[str]) -> None:
        """Follow a shard (again: nothing changes)."""
        self.parents.setdefault(shard_id, tuple(parents))

    def adopt(self, listing: Iterable[tuple[str, tuple[str, ...]]]) -> None:
        """Follow every listed shard that descends from a followed one."""
        pending = list(listing)
        changed = True
        while changed:
            changed = False
            for shard_id, parents in pending:
                if shard_id not in self.parents and any(p in self.parents for p in parents):
                    self.follow(shard_id, parents)
                    changed = True

    def unknown_parents(self, children: Iterable[tuple[str, tuple[str, ...]]]) -> set[str]:
        """Parents named by ``children`` that are not followed."""
        return {p for _, parents in children for p in parents if p not in self.parents}

    def finish(self, shard_id: str, children: Iterable[tuple[str, tuple[str, ...]]]) -> list[str]:
        """``shard_id`` ended with ``children``: follow them; the shards that may start now."""
        self.ended.add(shard_id)
        for child, parents in children:
            self.follow(child, parents)
        return self.startable()

    def startable(self) -> list[str]:
        """The followed shards not started whose followed parents all ended; now started."""
        ready = [
            shard_id
            for shard_id, parents in self.parents.items()
            if shard_id not in self.started
            and all(p in self.ended or p not in self.parents for p in parents)
        ]
        ready.sort()
        self.started.update(ready)
        return ready

    @property
    def active(self) -> set[str]:
        """Started and not ended."""
        return self.started - self.ended


# -- a whole stream -----------------------------------------------------------------


class ShardEvent(NamedTuple):
    """An event of one of a stream's shards."""

    shard_id: str
    event: ShardEventType


@dataclass(frozen=True, slots=True)
class _Failure:
    error: ShardlineError


def _children(event: EndEvent) -> list[tuple[str, tuple[str, ...]]]:
    return [(c["ShardId"], tuple(c["ParentShards"])) for c in event.child_shards]


class StreamSubscriber:
    """Every shard of a stream, children after their parents (module docstring)."""

    def __init__(
        self,
        source: StreamSource,
        stream_name: str,
        consumer_arn: str,
        starting_position: dict[str, Any],
        *,
        heartbeats: bool = False,
        backoff: Backoff = Backoff(),
        rng: random.Random | None = None,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        kind = starting_position.get("Type")
        if kind not in _FIRST_SHARDS_FILTER:
            raise InvalidArgumentError(
                f"a stream is followed from TRIM_HORIZON, LATEST or AT_TIMESTAMP, not {kind!r}: "
                "a sequence number belongs to one shard (use ShardSubscriber)"
            )
        self._source = source
        self.stream_name = stream_name
        self.consumer_arn = consumer_arn
        self.starting_position = dict(starting_position)
        self.heartbeats = heartbeats
        self.backoff = backoff
        self.idle_timeout_s = idle_timeout_s
        self._rng = rng if rng is not None else random.Random()
        self.lineage = Lineage()
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        self._receive: trio.MemoryReceiveChannel[ShardEvent | _Failure] | None = None

    async def list_shards(self, shard_filter: dict[str, Any] | None = None) -> list[Shard]:
        """The stream's shards (every page)."""
        page = await self._source.list_shards(self.stream_name, shard_filter=shard_filter)
        shards = list(page.shards)
        while page.next_token:
            page = await self._source.list_shards(next_token=page.next_token)
            shards += page.shards
        return shards

    async def __aenter__(self) -> StreamSubscriber:
        kind = self.starting_position["Type"]
        filter_type = _FIRST_SHARDS_FILTER[kind]
        shard_filter: dict[str, Any] | None = None
        if filter_type is not None:
            shard_filter = {"Type": filter_type}
            if "Timestamp" in self.starting_position:
                shard_filter["Timestamp"] = self.starting_position["Timestamp"]
        for shard in await self.list_shards(shard_filter):
            self.lineage.follow(shard.shard_id, parents_of(shard))
        send, self._receive = trio.open_memory_channel[ShardEvent | _Failure](0)
        stack = AsyncExitStack()
        self._nursery = await stack.enter_async_context(trio.open_nursery())
        self._stack = stack
        async with send:
            for shard_id in self.lineage.startable():
                position = self.starting_position
                self._nursery.start_soon(self._follow, shard_id, position, send.clone())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop following: every subscription ends."""
        stack, self._stack = self._stack, None
        if stack is not None and self._nursery is not None:
            self._nursery.cancel_scope.cancel()
            await stack.aclose()

    def __aiter__(self) -> StreamSubscriber:
        return self

    async def __anext__(self) -> ShardEvent:
        if self._receive is None:
            raise RuntimeError("use the StreamSubscriber as `async with StreamSubscriber(...)`")
        try:
            item = await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None
        if isinstance(item, _Failure):
            raise item.error
        return item

    async def _follow(
        self,
        shard_id: str,
        position: dict[str, Any],
        send: trio.MemorySendChannel[ShardEvent | _Failure],
    ) -> None:
        async with send:
            try:
                async with ShardSubscriber(
                    self._source,
                    self.consumer_arn,
                    shard_id,
                    position,
                    backoff=self.backoff,
                    rng=self._rng,
                    idle_timeout_s=self.idle_timeout_s,
                ) as events:
                    async for event in events:
                        if isinstance(event, HeartbeatEvent) and not self.heartbeats:
                            continue
                        # Unbuffered: this returns once the caller took the event, so a
                        # parent's records and end are handed over before a child starts.
                        await send.send(ShardEvent(shard_id, event))
                        if isinstance(event, EndEvent):
                            for child in await self._after_end(shard_id, event):
                                assert self._nursery is not None
                                self._nursery.start_soon(
                                    self._follow, child, TRIM_HORIZON, send.clone()
                                )
            except ShardlineError as exc:
                await send.send(_Failure(exc))

    async def _after_end(self, shard_id: str, event: EndEvent) -> list[str]:
        children = _children(event)
        if self.lineage.unknown_parents(children):
            # A merge with a shard not followed yet: it may descend from one still being
            # read (created after the first listing); if so, it must end first.
            listing = await self.list_shards()
            self.lineage.adopt((s.shard_id, parents_of(s)) for s in listing)
        return self.lineage.finish(shard_id, children)

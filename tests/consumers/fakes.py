"""A scripted stand-in for the ``Client`` of ``consumers.subscriber``: subscriptions and shards.

Each ``subscribe_to_shard`` call takes the next script of its shard and
records the call (shard, position, trio time). A script is a ``Refuse``
(an error answered before streaming) or a list of items played as the body:
events are given, a ``ShardlineError`` is raised (a lost connection, say),
a ``trio.Event`` is waited for (the test says when to go on), ``HOLD`` waits
forever (an idle subscription). A shard without scripts left
fails the test with ``LookupError``. ``list_shards`` pages through
``shards`` two at a time, recording each filter.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from broker.client import (
    EndEvent,
    ErrorEvent,
    Event,
    HashKeyRange,
    HeartbeatEvent,
    ListShardsResult,
    RecordsEvent,
    SequenceNumberRange,
    Shard,
)
from broker.errors import ShardlineError

HOLD = object()
PAGE = 2


@dataclass(frozen=True)
class Refuse:
    error: ShardlineError


@dataclass(frozen=True)
class Call:
    shard_id: str
    position: dict[str, Any]
    at: float


Script = Refuse | list[Any]


class FakeSource:
    def __init__(
        self, scripts: dict[str, list[Script]] | None = None, shards: list[Shard] | None = None
    ) -> None:
        self.scripts: dict[str, deque[Script]] = {k: deque(v) for k, v in (scripts or {}).items()}
        self.shards = list(shards or [])
        self.calls: list[Call] = []
        self.filters: list[dict[str, Any] | None] = []
        self.open = 0
        self.closed = 0

    def script(self, shard_id: str, *scripts: Script) -> None:
        self.scripts.setdefault(shard_id, deque()).extend(scripts)

    def subscribe_to_shard(
        self, consumer_arn: str, shard_id: str, starting_position: dict[str, Any]
    ) -> Any:
        self.calls.append(Call(shard_id, dict(starting_position), trio.current_time()))
        scripts = self.scripts.get(shard_id)
        if not scripts:
            raise LookupError(f"no script left for a subscription to {shard_id}")
        return self._open(scripts.popleft())

    def calls_of(self, shard_id: str) -> list[Call]:
        return [c for c in self.calls if c.shard_id == shard_id]

    @asynccontextmanager
    async def _open(self, script: Script) -> AsyncIterator[AsyncIterator[Event]]:
        await trio.lowlevel.checkpoint()
        if isinstance(script, Refuse):
            raise script.error
        self.open += 1
        try:
            yield self._body(script)
        finally:
            self.open -= 1
            self.closed += 1

    def _body(self, items: list[Any]) -> FakeBody:
        return FakeBody(items)

    async def list_shards(
        self,
        stream_name: str | None = None,
        *,
        next_token: str | None = None,
        shard_filter: dict[str, Any] | None = None,
    ) -> ListShardsResult:
        await trio.lowlevel.checkpoint()
        if next_token is None:
            self.filters.append(shard_filter)
        start = int(next_token or 0)
        end = start + PAGE
        return ListShardsResult(
            self.shards[start:end], str(end) if end < len(self.shards) else None
        )


class FakeBody:
    """A scripted body; like ``ShardEvents``, a cancelled wait takes nothing."""

    def __init__(self, items: list[Any]) -> None:
        self.items = deque(items)

    def __aiter__(self) -> FakeBody:
        return self

    async def __anext__(self) -> Event:
        while True:
            await trio.lowlevel.checkpoint()
            if not self.items:
                raise StopAsyncIteration
            item = self.items[0]
            if item is HOLD:
                await trio.sleep_forever()
            if isinstance(item, trio.Event):
                await item.wait()
                self.items.popleft()
                continue
            self.items.popleft()
            if isinstance(item, ShardlineError):
                raise item
            return item  # type: ignore[no-any-return]


def records(first: int, *datas: bytes, behind: int = 0) -> RecordsEvent:
    return RecordsEvent(
        first, [[1_000 + i, "k", d] for i, d in enumerate(datas)], first + len(datas) - 1, behind
    )


def heartbeat(continuation: int) -> HeartbeatEvent:
    return HeartbeatEvent(continuation, 0)


def end(*children: tuple[str, list[str]]) -> EndEvent:
    return EndEvent(
        [
            {
                "ShardId": child,
                "ParentShards": parents,
                "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "1"},
            }
            for child, parents in children
        ]
    )


def error(code: str, message: str = "") -> ErrorEvent:
    return ErrorEvent(code, message or code)


def shard(shard_id: str, *parents: str, closed: bool = False) -> Shard:
    return Shard(
        shard_id,
        HashKeyRange("0", "1"),
        SequenceNumberRange("0", "9" if closed else None),
        parents[0] if parents else None,
        parents[1] if len(parents) > 1 else None,
    )

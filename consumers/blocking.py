"""A consumer group for code that is not async: the trio group run in a background thread.

``BlockingConsumerGroup`` takes ``ConsumerGroup``'s arguments::

    with BlockingConsumerGroup("http://127.0.0.1:4567", "orders", "billing") as group:
        for batch in group:
            for record in batch.records:
                handle(record)
            batch.checkpoint()

Entering starts a thread that runs ``trio.run`` with the group inside its
``async with``, and waits until the group is up (or raises what stopped it).
Each step of the iteration, each ``checkpoint``, is one call into that thread
(``trio.from_thread.run``) of the group's own method, so the blocking side is
a wrapper, not a second implementation: batches come one at a time, exactly as
the async iterator gives them, and several plain threads may iterate the same
group. Leaving the block stops the group (its leases are released) and joins
the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from broker.client import Record

if TYPE_CHECKING:
    from .group import Batch, ConsumerGroup, GroupStatistics

T = TypeVar("T")


class BlockingBatch:
    """A ``Batch`` whose ``checkpoint`` blocks (it runs in the group's thread)."""

    __slots__ = ("_batch", "_token")

    def __init__(self, batch: Batch, token: trio.lowlevel.TrioToken) -> None:
        self._batch = batch
        self._token = token

    @property
    def shard_id(self) -> str:
        return self._batch.shard_id

    @property
    def records(self) -> list[Record]:
        return self._batch.records

    @property
    def millis_behind_latest(self) -> int:
        return self._batch.millis_behind_latest

    @property
    def ended(self) -> bool:
        return self._batch.ended

    @property
    def sequence_number(self) -> str:
        return self._batch.sequence_number

    @property
    def batch(self) -> Batch:
        """The async batch underneath."""
        return self._batch

    def checkpoint(self) -> bool:
        """``Batch.checkpoint``: False if the shard's lease was lost meanwhile."""
        return trio.from_thread.run(self._batch.checkpoint, trio_token=self._token)

    def __repr__(self) -> str:
        return f"<Blocking {self._batch!r}>"


class BlockingConsumerGroup:
    """``ConsumerGroup`` for plain threads (module docstring)."""

    def __init__(self, endpoint: str, stream: str, group: str, **options: Any) -> None:
        self._args = (endpoint, stream, group)
        self._options = options
        self._group: ConsumerGroup | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread: threading.Thread | None = None
        self._closing_error: BaseException | None = None

    @property
    def worker_id(self) -> str:
        return self._running()[0].worker_id

    def __enter__(self) -> BlockingConsumerGroup:
        started: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(
            target=trio.run, args=(self._main, started), name="consumer-group", daemon=True
        )
        self._thread.start()
        failure = started.get()
        if failure is not None:
            self._thread.join()
            raise failure
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc is None and self._closing_error is not None:
            raise self._closing_error

    def close(self) -> None:
        """Stop the group (releasing its leases) and wait for its thread."""
        if self._stop is not None and self._token is not None:
            with suppress(trio.RunFinishedError):  # the group had stopped already
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        if self._thread is not None:
            self._thread.join()

    async def _main(self, started: queue.Queue[BaseException | None]) -> None:
        from .group import ConsumerGroup

        up = False
        try:
            async with ConsumerGroup(*self._args, **self._options) as group:
                self._group, self._stop = group, trio.Event()
                self._token = trio.lowlevel.current_trio_token()
                up = True
                started.put(None)
                await self._stop.wait()
        except BaseException as exc:  # handed to the thread that waits for it
            if not up:
                started.put(exc)
            else:
                self._closing_error = exc

    def _running(self) -> tuple[ConsumerGroup, trio.lowlevel.TrioToken]:
        if self._group is None or self._token is None:
            raise RuntimeError("use the group as `with BlockingConsumerGroup(...) as group`")
        return self._group, self._token

    def _call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(function, *args, trio_token=self._running()[1])

    def __iter__(self) -> Iterator[BlockingBatch]:
        return self

    def __next__(self) -> BlockingBatch:
        group, token = self._running()
        try:
            batch = self._call(group.__anext__)
        except StopAsyncIteration:
            raise StopIteration from None
        return BlockingBatch(batch, token)

    def checkpoint(self, shard_id: str, sequence_number: str) -> bool:
        """``ConsumerGroup.checkpoint``, blocking."""
        return self._call(self._running()[0].checkpoint, shard_id, sequence_number)

    def statistics(self) -> GroupStatistics:
        group, token = self._running()
        return trio.from_thread.run_sync(group.statistics, trio_token=token)

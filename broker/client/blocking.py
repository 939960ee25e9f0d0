"""Blocking facades: ``SyncClient`` and ``SyncProducer`` for code that is not async.

Scripts, WSGI apps and thread pools cannot ``await``. Each facade runs the
async object (``Client``, ``Producer``) inside ``trio.run`` on a daemon thread
of its own and hands every call to that thread with ``trio.from_thread``:
the blocking API is the async one, not a second implementation. A call
costs one hand-over between threads (tens of microseconds); code that sends
many records should use ``SyncProducer.send_many``, one hand-over per
iterable.

Both are safe to call from several threads at once (the calls queue on the
trio thread) and must be closed (``with`` or ``close()``), which flushes the
producer and closes the connection.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager, AbstractContextManager, suppress
from types import TracebackType
from typing import Any, Generic, TypeVar

import trio

from ..fanout.events import DEFAULT_MAX_EVENT_BYTES
from . import sync_streaming
from .batches import ProducerStatistics, RecordHandle
from .client import DEFAULT_TIMEOUT, Client
from .producer import Producer
from .sync_streaming import SyncShardEvents
from .transport import STREAM_BUFFER

T = TypeVar("T")
R = TypeVar("R")


class _Portal(Generic[T]):
    """A trio run on a daemon thread that keeps one async context open until ``close``."""

    def __init__(self, make: Callable[[], AbstractAsyncContextManager[T]], name: str) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._value: T | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main, make), name=name)
        self._thread.daemon = True
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    async def _main(self, make: Callable[[], AbstractAsyncContextManager[T]]) -> None:
        try:
            async with make() as value:
                self._value = value
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:  # handed to the thread that opened or closed us
            self._error = exc
        finally:
            self._ready.set()

    @property
    def value(self) -> T:
        if self._value is None or self._token is None:
            raise RuntimeError("closed")
        return self._value

    def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """``await fn(*args)`` on the trio thread; its result or its error, here."""
        if self._token is None or not self._thread.is_alive():
            raise RuntimeError("the blocking facade is closed")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def run_sync(self, fn: Callable[..., R], *args: Any) -> R:
        if self._token is None or not self._thread.is_alive():
            raise RuntimeError("the blocking facade is closed")
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def close(self) -> None:
        """Leave the async context (closing what it opened) and end the thread."""
        token, stop = self._token, self._stop
        if token is not None and stop is not None and self._thread.is_alive():
            self._token = None
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=token)
        self._thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error


class SyncClient:
    """``Client``'s request/response methods, blocking: ``SyncClient(endpoint).list_streams()``.

    Every coroutine method of ``Client`` (``create_stream``, ``put_records``,
    ``get_records``, ``acquire_lease``, ...) is here with the same arguments
    and results. ``subscribe_to_shard`` is a push subscription read by the
    calling thread itself (``broker.client.sync_streaming``). Read-ahead pages
    need an event loop: use ``Client`` or ``consumers.group``'s blocking group
    for those.
    """

    def __init__(self, endpoint: str = "http://127.0.0.1:4567", **options: Any) -> None:
        self._endpoint = endpoint
        self._options = options
        self._portal: _Portal[Client] = _Portal(
            lambda: Client(endpoint, **options), "shardline-sync-client"
        )

    def subscribe_to_shard(
        self,
        consumer_arn: str,
        shard_id: str,
        starting_position: dict[str, Any],
        *,
        timeout: float | None = None,
        read_timeout: float | None = None,
        stream_buffer_bytes: int = STREAM_BUFFER,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> AbstractContextManager[SyncShardEvents]:
        """``with client.subscribe_to_shard(arn, shard, {"Type": ...}) as events:``

        One push subscription on a blocking connection of its own, read by the
        calling thread (``broker.client.sync_streaming``). ``timeout`` (the
        client's by default) bounds the wait for the answer; ``read_timeout``
        bounds each wait for bytes after it (None: no bound). Resubscribing
        ``AFTER_SEQUENCE_NUMBER`` the last continuation is the caller's job.
        """
        limit = self._options.get("timeout", DEFAULT_TIMEOUT) if timeout is None else timeout
        return sync_streaming.subscribe_to_shard(
            self._endpoint,
            consumer_arn,
            shard_id,
            starting_position,
            timeout=limit,
            read_timeout=read_timeout,
            ssl_context=self._options.get("ssl_context"),
            stream_buffer_bytes=stream_buffer_bytes,
            max_event_bytes=max_event_bytes,
        )

    def __getattr__(self, name: str) -> Any:
        method = getattr(Client, name, None)
        if name.startswith("_") or method is None or not inspect.iscoroutinefunction(method):
            raise AttributeError(f"SyncClient has no blocking {name!r} (see Client.{name})")
        portal = self._portal
        bound = getattr(portal.value, name)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return portal.run(lambda: bound(*args, **kwargs))

        blocking.__name__ = name
        blocking.__doc__ = method.__doc__
        return blocking

    def close(self) -> None:
        self._portal.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncRecordHandle:
    """A record sent by ``SyncProducer``: ``result()`` blocks until it is durable."""

    __slots__ = ("_handle", "_portal")

    def __init__(self, portal: _Portal[Producer], handle: RecordHandle) -> None:
        self._portal = portal
        self._handle = handle

    def done(self) -> bool:
        return self._portal.run_sync(self._handle.done)

    def result(self) -> tuple[str, str]:
        """``(shard_id, sequence_number)`` once durable, or the record's final error raised."""
        return self._portal.run(self._handle.result)


class SyncProducer:
    """``Producer``, blocking: ``send`` returns a handle at once unless the buffer is full.

    The same batching, routing, retries and idempotence as ``Producer`` (its
    arguments are accepted unchanged), run on a background thread.
    """

    def __init__(
        self, endpoint: str = "http://127.0.0.1:4567", stream: str = "", **options: Any
    ) -> None:
        self._portal: _Portal[Producer] = _Portal(
            lambda: Producer(endpoint, stream, **options), "shardline-sync-producer"
        )

    def send(
        self, data: bytes, partition_key: str, explicit_hash_key: str | None = None
    ) -> SyncRecordHandle:
        """Buffer one record (blocking while the buffer is full)."""
        producer = self._portal.value
        handle = self._portal.run(producer.send, data, partition_key, explicit_hash_key)
        return SyncRecordHandle(self._portal, handle)

    def send_many(
        self, records: Iterable[tuple[bytes, str] | tuple[bytes, str, str | None]]
    ) -> list[SyncRecordHandle]:
        """Buffer ``(data, partition_key[, explicit_hash_key])`` records in one hand-over."""
        producer = self._portal.value
        items = list(records)

        async def send_all() -> list[RecordHandle]:
            return [await producer.send(*item) for item in items]

        return [SyncRecordHandle(self._portal, h) for h in self._portal.run(send_all)]

    def send_and_wait(
        self, data: bytes, partition_key: str, explicit_hash_key: str | None = None
    ) -> tuple[str, str]:
        """Send one record and wait until it is durable: ``(shard_id, sequence_number)``."""
        producer = self._portal.value
        return self._portal.run(producer.send_and_wait, data, partition_key, explicit_hash_key)

    def flush(self) -> None:
        """Wait until everything sent so far is acknowledged or failed."""
        self._portal.run(self._portal.value.flush)

    def statistics(self) -> ProducerStatistics:
        return self._portal.run_sync(self._portal.value.statistics)

    def close(self) -> None:
        """Flush and close (the ``Producer``'s own close)."""
        self._portal.close()

    def __enter__(self) -> SyncProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

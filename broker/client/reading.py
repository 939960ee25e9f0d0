"""Reading a shard page after page, the next page fetched while this one is handled.

``GetRecords`` calls on a shard are sequential by nature: each needs the
``NextShardIterator`` of the one before. Made one after another, the broker
waits while the client decodes a page and the client waits while the broker
reads the next: neither is ever busy at the same time as the other.

``Client.read_pages`` overlaps them. A fetch task sends ``GetRecords``
(``Compact``), reads ``NextShardIterator`` from the front of the answer (the
broker puts the small fields before the batches, so this is a few bytes of
msgpack, not the records) and sends the next request at once, while the
caller decodes and handles the page it was given. The hand-off channel has no
buffer, so the task is at most one page ahead: memory stays at two pages.

Once a page leaves the reader caught up (``MillisBehindLatest`` 0), the task
waits ``idle_wait`` seconds before the next call, as Kinesis' own consumers
do, instead of polling an idle shard in a tight loop. At the end of a closed
shard (a null ``NextShardIterator``) the pages end. Leaving the ``async
with`` block cancels the task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from ..protocol.codec import encode_body
from .results import GetRecordsResult
from .transport import RawResponse

if TYPE_CHECKING:
    from .client import Client

DEFAULT_IDLE_WAIT = 1.0


def peek_front(body: bytes) -> dict[str, Any]:
    """The fields of a GetRecords answer that come before its records."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(body), 1))
    unpacker.feed(body)
    front: dict[str, Any] = {}
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key in ("Batches", "Records"):
                break
            front[key] = unpacker.unpack()
    except (ValueError, msgpack.UnpackException):
        pass  # the page's own decoding names the problem
    return front


class Pages:
    """The pages of a ``read_pages`` block: ``async for page in pages``."""

    def __init__(self, client: Client, receive: trio.MemoryReceiveChannel[RawResponse]) -> None:
        self._client = client
        self._receive = receive

    def __aiter__(self) -> Pages:
        return self

    async def __anext__(self) -> GetRecordsResult:
        return self._client.decode_records(await self._next())

    async def _next(self) -> RawResponse:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def wire_maps(self) -> AsyncIterator[dict[str, Any]]:
        """The pages as the wire's maps (``Batches`` of stored records), not typed.

        For consumers that handle records as ``[arrival_ms, key, data]``
        arrays: it skips building a ``Record`` and a sequence-number string
        per record.
        """
        while True:
            try:
                raw = await self._next()
            except StopAsyncIteration:
                return
            yield self._client.decode_wire(raw)


@asynccontextmanager
async def read_pages(
    client: Client,
    shard_iterator: str,
    *,
    limit: int | None = None,
    idle_wait: float = DEFAULT_IDLE_WAIT,
) -> AsyncIterator[Pages]:
    """Pages of a shard from ``shard_iterator`` on, one page read ahead."""
    send, receive = trio.open_memory_channel[RawResponse](0)

    async def fetch() -> None:
        iterator: str | None = shard_iterator
        async with send:
            while iterator is not None:
                request: dict[str, Any] = {"ShardIterator": iterator, "Compact": True}
                if limit is not None:
                    request["Limit"] = limit
                raw = await client.exchange("GetRecords", encode_body(request))
                front = peek_front(raw.body) if raw.status == 200 else {}
                await send.send(raw)
                if raw.status != 200 or not isinstance(front.get("NextShardIterator"), str):
                    return  # an error (the caller raises it) or the end of a closed shard
                iterator = front["NextShardIterator"]
                if front.get("MillisBehindLatest") == 0:
                    await trio.sleep(idle_wait)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        try:
            yield Pages(client, receive)
        finally:
            nursery.cancel_scope.cancel()

"""SubscribeToShard on the client: one subscription's push events, decoded as they arrive.

``Client.subscribe_to_shard(consumer_arn, shard_id, {"Type": "LATEST"})`` is an
async context manager; its value is a ``ShardEvents``, an async iterator of the
typed events of ``broker.fanout.events`` (``RecordsEvent``, ``HeartbeatEvent``,
``EndEvent``, ``ErrorEvent``; the schema is in that module and in
``docs/protocol.md``)::

    async with client.subscribe_to_shard(arn, shard, {"Type": "TRIM_HORIZON"}) as events:
        async for event in events:
            ...

Entering the block sends the request and waits (at most the client's
``timeout``) for the answer's headers. An error answered before streaming
(``ResourceInUseException`` within the takeover window,
``ResourceNotFoundException``, ...) is raised there as its named error. Then
the body is read with ``H2Transport.stream``: bytes are decoded as the
application asks for events, and only what it took is acknowledged to the
broker, so a subscriber that stops iterating stops its own stream and no other
(``transport``'s docstring). The events end when the body does: after an
*end* or *error* event, or when the subscription's lifetime ran out (then
subscribe again ``AFTER_SEQUENCE_NUMBER`` the last continuation;
``consumers.subscriber`` does it). A lost connection raises
``ConnectionLostError`` from the iteration. Leaving the block before the body
ended resets the stream.

This is one subscription, as Kinesis gives it; resubscribing, backing off and
following child shards are ``consumers.subscriber``'s business.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgpack
import trio

from ..errors import SerializationError
from ..fanout.events import (
    DEFAULT_MAX_EVENT_BYTES,
    EndEvent,
    ErrorEvent,
    Event,
    EventDecoder,
    HeartbeatEvent,
    RecordsEvent,
)
from ..protocol.codec import CONTENT_TYPE, encode_body
from .results import Record
from .transport import H2Transport, RawResponse, RequestTimeoutError, StreamedResponse

if TYPE_CHECKING:
    from .client import Client

__all__ = [
    "EndEvent",
    "ErrorEvent",
    "Event",
    "HeartbeatEvent",
    "RecordsEvent",
    "ShardEvents",
    "records_of",
    "subscribe_to_shard",
]

#: The most of an error answer's body read before it is decoded.
MAX_ERROR_BODY = 64 * 1024


class ShardEvents:
    """The events of one subscription, in order: ``async for event in events``.

    Iteration ends when the body ends; a body cut inside an event, or one
    that breaks the schema, raises ``SerializationError``.
    """

    def __init__(
        self, response: StreamedResponse, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> None:
        self._response = response
        self._events = DecodedEvents(max_event_bytes)

    def __aiter__(self) -> ShardEvents:
        return self

    async def __anext__(self) -> Event:
        events = self._events
        while not events.ready:
            if events.ended:
                raise StopAsyncIteration
            events.feed(await self._response.receive_some())
        return events.ready.popleft()

    async def wire(self) -> AsyncIterator[bytes]:
        """The events as they are on the wire, one msgpack map each, not decoded.

        For consumers that handle records in bulk (numpy over the stored
        ``[arrival_ms, key, data]`` arrays, or forwarding them): no Python
        object per record is built. The events are split with msgpack's
        ``skip`` (it walks a map without building it); nothing checks the
        schema. Use either this or ``async for``, not both.
        """
        splitter = WireSplitter(self._events.max_event_bytes)
        while True:
            chunk = await self._response.receive_some()
            if not chunk:
                splitter.close()
                return
            for event in splitter.feed(chunk):
                yield event

    def statistics(self) -> dict[str, int]:
        """Events decoded and not yet taken, and the transport's buffered bytes."""
        return {
            "ready_events": len(self._events.ready),
            "partial_event_bytes": self._events.decoder.pending_bytes,
            **self._response.statistics(),
        }


class DecodedEvents:
    """The events decoded from a body's chunks and not yet taken (sans-IO).

    ``feed(b"")`` marks the end: a body that ended inside an event raises
    ``SerializationError`` there.
    """

    __slots__ = ("decoder", "ended", "ready")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.decoder = EventDecoder(max_event_bytes)
        self.ready: deque[Event] = deque()
        self.ended = False

    @property
    def max_event_bytes(self) -> int:
        return self.decoder.max_event_bytes

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self.ready.extend(self.decoder.feed(chunk))
        else:
            self.ended = True
            self.decoder.close()


class WireSplitter:
    """Push events cut out of a body's chunks as their wire bytes (``ShardEvents.wire``).

    The events are split with msgpack's ``skip`` (it walks a map without
    building it); nothing checks the schema. A chunk that begins at an
    event's start and holds whole events (the usual case: one DATA frame,
    one event) is cut as it is, without a copy.
    """

    __slots__ = ("_buffer", "_dropped", "_max_event_bytes", "_splitter", "_start")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._max_event_bytes = max_event_bytes
        self._splitter = msgpack.Unpacker(max_buffer_size=max_event_bytes * 2)
        self._buffer = bytearray()
        self._dropped = 0  # bytes of the body before ``_buffer[0]``
        # Where the event being split began: after OutOfData the unpacker resumes the
        # same event with the next chunk, so its position is not the event's start.
        self._start = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        """The events that ``chunk`` completes, in order."""
        try:
            self._splitter.feed(chunk)
        except msgpack.BufferFull:
            raise SerializationError(
                f"an event is larger than {self._max_event_bytes} bytes"
            ) from None
        splitter, buffer, dropped, start = self._splitter, self._buffer, self._dropped, self._start
        whole = not buffer
        if not whole:
            buffer += chunk
        events: list[bytes] = []
        while True:
            try:
                splitter.skip()
            except msgpack.OutOfData:
                break
            except (ValueError, msgpack.UnpackException) as exc:
                raise SerializationError(f"the event stream is not valid msgpack: {exc}") from exc
            end = splitter.tell()
            if not whole:
                events.append(bytes(buffer[start - dropped : end - dropped]))
            elif start == dropped and end - dropped == len(chunk):
                events.append(chunk)
            else:
                events.append(chunk[start - dropped : end - dropped])
            start = end
        if whole:
            buffer += chunk[start - dropped :]
        else:
            del buffer[: start - dropped]
        self._dropped = self._start = start
        return events

    def close(self) -> None:
        """The body ended: ``SerializationError`` if it ended inside an event."""
        if self._buffer:
            raise SerializationError(
                f"the event stream ended inside an event ({len(self._buffer)} bytes of it)"
            )


def records_of(event: RecordsEvent) -> list[Record]:
    """A records event's records as ``Record``s (``GetRecords``' type), sequence numbers as text."""
    new = tuple.__new__
    return [
        new(Record, (sequence, arrival, data, key))
        for sequence, (arrival, key, data) in zip(
            event.sequence_numbers(), event.records, strict=True
        )
    ]


@asynccontextmanager
async def subscribe_to_shard(
    client: Client,
    transport: H2Transport,
    consumer_arn: str,
    shard_id: str,
    starting_position: dict[str, Any],
    *,
    timeout: float,
) -> AsyncIterator[ShardEvents]:
    """One subscription's events (``Client.subscribe_to_shard`` is the way in)."""
    body = encode_body(
        {"ConsumerARN": consumer_arn, "ShardId": shard_id, "StartingPosition": starting_position}
    )
    async with AsyncExitStack() as stack:
        with trio.move_on_after(timeout) as scope:
            response = await stack.enter_async_context(
                transport.stream("/v1/SubscribeToShard", body, CONTENT_TYPE)
            )
            if response.status != 200:
                raw = RawResponse(response.status, await _error_body(response))
        if scope.cancelled_caught:
            raise RequestTimeoutError(f"SubscribeToShard got no answer within {timeout} s")
        if response.status != 200:
            client.decode_wire(raw)  # raises the named error
            raise AssertionError("an error answer decoded as a success")  # pragma: no cover
        yield ShardEvents(response)


async def _error_body(response: StreamedResponse) -> bytes:
    body = bytearray()
    while len(body) < MAX_ERROR_BODY:
        chunk = await response.receive_some()
        if not chunk:
            break
        body += chunk
    return bytes(body)

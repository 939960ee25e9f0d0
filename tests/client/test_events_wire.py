"""ShardEvents.wire(): the events' bytes, split exactly, whatever the chunking."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.client.streaming import ShardEvents
from broker.errors import SerializationError


class Chunks:
    """A stand-in for the streamed response: hands out fixed chunks, then b""."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    async def receive_some(self) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def statistics(self) -> dict[str, int]:
        return {}


events_st = st.lists(
    st.fixed_dictionaries(
        {
            "Type": st.just("records"),
            "FirstSequenceNumber": st.integers(1, 10**30).map(str),
            "Records": st.lists(
                st.tuples(st.integers(0, 1 << 62), st.text(max_size=5), st.binary(max_size=300)),
                min_size=1,
                max_size=20,
            ),
        }
    ),
    max_size=8,
)


@given(events_st, st.lists(st.integers(1, 400), max_size=30))
async def test_wire_splits_exactly(events: list[dict[str, Any]], cuts: list[int]) -> None:
    encoded = [msgpack.packb(e) for e in events]
    body = b"".join(encoded)
    chunks, at = [], 0
    for size in cuts:
        if at >= len(body):
            break
        chunks.append(body[at : at + size])
        at += size
    if at < len(body):
        chunks.append(body[at:])
    got = [raw async for raw in ShardEvents(Chunks(chunks)).wire()]  # type: ignore[arg-type]
    assert got == encoded


async def test_a_body_cut_inside_an_event_is_refused() -> None:
    raw = msgpack.packb({"Type": "heartbeat", "ContinuationSequenceNumber": "1"})
    events = ShardEvents(Chunks([raw, raw[:-3]]))  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="inside an event"):
        _ = [r async for r in events.wire()]


async def test_an_event_over_the_bound_is_refused() -> None:
    raw = msgpack.packb({"Type": "heartbeat", "Pad": b"x" * 5000})
    events = ShardEvents(Chunks([raw]), max_event_bytes=1000)  # type: ignore[arg-type]
    with pytest.raises(SerializationError, match="larger than"):
        _ = [r async for r in events.wire()]


@given(events_st, st.lists(st.integers(0, 3), max_size=10), st.integers(0, 50))
async def test_wire_splits_chunks_that_begin_at_events(
    events: list[dict[str, Any]], groups: list[int], cut: int
) -> None:
    # Chunks of whole events (one DATA frame per event, or several), the last one
    # cut short and continued by the next chunk.
    encoded = [msgpack.packb(e) for e in events]
    chunks, at = [], 0
    for size in groups:
        chunks.append(b"".join(encoded[at : at + size]))
        at += size
    rest = b"".join(encoded[at:])
    chunks += [rest[:cut], rest[cut:]]
    got = [raw async for raw in ShardEvents(Chunks([c for c in chunks if c])).wire()]  # type: ignore[arg-type]
    assert got == encoded
    assert all(type(raw) is bytes for raw in got)

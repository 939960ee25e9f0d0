"""``AwsEventStream`` and its translating sink, over a stand-in native body and transport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import botocore.parsers
import botocore.session
import ormsgpack
import pytest

from broker.errors import InternalFailureError
from broker.fanout import events as ev
from broker.fanout.aws import (
    AwsEventStream,
    TranslatingSink,
    TranslationCache,
    shared_translator,
)
from broker.operations.base import BodySink, Streamed
from broker.protocol import aws
from broker.protocol import eventstream as es
from broker.protocol.aws_events import EventTranslator

FIRST = 1000


def records(first: int, *datas: bytes) -> bytes:
    recs = [[1_700_000_000_000 + i, f"k{i}", d] for i, d in enumerate(datas)]
    return ev.encode_records(first, ormsgpack.packb(recs), first + len(recs) - 1, 0)


class Transport:
    """A ``BodySink`` like the h2 one: ``send_nowait`` only while its window has room."""

    def __init__(self, window: int = 1 << 30) -> None:
        self.window = window
        self.chunks: list[bytes] = []

    async def send(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def send_nowait(self, chunk: bytes) -> bool:
        if len(chunk) > self.window:
            return False
        self.chunks.append(chunk)
        return True

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class NativeBody(Streamed):
    """A stand-in for the hub's ``Subscription``: writes given native chunks, as it would."""

    def __init__(self, *steps: tuple[str, bytes]) -> None:
        self.steps = steps
        self.refused: list[bytes] = []

    async def run(self, sink: BodySink) -> None:
        for how, chunk in self.steps:
            # The hub's tail path: try at once, and on refusal send the same chunk.
            if how == "nowait" and not sink.send_nowait(chunk):
                self.refused.append(chunk)
                await sink.send(chunk)
            elif how == "send":
                await sink.send(chunk)


class CountingTranslator(EventTranslator):
    def __init__(self, codec: aws.Codec) -> None:
        super().__init__(codec)
        self.calls = 0

    def translate(self, chunk: bytes | bytearray | memoryview) -> bytes:
        self.calls += 1
        return super().translate(chunk)


def decoded(body: bytes) -> list[es.Message]:
    decoder = es.EventStreamDecoder()
    out = decoder.feed(body)
    decoder.close()
    return out


class RawStream:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self) -> Iterator[bytes]:
        yield self.body

    def close(self) -> None:
        pass


def boto3_events(body: bytes) -> Iterator[dict[str, Any]]:
    model = botocore.session.get_session().get_service_model("kinesis")
    parsed = botocore.parsers.create_parser("json").parse(
        {
            "status_code": 200,
            "headers": {},
            "body": RawStream(body),
            "context": {"operation_name": "SubscribeToShard"},
        },
        model.operation_model("SubscribeToShard").output_shape,
    )
    return iter(parsed["EventStream"])


async def test_the_body_opens_with_the_initial_response_and_translates_every_chunk() -> None:
    native = NativeBody(
        ("send", records(FIRST, b"a", b"b")),
        ("nowait", records(FIRST + 2, b"c")),
        ("send", ev.encode_heartbeat(FIRST + 2, 0)),
        ("send", ev.encode_error("ResourceInUseException", "taken over")),
    )
    stream = AwsEventStream(native, aws.JSON)
    assert stream.content_type == "application/vnd.amazon.eventstream"
    transport = Transport()
    await stream.run(transport)
    messages = decoded(transport.body)
    assert [m.text(":event-type") or m.text(":exception-type") for m in messages] == [
        "initial-response",
        "SubscribeToShardEvent",
        "SubscribeToShardEvent",
        "SubscribeToShardEvent",
        "ResourceInUseException",
    ]
    events = boto3_events(transport.body)
    assert [r["Data"] for r in next(events)["SubscribeToShardEvent"]["Records"]] == [b"a", b"b"]
    assert next(events)["SubscribeToShardEvent"]["ContinuationSequenceNumber"] == str(FIRST + 2)
    assert next(events)["SubscribeToShardEvent"]["Records"] == []
    with pytest.raises(botocore.exceptions.EventStreamError, match="ResourceInUseException"):
        next(events)


async def test_a_refused_chunk_is_sent_again_without_translating_it_again() -> None:
    translator = CountingTranslator(aws.JSON)
    chunk = records(FIRST, b"x" * 500)
    native = NativeBody(("nowait", chunk))
    transport = Transport(window=100)  # too small for the translation
    sink = TranslatingSink(transport, translator)
    await native.run(sink)
    assert native.refused == [chunk]
    assert translator.calls == 1
    (message,) = decoded(transport.body)
    assert json.loads(message.payload)["Records"][0]["SequenceNumber"] == str(FIRST)


async def test_the_refused_translation_is_dropped_at_the_next_chunk() -> None:
    translator = CountingTranslator(aws.JSON)
    first, second = records(FIRST, b"x" * 500), records(FIRST + 1, b"y")
    sink = TranslatingSink(Transport(window=100), translator)
    assert not sink.send_nowait(first)
    await sink.send(second)  # the hub sent something else (say, joined feed events)
    await sink.send(first)
    assert translator.calls == 3


async def test_tail_batches_are_translated_once_for_every_subscriber() -> None:
    translator = CountingTranslator(aws.CBOR)
    cache = TranslationCache()
    chunk = records(FIRST, b"shared")
    transports = [Transport() for _ in range(10)]
    sinks = [TranslatingSink(t, translator, cache) for t in transports]
    assert all(sink.send_nowait(chunk) for sink in sinks)
    await sinks[0].send(chunk)  # a subscriber woken rather than written to: still cached
    assert translator.calls == 1
    assert len({t.chunks[0] for t in transports}) == 1
    assert cache.statistics()["hits"] == 10


async def test_chunks_sent_by_a_task_are_not_shared() -> None:
    # A laggard's stored chunks are its own: caching them would only churn the cache.
    translator = CountingTranslator(aws.JSON)
    cache = TranslationCache()
    chunk = records(FIRST, b"stored")
    sink = TranslatingSink(Transport(), translator, cache)
    await sink.send(chunk)
    await sink.send(chunk)
    assert translator.calls == 2
    assert cache.statistics()["entries"] == 0


async def test_an_untranslatable_chunk_is_refused_at_once_and_fails_in_the_task() -> None:
    sink = TranslatingSink(Transport(), EventTranslator(aws.JSON))
    assert sink.send_nowait(b"\xc1 not an event") is False  # the commit listener is unharmed
    with pytest.raises(InternalFailureError):
        await sink.send(b"\xc1 not an event")


def test_the_cache_is_keyed_by_the_object_not_its_bytes() -> None:
    cache = TranslationCache()
    chunk = records(FIRST, b"x")
    cache.put(chunk, b"translated")
    assert cache.get(chunk) == b"translated"
    twin = bytes(bytearray(chunk))
    assert twin == chunk and twin is not chunk
    assert cache.get(twin) is None


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = TranslationCache(max_entries=3, max_bytes=4000)
    chunks = [bytes([i]) * 100 for i in range(5)]
    for chunk in chunks:
        cache.put(chunk, b"t" * 100)
    assert cache.statistics()["entries"] == 3
    assert cache.get(chunks[0]) is None and cache.get(chunks[1]) is None  # oldest out first
    assert all(cache.get(c) is not None for c in chunks[2:])
    big = b"b" * 600
    cache.put(big, b"t" * 500)  # over a quarter of the bytes: not kept
    assert cache.get(big) is None
    for i in range(3):
        cache.put(bytes([10 + i]) * 900, b"t" * 100)
    assert cache.statistics()["bytes"] <= 4000
    assert cache.statistics()["entries"] == 3


def test_streams_of_one_codec_share_a_translator_and_its_cache() -> None:
    json_pair = shared_translator(aws.JSON)
    assert shared_translator(aws.JSON) is json_pair
    assert shared_translator(aws.CBOR)[0] is not json_pair[0]
    first, second = AwsEventStream(NativeBody(), aws.JSON), AwsEventStream(NativeBody(), aws.JSON)
    assert first.translator is second.translator and first.cache is second.cache

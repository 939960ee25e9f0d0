"""A SubscribeToShard body in AWS form: the native subscription, translated as it is sent.

``AwsEventStream`` wraps any ``Streamed`` body of native push events (the
hub's ``Subscription``) and is itself a ``Streamed`` of
``application/vnd.amazon.eventstream``: ``run`` sends the
``initial-response`` message, then runs the inner body into a
``TranslatingSink``, a ``BodySink`` that turns each chunk the inner body
writes into event-stream messages (``broker.protocol.aws_events``) and hands
them to the transport's sink. The inner body does not know: its flow control,
lifetime, heartbeats, takeover and errors are the native ones, and every
chunk it writes is whole events (the hub's contract: one event, or feed
events joined), so each translates on its own.

Two things make the translation cheap where the fan-out is:

* The hub writes a new tail batch into every parked subscriber's sink from
  its commit listener (``send_nowait``), the *same* bytes object for all.
  A ``TranslationCache`` shared by every stream of one translator keeps the
  translations made there, keyed by that object's identity (the cache holds
  the object, so the identity cannot be reused while cached): ten AWS
  subscribers at the tail cost one translation per batch, not ten. Only
  ``send_nowait`` translations are added, since only the shared feed's
  batches come that way; a laggard's stored chunks, each its own, would just
  churn the cache. It is bounded in entries and in bytes, oldest out first.
* ``send_nowait`` may refuse a chunk (no flow-control room) and the hub then
  sends the same chunk with ``send`` from the subscription's task; the sink
  keeps the one refused translation for that, and drops it at the next chunk.

``send_nowait`` runs in the commit listener, which must never fail: a chunk
that cannot be translated is refused there (False), and the subscription's
task, sending it again with ``send``, meets the error in its own frame, where
the hub turns it into the stream's error event.

Nothing here needs trio: the module lives beside the hub because it is the
fan-out's body, and the sans-IO translation is ``broker.protocol``'s.
"""

from __future__ import annotations

from collections import OrderedDict

from ..errors import ShardlineError
from ..operations.base import BodySink, Streamed
from ..protocol import eventstream
from ..protocol.aws import Codec
from ..protocol.aws_events import DEFAULT_MAX_EVENT_BYTES, EventTranslator

KIB = 1024
MIB = 1024 * KIB
#: Bounds of the translation cache each translator shares between its streams.
CACHE_ENTRIES = 64
CACHE_BYTES = 16 * MIB


class TranslationCache:
    """Translations of chunks, keyed by the chunk object, bounded in entries and bytes.

    An entry holds its chunk, so the chunk's ``id`` stays unique while it is
    cached; an entry costs the chunk's bytes and the translation's. An entry
    larger than a quarter of ``max_bytes`` is not kept.
    """

    def __init__(self, max_entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("a translation cache needs room for something")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, chunk: bytes) -> bytes | None:
        entry = self._entries.get(id(chunk))
        if entry is None or entry[0] is not chunk:
            self.misses += 1
            return None
        self.hits += 1
        return entry[1]

    def put(self, chunk: bytes, translation: bytes) -> None:
        size = len(chunk) + len(translation)
        key = id(chunk)
        if size > self.max_bytes // 4 or key in self._entries:
            return
        self._entries[key] = (chunk, translation)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, (old, old_translation) = self._entries.popitem(last=False)
            self._bytes -= len(old) + len(old_translation)

    def statistics(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "bytes": self._bytes,
            "hits": self.hits,
            "misses": self.misses,
        }


#: One translator and its cache per codec and event bound, shared by every stream.
_SHARED: dict[tuple[str, int], tuple[EventTranslator, TranslationCache]] = {}


def shared_translator(
    codec: Codec, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
) -> tuple[EventTranslator, TranslationCache]:
    """The translator (and its cache) every stream of ``codec`` shares in this process."""
    key = (codec.content_type, max_event_bytes)
    shared = _SHARED.get(key)
    if shared is None:
        shared = _SHARED[key] = (EventTranslator(codec, max_event_bytes), TranslationCache())
    return shared


class TranslatingSink:
    """A ``BodySink`` of native push events over a ``BodySink`` of event-stream messages."""

    __slots__ = ("_refused", "_refused_translation", "cache", "sink", "translator")

    def __init__(
        self, sink: BodySink, translator: EventTranslator, cache: TranslationCache | None = None
    ) -> None:
        self.sink = sink
        self.translator = translator
        self.cache = cache
        #: The chunk ``send_nowait`` last refused, and its translation (sent again soon).
        self._refused: bytes | None = None
        self._refused_translation = b""

    def _translate(self, chunk: bytes, *, share: bool) -> bytes:
        refused, self._refused = self._refused, None
        if chunk is refused:
            return self._refused_translation
        cache = self.cache
        if cache is not None:
            cached = cache.get(chunk)
            if cached is not None:
                return cached
        translation = self.translator.translate(chunk)
        if share and cache is not None:
            cache.put(chunk, translation)
        return translation

    async def send(self, chunk: bytes) -> None:
        await self.sink.send(self._translate(chunk, share=False))

    def send_nowait(self, chunk: bytes) -> bool:
        try:
            translation = self._translate(chunk, share=True)
        except (ShardlineError, ValueError):
            return False  # the task's ``send`` meets the error in its own frame
        if self.sink.send_nowait(translation):
            return True
        self._refused, self._refused_translation = chunk, translation
        return False


class AwsEventStream(Streamed):
    """A native push-event body (``inner``) sent as AWS event-stream messages in ``codec``."""

    content_type = eventstream.CONTENT_TYPE

    def __init__(
        self,
        inner: Streamed,
        codec: Codec,
        *,
        translator: EventTranslator | None = None,
        cache: TranslationCache | None = None,
    ) -> None:
        self.inner = inner
        self.codec = codec
        if translator is None:
            translator, shared_cache = shared_translator(codec)
            cache = shared_cache if cache is None else cache
        self.translator = translator
        self.cache = cache

    async def run(self, sink: BodySink) -> None:
        await sink.send(self.translator.initial_response())
        await self.inner.run(TranslatingSink(sink, self.translator, self.cache))


__all__ = ["AwsEventStream", "TranslatingSink", "TranslationCache", "shared_translator"]

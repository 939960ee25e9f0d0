"""``Producer``: buffered, batched, retried and idempotent writes to one stream.

::

    async with Producer("http://127.0.0.1:4567", "orders") as producer:
        handle = await producer.send(b"...", "customer-17")
        shard_id, sequence_number = await handle

Theory of operation (``docs/producer.md`` has the user's view).

*Routing and batching.* The producer holds the stream's open shards (from
``ListShards``) in the broker's own router (``broker.hashing.ShardRouter``:
a key's MD5 digest bisected against the shards' range ends as 16-byte
strings, as ``PutRecords`` routes). ``send`` validates the record with the
broker's limits, routes it, appends its request entry to its shard's open
batch and returns a handle: that is all the per-record work. There is no task,
no event and no trio clock reading per record, and ``send`` yields to the
scheduler only when it closed a batch or waits for buffer room. A batch
closes when it holds ``max_batch_records``, when the next record would take
it past ``max_batch_bytes``, or ``linger`` seconds after its first record.

*Lanes.* Each shard has a lane: its open batch, a queue of closed batches and
one task that sends them one at a time, retrying a batch until it is answered
or fails before taking the next. So at most one batch per shard is in flight,
and the records of a partition key (all in one shard) reach the log in the
order of their ``send`` calls through any retry. Lanes send in parallel, at
most ``max_in_flight`` requests at once.

*Idempotence* (``idempotent=True``, the default). The producer gets an id
from ``InitProducer`` and numbers its batches per shard from 0; a request
carries ``ProducerId``, ``ShardId`` and ``BatchNumber`` and every record of
it is routed here to that shard. A batch keeps its number through its
retries, so the broker answers a retry of a batch it already committed with
the original sequence numbers (``Deduplicated``) instead of appending it
again. ``UnknownProducerIdException`` (the id expired or the broker lost it)
takes a new id, and numbering starts again; a batch whose earlier attempt
went unanswered may then be committed twice, which is counted
(``records_possibly_duplicated``) and logged. A batch that fails for good
leaves its number's fate unknown, so the next batch takes a new id too.

*Resharding.* ``ShardMismatchException`` says the shard map is stale (the
shard closed, or its range changed): the producer lists the shards again and
installs the new map. A shard that is no longer open *retires*: its buffered
records are routed again into the new lanes, and its in-flight batch, once
refused, is routed again to the *front* of them (its number is not spent).
Until a retired lane's in-flight batch is settled, the new lanes that overlap
it send nothing: a record sent earlier never lands after one sent later.
Without idempotence the broker routes records itself; a batch answered from a
shard other than its lane's makes the producer refresh its map the same way.

*Retries.* Connection loss, timeouts, throttling
(``ProvisionedThroughputExceededException``, for the whole batch or for some
of its records) and other retriable errors are retried after an exponential
backoff with full jitter (``Backoff``), at most ``max_retries`` times; then
every record of the batch fails with the last error. Errors that are not
retriable (and ``OutOfOrderBatchException``) fail the batch at once. If the
broker refused only some records of a batch, the others are settled and the
refused ones are retried as a batch of their own (under a new number:
the old one is spent).

*Backpressure.* Records count against ``max_buffered_bytes`` (data plus key)
from ``send`` until they are answered or failed; ``send`` waits while the
next record would cross that bound.
"""

from __future__ import annotations

import logging
import random
from bisect import bisect_left
from contextlib import AsyncExitStack
from time import perf_counter
from types import TracebackType
from typing import Any, Protocol

import ormsgpack
import trio

from ..errors import InvalidArgumentError, ShardlineError
from ..hashing import (
    MAX_PARTITION_KEY_CHARS,
    md5,
    parse_explicit_hash_key,
    validate_partition_key,
)
from ..protocol.compact_puts import Placed, compact_request
from .backoff import Backoff
from .batches import (
    Batch,
    Entry,
    LatencyWindow,
    ProducerStatistics,
    RecordHandle,
    new_handle,
    settled,
)
from .client import Client, error_class, gc_paused, raise_for_response
from .lanes import Lane, ShardMap, entry_size
from .results import ListShardsResult, Shard
from .transport import RawResponse

log = logging.getLogger(__name__)
_new_object = object.__new__

MIB = 1 << 20
#: The broker's default limits (``BrokerConfig``): a record (data plus key), a request.
MAX_RECORD_BYTES = 1 * MIB
MAX_REQUEST_BYTES = 5 * MIB
MAX_REQUEST_RECORDS = 500
DEFAULT_BACKOFF = Backoff(initial_s=0.05, max_s=2.0, full_jitter=True)
#: A producer id unused for this share of the broker's idle expiry is renewed first.
IDLE_RENEW_SHARE = 0.8

SHARD_MISMATCH = "ShardMismatchException"
UNKNOWN_PRODUCER = "UnknownProducerIdException"
OUT_OF_ORDER = "OutOfOrderBatchException"
#: Attempts that end without an answer: the broker may have committed the batch.
_UNANSWERED = frozenset(
    {"ConnectionLostException", "RequestTimeoutException", "InternalFailureException"}
)


class ProducerClosedError(ShardlineError):
    """The producer closed before the record was answered, or ``send`` came after it closed."""

    wire_name = "ProducerClosedException"
    http_status = 0


class ProducerTransport(Protocol):
    """What the producer needs of a ``Client`` (unit tests give an in-memory one)."""

    async def call(
        self, operation: str, request: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]: ...

    async def exchange(
        self, operation: str, body: bytes, *, timeout: float | None = None
    ) -> RawResponse: ...


def _answered_elsewhere(lane: Lane, answer: dict[str, Any]) -> bool:
    """Whether the broker put records of the batch in another shard than its lane's.

    A map answer is judged by its first and last entries, a compact one by every
    shard that got a first sequence number.
    """
    shard_ids, firsts = answer.get("ShardIds"), answer.get("FirstSequenceNumbers")
    if "Records" not in answer and isinstance(shard_ids, list) and isinstance(firsts, list):
        # A compact answer: a shard id with a first sequence number got records.
        return any(
            first is not None and shard != lane.shard_id
            for shard, first in zip(shard_ids, firsts, strict=False)
        )
    records = answer.get("Records")
    if not isinstance(records, list) or not records:
        return False
    ends = (records[0], records[-1])
    return any(isinstance(e, dict) and e.get("ShardId") not in (None, lane.shard_id) for e in ends)


def _too_large(size: int) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"Record: the record's Data and PartitionKey are {size} bytes, "
        f"more than the limit of {MAX_RECORD_BYTES} bytes"
    )


class Producer:
    """Batches and sends records to one stream (module docstring); ``async with`` it."""

    def __init__(
        self,
        endpoint: str = "http://127.0.0.1:4567",
        stream: str = "",
        *,
        linger: float = 0.005,
        max_batch_records: int = MAX_REQUEST_RECORDS,
        max_batch_bytes: int = 1 * MIB,
        max_in_flight: int = 16,
        max_buffered_bytes: int = 32 * MIB,
        max_retries: int = 10,
        idempotent: bool = True,
        client: Client | ProducerTransport | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        request_timeout: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not stream:
            raise ValueError("a Producer needs a stream name or ARN")
        if not 1 <= max_batch_records <= MAX_REQUEST_RECORDS:
            raise ValueError(f"max_batch_records must be 1..{MAX_REQUEST_RECORDS}")
        if not 1 <= max_batch_bytes <= MAX_REQUEST_BYTES:
            raise ValueError(f"max_batch_bytes must be 1..{MAX_REQUEST_BYTES} (the request limit)")
        if max_in_flight < 1 or max_retries < 0 or linger < 0:
            raise ValueError("max_in_flight must be >= 1, max_retries and linger >= 0")
        if max_buffered_bytes < MAX_RECORD_BYTES:
            raise ValueError(f"max_buffered_bytes must hold one record: >= {MAX_RECORD_BYTES}")
        self.endpoint = endpoint
        self.stream = stream
        self._stream_field = "StreamARN" if stream.startswith("arn:") else "StreamName"
        self._linger = linger
        self._max_batch_records = max_batch_records
        self._max_batch_bytes = max_batch_bytes
        self._max_buffered = max_buffered_bytes
        self._max_retries = max_retries
        self._idempotent = idempotent
        self._backoff = backoff
        self._request_timeout = request_timeout
        self._rng = rng if rng is not None else random.Random()
        self._slots = trio.Semaphore(max_in_flight)
        self._given: Client | ProducerTransport | None = client
        self._transport: Client | ProducerTransport | None = None
        self._stack: AsyncExitStack | None = None
        self._nursery: trio.Nursery | None = None
        #: Until ``__aenter__``, as after close: ``send`` takes its slow path and refuses.
        self._closed = True
        #: ``max_buffered_bytes`` while open, -1 while closed: send() tests both at once.
        self._room_limit = -1
        self._live: dict[Batch, None] = {}
        self._map = ShardMap(max_batch_records, max_batch_bytes, self._live)
        # The map's router, copied here for send()'s sake (one attribute lookup less).
        self._ends: list[bytes] = []
        self._positions: list[Lane] = []
        self._refreshing: trio.Event | None = None
        # Idempotence.
        self._producer_id: str | None = None
        self._id_generation = 0
        self._idle_expiry_s = 0.0
        self._id_used_at = 0.0
        self._renew_due = False
        self._renewing: trio.Event | None = None
        # Buffer and bookkeeping.
        self._buffered = 0
        self._room = trio.Event()
        self._yield_due = False
        self._latency = LatencyWindow()
        self._sent = self._failed = self._retried = self._deduplicated = 0
        self._possibly_duplicated = self._bytes_sent = self._batches = self._requests = 0

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Producer:
        stack = AsyncExitStack()
        try:
            if self._given is None:
                self._transport = await stack.enter_async_context(Client(self.endpoint))
            else:
                self._transport = self._given
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            self._install(await self._list_shards())
            if self._idempotent:
                await self._renew_producer(None)
        except BaseException:
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            await stack.aclose()
            raise
        self._stack = stack
        self._closed = False
        self._room_limit = self._max_buffered
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is None:
            return
        try:
            if exc is None:
                await self.flush()
        finally:
            self._closed = True
            self._room_limit = -1
            self._room.set()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            closed = ProducerClosedError("the producer closed before the record was answered")
            for batch in list(self._live):
                self._settle_failed(batch, closed, renew=False)
            await stack.aclose()

    # -- sending -----------------------------------------------------------------

    async def send(
        self, data: bytes, partition_key: str, explicit_hash_key: str | None = None
    ) -> RecordHandle:
        """Buffer one record; its handle resolves to ``(shard_id, sequence_number)``.

        Raises the broker's named errors for a record it would refuse
        (``InvalidArgumentError``: a key not of 1 to 256 characters, data plus
        key over 1 MiB, a bad ``ExplicitHashKey``); waits while the buffer is full.
        """
        if (
            type(data) is not bytes
            or type(partition_key) is not str
            or not partition_key
            or len(partition_key) > MAX_PARTITION_KEY_CHARS
            or explicit_hash_key is not None
        ):
            return await self._send_checked(data, partition_key, explicit_hash_key)
        try:
            key_bytes = partition_key.encode()
        except UnicodeEncodeError:
            validate_partition_key(partition_key)
            raise
        size = len(data) + len(key_bytes)
        if size > MAX_RECORD_BYTES:
            raise _too_large(size)
        if self._buffered + size > self._room_limit:
            await self._wait_for_room(size)
        # _add, inlined: this is the per-record path.
        digest = md5(key_bytes).digest()
        lane = self._positions[bisect_left(self._ends, digest)]
        batch = lane.open
        if batch is None or size > batch.free:
            batch = self._next_open(lane)
        entries = batch.entries
        entries.append({"Data": data, "PartitionKey": partition_key})
        batch.digests.append(digest)
        batch.times.append(perf_counter())
        batch.free -= size
        self._buffered += size
        handle = _new_object(RecordHandle)
        handle._batch = batch
        handle._index = len(entries) - 1
        if len(entries) >= self._max_batch_records:
            self._close_open(lane)
        if self._yield_due:
            # Once per closed batch, not per record: the lane tasks get to run.
            self._yield_due = False
            await trio.lowlevel.checkpoint()
        return handle

    async def _send_checked(
        self, data: object, partition_key: object, explicit_hash_key: str | None
    ) -> RecordHandle:
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidArgumentError(f"Data must be bytes, got {type(data).__name__}")
        key = validate_partition_key(partition_key)
        key_bytes = key.encode()
        size = len(data) + len(key_bytes)
        if size > MAX_RECORD_BYTES:
            raise _too_large(size)
        entry: Entry = {"Data": data, "PartitionKey": key}
        if explicit_hash_key is not None:
            parse_explicit_hash_key(explicit_hash_key)
            entry["ExplicitHashKey"] = explicit_hash_key
        if self._buffered + size > self._room_limit:
            await self._wait_for_room(size)
        handle = self._add(self._map.lane_of(entry), entry, size)
        self._yield_due = False
        await trio.lowlevel.checkpoint()
        return handle

    async def send_and_wait(
        self, data: bytes, partition_key: str, explicit_hash_key: str | None = None
    ) -> tuple[str, str]:
        """``send`` and wait for the record to be durable: ``(shard_id, sequence_number)``."""
        handle = await self.send(data, partition_key, explicit_hash_key)
        return await handle.result()

    async def flush(self) -> None:
        """Send every buffered record now and wait until each is answered or failed."""
        for lane in list(self._map.lanes.values()):
            if lane.open is not None:
                self._close_open(lane)
        self._yield_due = False
        for batch in list(self._live):
            await settled(batch)
        await trio.lowlevel.checkpoint()

    def statistics(self) -> ProducerStatistics:
        quantiles = self._latency.percentiles_ms((50.0, 90.0, 99.0))
        p50, p90, p99 = quantiles if quantiles is not None else (None, None, None)
        return ProducerStatistics(
            records_sent=self._sent,
            records_failed=self._failed,
            records_pending=sum(len(batch.entries) for batch in self._live),
            records_retried=self._retried,
            records_deduplicated=self._deduplicated,
            records_possibly_duplicated=self._possibly_duplicated,
            bytes_sent=self._bytes_sent,
            batches=self._batches,
            requests=self._requests,
            mean_batch_records=self._sent / self._batches if self._batches else 0.0,
            latency_p50_ms=p50,
            latency_p90_ms=p90,
            latency_p99_ms=p99,
        )

    @property
    def shard_ids(self) -> list[str]:
        """The open shards the producer routes to, in hash-key order (its current map)."""
        return [lane.shard_id for lane in self._positions]

    @property
    def producer_id(self) -> str | None:
        """The broker's id for this producer (None without idempotence)."""
        return self._producer_id

    async def _wait_for_room(self, size: int) -> None:
        while True:
            if self._closed:
                raise ProducerClosedError(
                    "the producer is not open: use `async with Producer(...) as producer`"
                )
            # An empty buffer takes any record, so one larger than the bound cannot stall.
            if self._buffered == 0 or self._buffered + size <= self._room_limit:
                return
            await self._room.wait()

    def _add(self, lane: Lane, entry: Entry, size: int) -> RecordHandle:
        """Append a record to its lane's open batch (``send`` has this inlined)."""
        batch = lane.open
        if batch is None or size > batch.free:
            batch = self._next_open(lane)
        index = batch.add(entry, size, perf_counter())
        self._buffered += size
        if index + 1 >= self._max_batch_records:
            self._close_open(lane)
        return new_handle(batch, index)

    def _next_open(self, lane: Lane) -> Batch:
        """Close the lane's open batch, if any (a record did not fit), and open another."""
        self._close_open(lane)
        batch = lane.open = Batch(trio.current_time(), self._max_batch_bytes)
        self._live[batch] = None
        lane.wake.set()
        return batch

    def _close_open(self, lane: Lane) -> None:
        batch = lane.open
        if batch is not None:
            lane.open = None
            lane.queue.append(batch)
            lane.wake.set()
            self._yield_due = True

    # -- lanes -------------------------------------------------------------------

    async def _run_lane(self, lane: Lane) -> None:
        for blocker in lane.blockers:
            await blocker.drained.wait()
        lane.blockers = []
        while True:
            batch = await self._next_batch(lane)
            if batch is None:
                break
            try:
                await self._deliver(lane, batch)
            finally:
                lane.current = None
        lane.drained.set()

    async def _next_batch(self, lane: Lane) -> Batch | None:
        """The lane's next batch to send (made current), or None once it retired."""
        while not lane.retired:
            if lane.queue:
                batch = lane.current = lane.queue.popleft()
                return batch
            filling = lane.open
            lane.wake = trio.Event()
            if filling is None:
                await lane.wake.wait()
                continue
            deadline = filling.opened_at + self._linger
            if trio.current_time() >= deadline:
                lane.open = None
                lane.current = filling
                return filling
            with trio.move_on_at(deadline):
                await lane.wake.wait()
        return None

    async def _deliver(self, lane: Lane, batch: Batch) -> None:
        """Send ``batch`` until it is settled: answered, failed, or moved to other lanes."""
        attempt = 0
        while True:
            generation = self._map.generation
            error: ShardlineError
            try:
                if self._idempotent and batch.number is None:
                    await self._number(lane, batch)
                answer = await self._put(lane, batch)
                if not self._idempotent and _answered_elsewhere(lane, answer):
                    # The broker routed them to other shards: a reshard. The map is
                    # refreshed before the batch settles, so a flush sees the new one.
                    await self._refresh_quietly(generation)
                rest, refused = self._take(batch, answer)
                if refused is None:
                    return
                assert rest is not None
                batch = rest
                error = refused
            except ShardlineError as exc:
                error = exc
            name = error.wire_name
            wait = True
            if name == SHARD_MISMATCH:
                try:
                    await self._refresh(generation)
                except ShardlineError as exc:
                    error = exc
                else:
                    if lane.retired:
                        self._map.reroute([batch])
                        return
            elif name == UNKNOWN_PRODUCER:
                try:
                    await self._renew_producer(batch.producer_id)
                except ShardlineError as exc:
                    error = exc
                else:
                    if batch.uncertain:
                        self._count_possible_duplicates(batch, "its producer id expired")
                    batch.number = None
                    wait = False
            elif name == OUT_OF_ORDER or not error.retriable:
                self._settle_failed(batch, error)
                return
            elif name in _UNANSWERED:
                batch.uncertain = True
            attempt += 1
            if attempt > self._max_retries:
                self._settle_failed(batch, error)
                return
            self._retried += len(batch.entries)
            if batch.uncertain and not self._idempotent:
                self._count_possible_duplicates(batch, "the producer is not idempotent")
            if wait:
                await trio.sleep(self._backoff.delay(attempt, self._rng))

    async def _refresh_quietly(self, generation: int) -> None:
        """Refresh after a batch went elsewhere than its lane; failing that, next time."""
        try:
            await self._refresh(generation)
        except ShardlineError as exc:
            log.warning("could not refresh the shard map of %s: %s", self.stream, exc)

    async def _put(self, lane: Lane, batch: Batch) -> dict[str, Any]:
        # Compact columns (the broker routes them by the hash keys computed here), or the
        # map form when a record is not plainly valid, so that the broker names it.
        entries, digests = batch.entries, batch.digests
        known = digests if len(digests) == len(entries) else None
        request: dict[str, Any] = compact_request(entries, known) or {"Records": entries}
        request[self._stream_field] = self.stream
        if self._idempotent:
            request["ProducerId"] = batch.producer_id
            request["ShardId"] = lane.shard_id
            request["BatchNumber"] = batch.number
        body = ormsgpack.packb(request)
        transport = self._transport
        assert transport is not None
        async with self._slots:
            self._requests += 1
            self._id_used_at = trio.current_time()
            raw = await transport.exchange("PutRecords", body, timeout=self._request_timeout)
        if raw.status != 200:
            raise_for_response(raw.status, raw.body)
        # ormsgpack reads a 500-entry answer in about half msgpack's time; the
        # collector would pass over its 500 fresh maps, which cannot form a cycle.
        with gc_paused():
            try:
                answer = ormsgpack.unpackb(raw.body)
            except ormsgpack.MsgpackDecodeError:
                answer = None
        if not isinstance(answer, dict):
            raise error_class("UnexpectedResponse", 200)("PutRecords answered no msgpack map")
        return answer

    def _take(
        self, batch: Batch, answer: dict[str, Any]
    ) -> tuple[Batch | None, ShardlineError | None]:
        """Settle what the answer settles; the refused records' batch and why, if any."""
        if "Records" not in answer and "Positions" in answer:
            # The compact answer: every record landed.
            try:
                placed: Placed | list[tuple[str, str]] = Placed(answer)
            except (KeyError, TypeError, IndexError, ValueError):
                placed = []
            if len(placed) != len(batch.entries):
                raise error_class("UnexpectedResponse", 200)(
                    f"PutRecords answered positions for {len(placed)} of "
                    f"{len(batch.entries)} records"
                )
            self._settle_answered(batch, placed, bool(answer.get("Deduplicated")))
            return None, None
        records = answer.get("Records")
        if not isinstance(records, list) or len(records) != len(batch.entries):
            raise error_class("UnexpectedResponse", 200)(
                f"PutRecords answered {len(records) if isinstance(records, list) else 'no'} "
                f"entries for {len(batch.entries)} records"
            )
        if not answer.get("FailedRecordCount"):
            self._settle_answered(batch, records, bool(answer.get("Deduplicated")))
            return None, None
        refused = [i for i, e in enumerate(records) if e.get("ErrorCode") is not None]
        first = records[refused[0]]
        code = first["ErrorCode"]
        error = error_class(code, 500 if code.startswith("InternalFailure") else 400)(
            first.get("ErrorMessage") or ""
        )
        if len(refused) == len(records):
            return batch, error
        # Some committed: they are answered, and the batch's number is spent.
        rest = Batch(batch.opened_at, self._max_batch_bytes)
        moved: dict[int, tuple[Batch, int]] = {}
        for i in refused:
            entry = batch.entries[i]
            moved[i] = (rest, rest.add(entry, entry_size(entry), batch.times[i]))
        rest.uncertain = batch.uncertain
        batch.moved = moved
        self._live[rest] = None
        self._settle_answered(batch, records, False, skip=moved)
        return rest, error

    # -- settling ----------------------------------------------------------------

    def _settle_answered(
        self,
        batch: Batch,
        answers: list[dict[str, Any]] | list[tuple[str, str]] | Placed,
        deduplicated: bool,
        skip: dict[int, tuple[Batch, int]] | None = None,
    ) -> None:
        count, nbytes, times = len(answers), batch.nbytes, batch.times
        if skip:
            # The refused records moved to one batch of their own; they stay buffered.
            count -= len(skip)
            nbytes -= sum({id(b): b.nbytes for b, _ in skip.values()}.values())
            times = [t for i, t in enumerate(times) if i not in skip]
        batch.answers = answers
        self._sent += count
        self._bytes_sent += nbytes
        self._batches += 1
        if deduplicated:
            self._deduplicated += count
        self._latency.add(perf_counter(), times)
        self._release(batch, nbytes)

    def _settle_failed(self, batch: Batch, error: BaseException, *, renew: bool = True) -> None:
        if batch.done.is_set():
            return
        batch.error = error
        self._failed += len(batch.entries)
        self._release(batch, batch.nbytes)
        if renew and self._idempotent:
            # Whether the broker holds this batch's number is unknown: never reuse it.
            self._renew_due = True

    def _release(self, batch: Batch, nbytes: int) -> None:
        self._live.pop(batch, None)
        batch.done.set()
        self._buffered -= nbytes
        self._room.set()
        self._room = trio.Event()

    def _count_possible_duplicates(self, batch: Batch, why: str) -> None:
        self._possibly_duplicated += len(batch.entries)
        batch.uncertain = False
        log.warning(
            "re-sending %d records whose earlier attempt went unanswered: %s, so the "
            "broker cannot deduplicate them and they may be in the log twice",
            len(batch.entries),
            why,
        )

    # -- the shard map -------------------------------------------------------------

    async def _list_shards(self) -> list[Shard]:
        transport = self._transport
        assert transport is not None
        shards: list[Shard] = []
        request: dict[str, Any] = {self._stream_field: self.stream}
        while True:
            page = ListShardsResult.from_wire(await transport.call("ListShards", request))
            shards += page.shards
            if page.next_token is None:
                return shards
            request = {"NextToken": page.next_token}

    async def _refresh(self, seen_generation: int) -> None:
        """Install a fresh shard map, unless one was installed since ``seen_generation``."""
        while self._map.generation == seen_generation:
            if self._refreshing is not None:
                await self._refreshing.wait()
                continue
            self._refreshing = event = trio.Event()
            try:
                self._install(await self._list_shards())
            finally:
                self._refreshing = None
                event.set()

    def _install(self, shards: list[Shard]) -> None:
        fresh = self._map.install(shards)
        self._ends, self._positions = self._map.ends, self._map.positions
        nursery = self._nursery
        assert nursery is not None
        for lane in fresh:
            nursery.start_soon(self._run_lane, lane)

    # -- producer ids --------------------------------------------------------------

    async def _number(self, lane: Lane, batch: Batch) -> None:
        """Give ``batch`` the lane's next batch number under the current producer id."""
        idle = trio.current_time() - self._id_used_at
        if self._renew_due or (
            self._idle_expiry_s and idle > self._idle_expiry_s * IDLE_RENEW_SHARE
        ):
            await self._renew_producer(self._producer_id)
        if lane.id_generation != self._id_generation:
            lane.id_generation = self._id_generation
            lane.next_number = 0
        batch.producer_id = self._producer_id
        batch.number = lane.next_number
        lane.next_number += 1

    async def _renew_producer(self, stale: str | None) -> None:
        """Take a new producer id, unless it was renewed since ``stale`` was current."""
        transport = self._transport
        assert transport is not None
        while self._producer_id == stale:
            if self._renewing is not None:
                await self._renewing.wait()
                continue
            self._renewing = event = trio.Event()
            try:
                answer = await transport.call("InitProducer", {})
                producer_id = answer.get("ProducerId")
                if not isinstance(producer_id, str):
                    raise error_class("UnexpectedResponse", 200)("InitProducer gave no ProducerId")
                self._producer_id = producer_id
                self._idle_expiry_s = float(answer.get("IdleExpirySeconds") or 0)
                self._id_generation += 1
                self._id_used_at = trio.current_time()
                self._renew_due = False
            finally:
                self._renewing = None
                event.set()

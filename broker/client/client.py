"""``Client``: the broker's operations as async methods over one HTTP/2 connection.

``await client.call("PutRecords", {...})`` sends ``POST /v1/PutRecords`` with a
msgpack body and returns the decoded response map, or raises the error class
named by the response's ``__type`` (``broker.errors``; an unknown name raises a
``ShardlineError`` subclass carrying that name and the HTTP status). Each
Kinesis operation also has a snake_case method whose keyword arguments map to
the Kinesis field names (``stream_name`` -> ``StreamName``, ``stream_arn`` ->
``StreamARN``); arguments left ``None`` are not sent. The snake_case methods
return typed results (``results.py``: ``PutRecordsResult``, ``GetRecordsResult``,
...), or ``None`` for operations whose response is empty; a success map that
lacks a field the protocol always sends raises ``UnexpectedResponse``.
``call`` and ``call_encoded`` return the wire maps as they are.

Calls are concurrent over one connection; a call that outlives its timeout
(the client's ``timeout`` or the call's own) raises ``RequestTimeoutError``;
a lost connection fails the calls in flight with ``ConnectionLostError`` (both
retriable) and the next call reconnects.
"""

from __future__ import annotations

import gc
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, contextmanager
from types import TracebackType
from typing import Any, TypeVar

import msgpack
import trio

from .. import errors
from ..errors import ShardlineError
from ..protocol.codec import CONTENT_TYPE, encode_body
from ..protocol.compact_puts import compact_request
from .mappings import EventSourceMappings
from .reading import DEFAULT_IDLE_WAIT, Pages, read_pages
from .results import (
    CheckpointInfo,
    Consumer,
    ConsumerDescription,
    GetRecordsResult,
    GetShardIteratorResult,
    InitProducerResult,
    LeaseInfo,
    ListLeasesResult,
    ListShardsResult,
    ListStreamConsumersResult,
    ListStreamsResult,
    PutRecordResult,
    PutRecordsResult,
    StreamDescription,
    StreamDescriptionSummary,
    UpdateShardCountResult,
)
from .streaming import ShardEvents, subscribe_to_shard
from .transport import H2Transport, RawResponse, RequestTimeoutError

Request = dict[str, Any]
Response = dict[str, Any]
Result = TypeVar("Result")

#: How long a call waits for its answer unless told otherwise (``Client(timeout=...)``).
DEFAULT_TIMEOUT = 30.0

_SPECIAL_FIELDS = {"stream_arn": "StreamARN", "consumer_arn": "ConsumerARN"}


def kinesis_field(name: str) -> str:
    """``stream_name`` -> ``StreamName`` (``stream_arn`` -> ``StreamARN``)."""
    special = _SPECIAL_FIELDS.get(name)
    if special is not None:
        return special
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def kinesis_request(**fields: Any) -> Request:
    """A request map from snake_case keyword arguments, leaving out ``None``."""
    return {kinesis_field(name): value for name, value in fields.items() if value is not None}


def _error_classes() -> dict[str, type[ShardlineError]]:
    """Wire name -> the most general class of ``broker.errors`` with that name."""
    found: dict[str, type[ShardlineError]] = {}
    for value in vars(errors).values():
        if (
            isinstance(value, type)
            and issubclass(value, ShardlineError)
            and value is not ShardlineError
        ):
            current = found.get(value.wire_name)
            if current is None or issubclass(current, value):
                found[value.wire_name] = value
    return found


ERROR_CLASSES = _error_classes()
_UNKNOWN: dict[tuple[str, int], type[ShardlineError]] = {}


def error_class(wire_name: str, status: int) -> type[ShardlineError]:
    """The class raised for an error body named ``wire_name``."""
    known = ERROR_CLASSES.get(wire_name)
    if known is not None:
        return known
    key = (wire_name, status)
    if key not in _UNKNOWN:
        _UNKNOWN[key] = type(
            wire_name,
            (ShardlineError,),
            {"wire_name": wire_name, "http_status": status, "retriable": status >= 500},
        )
    return _UNKNOWN[key]


def raise_for_response(status: int, body: bytes) -> Response:
    """The decoded success map, or the named error raised."""
    try:
        value = msgpack.unpackb(body, raw=False) if body else {}
    except (ValueError, msgpack.UnpackException):
        value = None
    if status == 200 and isinstance(value, dict):
        return value
    if isinstance(value, dict) and isinstance(value.get("__type"), str):
        message = value.get("message")
        raise error_class(value["__type"], status)(message if isinstance(message, str) else "")
    detail = body[:200].decode("utf-8", "replace")
    raise error_class(
        "InternalFailureException" if status >= 500 else "UnexpectedResponse", status
    )(f"HTTP {status} with an undecodable body: {detail!r}")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a synchronous block, if it was running."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse_response(operation: str, parse: Callable[[Response], Result], body: Response) -> Result:
    """``parse(body)``, a map it cannot read raised as the named ``UnexpectedResponse``."""
    try:
        return parse(body)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise error_class("UnexpectedResponse", 200)(
            f"{operation} answered a map without a field it always has, or of the wrong "
            f"shape: {type(exc).__name__}: {exc}"
        ) from None


def _stream_description(body: Response) -> StreamDescription:
    return StreamDescription.from_wire(body["StreamDescription"])


def _stream_description_summary(body: Response) -> StreamDescriptionSummary:
    return StreamDescriptionSummary.from_wire(body["StreamDescriptionSummary"])


def _consumer(body: Response) -> Consumer:
    return Consumer.from_wire(body["Consumer"])


def _consumer_description(body: Response) -> ConsumerDescription:
    return ConsumerDescription.from_wire(body["ConsumerDescription"])


def _lease(body: Response) -> LeaseInfo:
    return LeaseInfo.from_wire(body["Lease"])


def _checkpoint(body: Response) -> CheckpointInfo:
    return CheckpointInfo.from_wire(body["Checkpoint"])


class Client(EventSourceMappings):
    """An async client of one broker; use as ``async with Client(endpoint) as client``.

    The event source mapping operations come from ``EventSourceMappings`` (``mappings.py``).
    """

    def __init__(
        self,
        endpoint: str = "http://127.0.0.1:4567",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._stack: AsyncExitStack | None = None
        self._transport: H2Transport | None = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> Client:
        stack = AsyncExitStack()
        nursery = await stack.enter_async_context(trio.open_nursery())
        self._nursery = nursery
        self._transport = H2Transport(self.endpoint, nursery, ssl_context=self.ssl_context)
        stack.push_async_callback(self._transport.aclose)
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._transport = self._stack, None, None
        nursery, self._nursery = self._nursery, None
        if stack is None or nursery is None:
            return
        if exc is None:
            await stack.__aexit__(None, None, None)
            return
        # The body failed: close the connection and its reader without handing the
        # body's error to the nursery, which would wrap it in an exception group;
        # returning lets it propagate unchanged (a ShardlineError stays one).
        nursery.cancel_scope.cancel()
        await stack.__aexit__(None, None, None)

    async def call(
        self, operation: str, request: Request | None = None, *, timeout: float | None = None
    ) -> Response:
        """Run ``operation`` with ``request``; the response map or a named error."""
        if self._transport is None:
            raise RuntimeError("use the Client as `async with Client(...) as client`")
        body = encode_body(request if request is not None else {})
        return await self.call_encoded(operation, body, timeout=timeout)

    async def call_encoded(
        self, operation: str, body: bytes, *, timeout: float | None = None
    ) -> Response:
        """Like ``call`` with the request map already msgpack-encoded (``encode_body``)."""
        raw = await self.exchange(operation, body, timeout=timeout)
        return raise_for_response(raw.status, raw.body)

    async def metrics(self) -> str:
        """The broker's ``GET /metrics`` (Prometheus' text format)."""
        if self._transport is None:
            raise RuntimeError("use the Client as `async with Client(...) as client`")
        raw = await self._transport.request("/metrics", b"", "text/plain", "GET")
        if raw.status != 200:
            raise error_class("UnexpectedResponse", raw.status)(f"GET /metrics: HTTP {raw.status}")
        return raw.body.decode()

    async def exchange(
        self, operation: str, body: bytes, *, timeout: float | None = None
    ) -> RawResponse:
        """Send an encoded request; the HTTP status and body as they came, not decoded."""
        if self._transport is None:
            raise RuntimeError("use the Client as `async with Client(...) as client`")
        limit = self.timeout if timeout is None else timeout
        with trio.move_on_after(limit) as scope:
            raw = await self._transport.request(f"/v1/{operation}", body, CONTENT_TYPE)
        if scope.cancelled_caught:
            raise RequestTimeoutError(f"{operation} got no answer within {limit} s")
        return raw

    # -- the Kinesis operations ----------------------------------------------

    async def create_stream(
        self, stream_name: str, shard_count: int | None = None, **extra: Any
    ) -> None:
        request = kinesis_request(stream_name=stream_name, shard_count=shard_count, **extra)
        await self.call("CreateStream", request)

    async def delete_stream(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        enforce_consumer_deletion: bool | None = None,
    ) -> None:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            enforce_consumer_deletion=enforce_consumer_deletion,
        )
        await self.call("DeleteStream", request)

    async def describe_stream(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        limit: int | None = None,
        exclusive_start_shard_id: str | None = None,
    ) -> StreamDescription:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            limit=limit,
            exclusive_start_shard_id=exclusive_start_shard_id,
        )
        body = await self.call("DescribeStream", request)
        return parse_response("DescribeStream", _stream_description, body)

    async def describe_stream_summary(
        self, stream_name: str | None = None, *, stream_arn: str | None = None
    ) -> StreamDescriptionSummary:
        request = kinesis_request(stream_name=stream_name, stream_arn=stream_arn)
        body = await self.call("DescribeStreamSummary", request)
        return parse_response("DescribeStreamSummary", _stream_description_summary, body)

    async def list_streams(
        self,
        *,
        limit: int | None = None,
        exclusive_start_stream_name: str | None = None,
        next_token: str | None = None,
    ) -> ListStreamsResult:
        request = kinesis_request(
            limit=limit,
            exclusive_start_stream_name=exclusive_start_stream_name,
            next_token=next_token,
        )
        body = await self.call("ListStreams", request)
        return parse_response("ListStreams", ListStreamsResult.from_wire, body)

    async def list_shards(
        self,
        stream_name: str | None = None,
        *,
        stream_arn: str | None = None,
        next_token: str | None = None,
        exclusive_start_shard_id: str | None = None,
        max_results: int | None = None,
        stream_creation_timestamp: int | None = None,
        shard_filter: dict[str, Any] | None = None,
    ) -> ListShardsResult:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            next_token=next_token,
            exclusive_start_shard_id=exclusive_start_shard_id,
            max_results=max_results,
            stream_creation_timestamp=stream_creation_timestamp,
            shard_filter=shard_filter,
        )
        body = await self.call("ListShards", request)
        return parse_response("ListShards", ListShardsResult.from_wire, body)

    async def put_record(
        self,
        stream_name: str | None,
        data: bytes,
        partition_key: str,
        *,
        stream_arn: str | None = None,
        explicit_hash_key: str | None = None,
        sequence_number_for_ordering: str | None = None,
    ) -> PutRecordResult:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            data=data,
            partition_key=partition_key,
            explicit_hash_key=explicit_hash_key,
            sequence_number_for_ordering=sequence_number_for_ordering,
        )
        body = await self.call("PutRecord", request)
        return parse_response("PutRecord", PutRecordResult.from_wire, body)

    async def put_records(
        self,
        stream_name: str | None,
        records: list[dict[str, Any]],
        *,
        stream_arn: str | None = None,
        producer_id: str | None = None,
        shard_id: str | None = None,
        batch_number: int | None = None,
    ) -> PutRecordsResult:
        """``records``: maps with Kinesis names (``Data``, ``PartitionKey``, ...).

        They travel in the compact form (``broker.protocol.compact_puts``): the
        client computes each record's hash key, and the answer names positions.

        With ``producer_id`` (from ``init_producer``), ``shard_id`` and
        ``batch_number``, all three, the request is an idempotent batch: every
        record must route to ``shard_id``, and a batch the broker already
        committed is answered with its original sequence numbers and
        ``deduplicated`` set, never appended twice (``docs/protocol.md``).
        """
        # Compact columns with the hash keys computed here, unless a record is malformed:
        # the map form lets the broker name it.
        compact = compact_request(records)
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            records=records if compact is None else None,
            producer_id=producer_id,
            shard_id=shard_id,
            batch_number=batch_number,
        )
        if compact is not None:
            request.update(compact)
        body = await self.call("PutRecords", request)
        return parse_response("PutRecords", PutRecordsResult.from_wire, body)

    async def init_producer(self) -> InitProducerResult:
        """A new idempotent producer id: pass it to ``put_records`` with a shard and a number.

        It expires after ``idle_expiry_seconds`` without a batch; then
        ``put_records`` raises ``UnknownProducerIdError`` and a new one is needed.
        """
        body = await self.call("InitProducer", {})
        return parse_response("InitProducer", InitProducerResult.from_wire, body)

    async def get_shard_iterator(
        self,
        stream_name: str | None,
        shard_id: str,
        shard_iterator_type: str,
        *,
        stream_arn: str | None = None,
        starting_sequence_number: str | None = None,
        timestamp: int | float | None = None,
    ) -> GetShardIteratorResult:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            shard_id=shard_id,
            shard_iterator_type=shard_iterator_type,
            starting_sequence_number=starting_sequence_number,
            timestamp=timestamp,
        )
        body = await self.call("GetShardIterator", request)
        return parse_response("GetShardIterator", GetShardIteratorResult.from_wire, body)

    async def get_records(
        self, shard_iterator: str, *, limit: int | None = None, stream_arn: str | None = None
    ) -> GetRecordsResult:
        # Compact: the broker forwards its stored batches; the records are the same.
        request = kinesis_request(
            shard_iterator=shard_iterator, limit=limit, stream_arn=stream_arn, compact=True
        )
        return self.decode_records(await self.exchange("GetRecords", encode_body(request)))

    def read_pages(
        self,
        shard_iterator: str,
        *,
        limit: int | None = None,
        idle_wait: float = DEFAULT_IDLE_WAIT,
    ) -> AbstractAsyncContextManager[Pages]:
        """``async with client.read_pages(it) as pages: async for page in pages: ...``

        GetRecords pages from ``shard_iterator`` until the end of a closed
        shard, the next one fetched while the caller handles this one
        (``broker.client.reading``); after a page that leaves the reader caught
        up, the next call waits ``idle_wait`` seconds.
        """
        return read_pages(self, shard_iterator, limit=limit, idle_wait=idle_wait)

    def subscribe_to_shard(
        self,
        consumer_arn: str,
        shard_id: str,
        starting_position: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> AbstractAsyncContextManager[ShardEvents]:
        """``async with client.subscribe_to_shard(arn, shard, {"Type": ...}) as events:``

        One push subscription: its events as they arrive (``broker.client.streaming``),
        on a connection of their own. ``timeout`` bounds the wait for the answer,
        not the subscription. Resubscribing is ``consumers.subscriber``'s job.
        """
        if self._transport is None:
            raise RuntimeError("use the Client as `async with Client(...) as client`")
        limit = self.timeout if timeout is None else timeout
        return subscribe_to_shard(
            self, self._transport, consumer_arn, shard_id, starting_position, timeout=limit
        )

    def decode_wire(self, raw: RawResponse) -> Response:
        """An answer's map, or its named error raised (the GC paused, as below)."""
        with gc_paused():
            return raise_for_response(raw.status, raw.body)

    def decode_records(self, raw: RawResponse) -> GetRecordsResult:
        """A GetRecords answer (either form) as a result, or its named error raised."""
        # Up to 10,000 records are two containers each: with the cyclic GC running,
        # its young-generation passes (one per 700 allocations) cost a third of the
        # decoding. Nothing built here can form a cycle, so it pauses meanwhile.
        with gc_paused():
            body = raise_for_response(raw.status, raw.body)
            return parse_response("GetRecords", GetRecordsResult.from_wire, body)

    async def split_shard(
        self,
        stream_name: str | None,
        shard_to_split: str,
        new_starting_hash_key: str,
        *,
        stream_arn: str | None = None,
    ) -> None:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            shard_to_split=shard_to_split,
            new_starting_hash_key=new_starting_hash_key,
        )
        await self.call("SplitShard", request)

    async def merge_shards(
        self,
        stream_name: str | None,
        shard_to_merge: str,
        adjacent_shard_to_merge: str,
        *,
        stream_arn: str | None = None,
    ) -> None:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            shard_to_merge=shard_to_merge,
            adjacent_shard_to_merge=adjacent_shard_to_merge,
        )
        await self.call("MergeShards", request)

    async def update_shard_count(
        self,
        stream_name: str | None,
        target_shard_count: int,
        scaling_type: str = "UNIFORM_SCALING",
        *,
        stream_arn: str | None = None,
    ) -> UpdateShardCountResult:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            target_shard_count=target_shard_count,
            scaling_type=scaling_type,
        )
        body = await self.call("UpdateShardCount", request)
        return parse_response("UpdateShardCount", UpdateShardCountResult.from_wire, body)

    async def increase_stream_retention_period(
        self,
        stream_name: str | None,
        retention_period_hours: int,
        *,
        stream_arn: str | None = None,
    ) -> None:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            retention_period_hours=retention_period_hours,
        )
        await self.call("IncreaseStreamRetentionPeriod", request)

    async def decrease_stream_retention_period(
        self,
        stream_name: str | None,
        retention_period_hours: int,
        *,
        stream_arn: str | None = None,
    ) -> None:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            retention_period_hours=retention_period_hours,
        )
        await self.call("DecreaseStreamRetentionPeriod", request)

    async def register_stream_consumer(
        self, stream_arn: str, consumer_name: str, *, tags: dict[str, str] | None = None
    ) -> Consumer:
        """Register a consumer for enhanced fan-out; it is ``ACTIVE`` when this returns."""
        request = kinesis_request(stream_arn=stream_arn, consumer_name=consumer_name, tags=tags)
        body = await self.call("RegisterStreamConsumer", request)
        return parse_response("RegisterStreamConsumer", _consumer, body)

    async def deregister_stream_consumer(
        self,
        stream_arn: str | None = None,
        consumer_name: str | None = None,
        *,
        consumer_arn: str | None = None,
    ) -> None:
        """Remove a consumer named by ``consumer_arn``, or ``stream_arn`` + ``consumer_name``."""
        request = kinesis_request(
            stream_arn=stream_arn, consumer_name=consumer_name, consumer_arn=consumer_arn
        )
        await self.call("DeregisterStreamConsumer", request)

    async def describe_stream_consumer(
        self,
        stream_arn: str | None = None,
        consumer_name: str | None = None,
        *,
        consumer_arn: str | None = None,
    ) -> ConsumerDescription:
        request = kinesis_request(
            stream_arn=stream_arn, consumer_name=consumer_name, consumer_arn=consumer_arn
        )
        body = await self.call("DescribeStreamConsumer", request)
        return parse_response("DescribeStreamConsumer", _consumer_description, body)

    async def list_stream_consumers(
        self,
        stream_arn: str,
        *,
        next_token: str | None = None,
        max_results: int | None = None,
        stream_creation_timestamp: int | None = None,
    ) -> ListStreamConsumersResult:
        request = kinesis_request(
            stream_arn=stream_arn,
            next_token=next_token,
            max_results=max_results,
            stream_creation_timestamp=stream_creation_timestamp,
        )
        body = await self.call("ListStreamConsumers", request)
        return parse_response("ListStreamConsumers", ListStreamConsumersResult.from_wire, body)

    # -- leases and checkpoints (shardline operations; docs/protocol.md) ----------

    async def acquire_lease(
        self,
        stream_name: str | None,
        application_name: str,
        shard_id: str,
        owner: str,
        duration_millis: int,
        *,
        stream_arn: str | None = None,
    ) -> LeaseInfo:
        """Take a shard's lease for an application: free, expired, or already ``owner``'s.

        Held by another owner: ``ResourceInUseError`` naming the holder and expiry.
        """
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            application_name=application_name,
            shard_id=shard_id,
            owner=owner,
            duration_millis=duration_millis,
        )
        body = await self.call("AcquireLease", request)
        return parse_response("AcquireLease", _lease, body)

    async def renew_lease(
        self,
        stream_name: str | None,
        application_name: str,
        shard_id: str,
        owner: str,
        lease_counter: int,
        duration_millis: int,
        *,
        stream_arn: str | None = None,
    ) -> LeaseInfo:
        """Extend a lease ``owner`` still holds under ``lease_counter``; else ``LeaseLostError``."""
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            application_name=application_name,
            shard_id=shard_id,
            owner=owner,
            lease_counter=lease_counter,
            duration_millis=duration_millis,
        )
        body = await self.call("RenewLease", request)
        return parse_response("RenewLease", _lease, body)

    async def release_lease(
        self,
        stream_name: str | None,
        application_name: str,
        shard_id: str,
        owner: str,
        lease_counter: int,
        *,
        stream_arn: str | None = None,
    ) -> LeaseInfo:
        """Give a lease up (its counter stays); ``LeaseLostError`` if it was no longer ours."""
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            application_name=application_name,
            shard_id=shard_id,
            owner=owner,
            lease_counter=lease_counter,
        )
        body = await self.call("ReleaseLease", request)
        return parse_response("ReleaseLease", _lease, body)

    async def list_leases(
        self,
        stream_name: str | None,
        application_name: str,
        *,
        stream_arn: str | None = None,
        max_results: int | None = None,
        next_token: str | None = None,
    ) -> ListLeasesResult:
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            application_name=application_name,
            max_results=max_results,
            next_token=next_token,
        )
        body = await self.call("ListLeases", request)
        return parse_response("ListLeases", ListLeasesResult.from_wire, body)

    async def set_checkpoint(
        self,
        stream_name: str | None,
        application_name: str,
        shard_id: str,
        sequence_number: str,
        *,
        lease_counter: int | None = None,
        stream_arn: str | None = None,
    ) -> CheckpointInfo:
        """Record the last processed record (or ``"SHARD_END"``), fenced by ``lease_counter``.

        A counter that is no longer the lease's: ``LeaseLostError``.
        """
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            application_name=application_name,
            shard_id=shard_id,
            sequence_number=sequence_number,
            lease_counter=lease_counter,
        )
        body = await self.call("SetCheckpoint", request)
        return parse_response("SetCheckpoint", _checkpoint, body)

    async def get_checkpoint(
        self,
        stream_name: str | None,
        application_name: str,
        shard_id: str,
        *,
        stream_arn: str | None = None,
    ) -> CheckpointInfo:
        """The shard's checkpoint for the application; ``ResourceNotFoundError`` if none."""
        request = kinesis_request(
            stream_name=stream_name,
            stream_arn=stream_arn,
            application_name=application_name,
            shard_id=shard_id,
        )
        body = await self.call("GetCheckpoint", request)
        return parse_response("GetCheckpoint", _checkpoint, body)

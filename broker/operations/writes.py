"""Writes: PutRecord and PutRecords.

A request is validated whole before anything is written: a malformed record,
a record over the stream's limit (data plus the partition key's UTF-8 bytes;
``shapes.record_limit``: the stream's ``MaxRecordSizeInKiB`` within
``BrokerConfig.max_record_bytes``) or a request over
``max_request_records_bytes`` fails the whole
request with ``InvalidArgumentException`` naming the record. Then each record
is routed (MD5 of its key, or its ``ExplicitHashKey``, to the open shard whose
range holds it) and, when per-shard write limits are on, charged to its
shard's buckets; the records admitted go to the log in ONE append, acknowledged
after its durable commit. Per-record work is only that routing and
bookkeeping; sequence numbers are computed from the offsets the append returns.

A PutRecords with ``Compact: true`` sends its records as columns
(``PartitionKeys``, ``Data``, optional ``HashKeys``: the client's hash key per
record, used as an ExplicitHashKey) and is answered, when every record
succeeded, with positions and first sequence numbers instead of a map per
record (``broker.protocol.compact_puts``). Its plain case is checked and
routed per batch (``_route_columns``); anything else goes the general way on
the records turned into maps, so that errors name ``Records[i]`` alike.

A reshard that closes a shard between routing and the commit makes the
append fail with the retriable ``ShardClosedError``; the records are routed
once more with the new shard map (their hashes are kept) and appended again.
A second race in a row reaches the client as ``ResourceInUseException``
(retriable).

Records refused by a write limit are answered in place with
``ProvisionedThroughputExceededException``; the others still succeed, so a
retried subset can land after records that followed it (as in Kinesis).

A PutRecords with ``ProducerId``, ``ShardId`` and ``BatchNumber`` is an
idempotent batch (``producers.py`` has the fields and what the published
producer table settles; ``broker.log.producers`` the rules). It takes its own
path, so plain requests pay one test of three fields: every record must route
to ``ShardId`` (else ``ShardMismatchException``, nothing appended), the write
limits admit or refuse it whole, and it is appended as one unit with the
producer's row, or answered with its original sequence numbers and
``"Deduplicated": true``. It is never routed again after a reshard: its number
belongs to its shard, so a closed shard is ``ShardMismatchException``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from ..errors import (
    InvalidArgumentError,
    ProvisionedThroughputExceededError,
    ShardClosedError,
    ShardMismatchError,
    ValidationError,
)
from ..hashing import (
    MAX_PARTITION_KEY_CHARS,
    ShardRouter,
    md5,
    parse_explicit_hash_key,
    validate_partition_key,
)
from ..log import ProducerStamp
from ..model import StreamDescription, shard_id
from ..protocol.compact_puts import position_bytes
from ..protocol.packing import pack_put_records
from ..sequence import base, decode
from . import fields as f
from . import producers
from .base import Broker, Prepared, Request, Response, Result, operation
from .shapes import record_limit, router
from .throttle import ShardWriteLimiter

MAX_RECORDS_PER_REQUEST = 500
#: PutRecords answers of at least this many records are packed by numpy.
PACK_WITH_NUMPY_FROM = 64

#: Shard position per record: a list, or numpy's array for compact requests.
_Positions = Sequence[int] | npt.NDArray[np.intp]

#: A record as routed: (hash key, size in bytes, partition key, data).
_Routed = tuple[int, int, str, bytes]


def _record(entry: object, where: str, max_bytes: int) -> _Routed:
    """Validate one record and compute its hash key and size."""
    item = entry if type(entry) is dict else f.entry_map(entry, where)
    data = item.get("Data")
    key = item.get("PartitionKey")
    explicit = item.get("ExplicitHashKey")
    try:
        if type(data) is not bytes:
            data = f.required_bytes(item, "Data")
        if type(key) is not str or not 1 <= len(key) <= MAX_PARTITION_KEY_CHARS:
            key = validate_partition_key(f.required_str(item, "PartitionKey", min_len=0))
        try:
            key_bytes = key.encode("utf-8")
        except UnicodeEncodeError:
            validate_partition_key(key)
            raise
        if explicit is None:
            hash_key = int.from_bytes(md5(key_bytes).digest(), "big")
        else:
            hash_key = parse_explicit_hash_key(explicit)
    except (InvalidArgumentError, ValidationError) as exc:
        if not where:
            raise
        # Name the record: "Records[3]: PartitionKey must be ..." / "... at 'Records[3].Data'".
        message = exc.message.replace("'Data'", f"'{where}.Data'").replace(
            "'PartitionKey'", f"'{where}.PartitionKey'"
        )
        raise type(exc)(f"{where}: {message}") from None
    size = len(data) + len(key_bytes)
    if size > max_bytes:
        raise InvalidArgumentError(
            f"{where or 'Record'}: the record's Data and PartitionKey are {size} bytes, "
            f"more than the limit of {max_bytes} bytes"
        )
    return hash_key, size, key, data


def _limiter(broker: Broker) -> ShardWriteLimiter | None:
    config = broker.config
    if config.shard_write_records_per_s <= 0 and config.shard_write_bytes_per_s <= 0:
        return None
    limiter = broker.extras.get("write_limiter")
    if not isinstance(limiter, ShardWriteLimiter):
        limiter = broker.extras["write_limiter"] = ShardWriteLimiter(
            config.shard_write_records_per_s, config.shard_write_bytes_per_s
        )
    return limiter


def _throttled(broker: Broker, desc: StreamDescription, index: int) -> str:
    return (
        f"Rate exceeded for shard {shard_id(index)} in stream {desc.name} under account "
        f"{broker.config.account}."
    )


@dataclass(slots=True)
class _Plain:
    """A request's records routed in one pass: shard position per record, buckets per position."""

    positions: _Positions
    buckets: list[list[tuple[int, str, bytes]]]
    #: Data plus partition keys of all records.
    nbytes: int


def _route_plain(
    entries: list[Any], ends: list[bytes], arrival: int, max_record: int, max_total: int
) -> _Plain | None:
    """The common case in one tight loop: maps of bytes ``Data`` and a short str key.

    ``ends`` are the router's ``digest_ends``. None when any entry is anything
    else (or a limit is crossed): the caller then validates record by record
    with ``_record``, which names the offending one. The per-record size limit
    is checked after the loop, and only when the whole request exceeds it.
    """
    find = bisect.bisect_left
    positions: list[int] = []
    add_position = positions.append
    buckets: list[list[tuple[int, str, bytes]]] = [[] for _ in ends]
    adds = [bucket.append for bucket in buckets]
    total = 0
    try:
        for entry in entries:
            # Exactly Data and PartitionKey: anything more (an ExplicitHashKey) goes the long way.
            if type(entry) is not dict or len(entry) != 2:
                return None
            data = entry["Data"]
            key = entry["PartitionKey"]
            if (
                type(data) is not bytes
                or type(key) is not str
                or not key
                or len(key) > MAX_PARTITION_KEY_CHARS
            ):
                return None
            key_bytes = key.encode()
            total += len(data) + len(key_bytes)
            position = find(ends, md5(key_bytes).digest())
            add_position(position)
            adds[position]((arrival, key, data))
    except (KeyError, UnicodeEncodeError):
        return None
    if total > max_total:
        return None
    if total > max_record:
        for bucket in buckets:
            for _arrival, key, data in bucket:
                if len(data) + len(key.encode()) > max_record:
                    return None
    return _Plain(positions, buckets, total)


@dataclass(slots=True)
class _Records:
    """A PutRecords' records as sent: ``Records`` maps, or compact columns (``Compact: true``)."""

    entries: list[Any] | None
    keys: list[Any]
    datas: list[Any]
    #: 16 bytes per record, each routing its record like an ExplicitHashKey; None: MD5 of the keys.
    hashes: bytes | None = None

    @property
    def compact(self) -> bool:
        return self.entries is None

    def __len__(self) -> int:
        return len(self.keys) if self.entries is None else len(self.entries)

    def maps(self) -> list[Any]:
        """The records as ``Records`` maps, for the general path (which names a bad one)."""
        if self.entries is not None:
            return self.entries
        hashes = self.hashes
        out: list[Any] = []
        for i, (key, data) in enumerate(zip(self.keys, self.datas, strict=True)):
            entry = {"Data": data, "PartitionKey": key}
            if hashes is not None:
                entry["ExplicitHashKey"] = str(int.from_bytes(hashes[16 * i : 16 * i + 16], "big"))
            out.append(entry)
        return out


def _records(request: Request) -> _Records:
    """The request's records in the form it sent them; the shape of the columns checked."""
    if not f.optional_bool(request, "Compact"):
        entries = f.required_list(request, "Records", min_len=1, max_len=MAX_RECORDS_PER_REQUEST)
        return _Records(entries, [], [])
    keys = f.required_list(request, "PartitionKeys", min_len=1, max_len=MAX_RECORDS_PER_REQUEST)
    datas = f.required_list(request, "Data", min_len=1, max_len=MAX_RECORDS_PER_REQUEST)
    if len(datas) != len(keys):
        raise InvalidArgumentError(
            f"Data has {len(datas)} entries and PartitionKeys {len(keys)}: a compact "
            "PutRecords has one of each per record"
        )
    hashes = request.get("HashKeys")
    if hashes is not None and (type(hashes) is not bytes or len(hashes) != 16 * len(keys)):
        raise InvalidArgumentError(
            f"HashKeys must be binary of 16 bytes per record ({16 * len(keys)} bytes for "
            f"{len(keys)} records), got {len(hashes) if type(hashes) is bytes else 'no binary'}"
        )
    return _Records(None, keys, datas, hashes)


def _route_columns(
    records: _Records, routing: ShardRouter, arrival: int, max_record: int, max_total: int
) -> _Plain | None:
    """``_route_plain`` for compact columns, per batch: C-level checks, numpy routing.

    None when a record is anything but a 1-256 character str key with bytes
    data, or a limit is crossed: the caller then takes the general path on
    ``records.maps()``, which names the offending record.
    """
    keys, datas = records.keys, records.datas
    if set(map(type, keys)) != {str} or set(map(type, datas)) != {bytes}:
        return None
    if min(map(len, keys)) < 1 or max(map(len, keys)) > MAX_PARTITION_KEY_CHARS:
        return None
    try:
        key_bytes = len("".join(keys).encode())
    except UnicodeEncodeError:
        return None
    total = key_bytes + sum(map(len, datas))
    if total > max_total:
        return None
    if total > max_record and any(
        len(data) + len(key.encode()) > max_record for key, data in zip(keys, datas, strict=True)
    ):
        return None
    hashes = records.hashes
    if hashes is None:
        hashes = b"".join([md5(key.encode()).digest() for key in keys])
    positions = routing.digest_positions(hashes)
    buckets: list[list[tuple[int, str, bytes]]] = [[] for _ in routing.digest_ends]
    adds = [bucket.append for bucket in buckets]
    # A loop rather than numpy's argsort, which would let the GIL go (``digest_positions``).
    for position, record in zip(
        positions.tolist(), zip(repeat(arrival), keys, datas, strict=False), strict=False
    ):
        adds[position](record)
    return _Plain(positions, buckets, total)


def _route(
    records: _Records, routing: ShardRouter, arrival: int, max_record: int, max_total: int
) -> _Plain | None:
    if records.entries is not None:
        return _route_plain(records.entries, routing.digest_ends, arrival, max_record, max_total)
    return _route_columns(records, routing, arrival, max_record, max_total)


def _validated(entries: list[Any], max_record: int, max_total: int) -> list[_Routed]:
    """Every record checked and hashed, the request's total bounded; errors name the record."""
    records: list[_Routed] = []
    total = 0
    for i, entry in enumerate(entries):
        record = _record(entry, f"Records[{i}]", max_record)
        total += record[1]
        if total > max_total:
            raise InvalidArgumentError(
                f"Records[{i}]: the request's records reach {total} bytes (data plus partition "
                f"keys), more than the limit of {max_total} bytes per PutRecords request"
            )
        records.append(record)
    return records


@dataclass(slots=True)
class _PutRecordsResult(Prepared):
    """An all-successful PutRecords answer, kept as positions and first sequence numbers."""

    positions: _Positions
    shard_ids: list[str]
    #: Sequence number (as an integer) of each position's first record; None: no record.
    firsts: list[int | None]
    record_count: int
    #: Answer in the compact form (the request was compact) instead of one map per record.
    compact: bool = False

    def to_dict(self) -> Response:
        if self.compact:
            return {
                "FailedRecordCount": 0,
                "ShardIds": self.shard_ids,
                "FirstSequenceNumbers": [None if s is None else str(s) for s in self.firsts],
                "Positions": position_bytes(self.positions, len(self.shard_ids)),
                "EncryptionType": "NONE",
            }
        following = list(self.firsts)
        records: list[dict[str, str]] = []
        add = records.append
        for position in self.positions:
            sequence = following[position]
            assert sequence is not None
            following[position] = sequence + 1
            add({"SequenceNumber": str(sequence), "ShardId": self.shard_ids[position]})
        return {"FailedRecordCount": 0, "Records": records, "EncryptionType": "NONE"}

    def native_body(self) -> bytes | None:
        # numpy has a fixed cost (~20 us): packing the maps wins below ~50 records.
        if self.compact or self.record_count < PACK_WITH_NUMPY_FROM:
            return None
        return pack_put_records(self.positions, self.shard_ids, self.firsts)


#: The packed last pair of an idempotent batch's answer, by its value.
_DEDUPLICATED: dict[bool, bytes] = {
    flag: msgpack.packb("Deduplicated") + msgpack.packb(flag) for flag in (False, True)
}


@dataclass(slots=True)
class _BatchResult(_PutRecordsResult):
    """An idempotent batch's answer: the all-successful map plus ``Deduplicated``."""

    deduplicated: bool = False

    def to_dict(self) -> Response:
        out = _PutRecordsResult.to_dict(self)
        out["Deduplicated"] = self.deduplicated
        return out

    def native_body(self) -> bytes | None:
        body = _PutRecordsResult.native_body(self)
        if body is None:
            return None
        # The same map with a fourth entry: fixmap header 0x83 becomes 0x84, the pair goes last.
        return b"\x84" + body[1:] + _DEDUPLICATED[self.deduplicated]


def _batch_result(
    inc: int, index: int, first_offset: int, count: int, deduplicated: bool, compact: bool
) -> _BatchResult:
    first = base(inc, index) + first_offset
    return _BatchResult([0] * count, _shard_ids([index]), [first], count, compact, deduplicated)


def _compact_result(outcomes: list[tuple[int, int]]) -> _PutRecordsResult:
    """The compact answer of records that all landed: ``(shard index, sequence)`` per record."""
    indexes = sorted({index for index, _sequence in outcomes})
    where = {index: position for position, index in enumerate(indexes)}
    firsts: list[int | None] = [None] * len(indexes)
    positions = []
    for index, sequence in outcomes:
        position = where[index]
        positions.append(position)
        if firsts[position] is None:
            firsts[position] = sequence
    return _PutRecordsResult(positions, _shard_ids(indexes), firsts, len(outcomes), True)


async def _put_plain(broker: Broker, name: str, records: _Records) -> Prepared | None:
    """PutRecords with no write limits for plain records; None to take the general path."""
    config = broker.config
    desc = broker.log.describe(name)
    routing = router(broker, desc)
    # Stamped now, appended with no await in between: stamps follow queue order.
    arrival = broker.log.now_ms()
    plain = _route(
        records, routing, arrival, record_limit(config, desc), config.max_request_records_bytes
    )
    if plain is None:
        return None
    indexes = routing.indexes
    groups = {indexes[p]: bucket for p, bucket in enumerate(plain.buckets) if bucket}
    try:
        result = await broker.log.append_stamped(
            name, groups, arrival, incarnation=desc.incarnation
        )
    except ShardClosedError:
        # A reshard closed a shard since routing: take the general path, which routes again.
        return None
    firsts: list[int | None] = [None] * len(indexes)
    for position, index in enumerate(indexes):
        landed = result.ranges.get(index)
        if landed is not None:
            firsts[position] = base(result.incarnation, index) + landed[0]
    return _PutRecordsResult(
        plain.positions, _shard_ids(indexes), firsts, len(records), records.compact
    )


_SHARD_IDS: dict[int, str] = {}


def _shard_ids(indexes: list[int]) -> list[str]:
    """``shard_id`` of each index, formatted once per process."""
    known = _SHARD_IDS
    out = [known.get(index) or "" for index in indexes]
    for i, text in enumerate(out):
        if not text:
            out[i] = known[indexes[i]] = shard_id(indexes[i])
    return out


async def _put(broker: Broker, name: str, records: list[_Routed]) -> list[tuple[int, int] | str]:
    """Route, charge and append; per record ``(shard index, sequence)`` or a refusal message."""
    desc = broker.log.describe(name)
    route = router(broker, desc).shard_for_hash
    limiter = _limiter(broker)
    now = broker.log.now_ms() if limiter is not None else 0
    shards: list[int] = []
    refused: dict[int, str] = {}
    for i, (hash_key, size, _key, _data) in enumerate(records):
        index = route(hash_key)
        shards.append(index)
        if limiter is not None and not limiter.admit(desc.incarnation, index, size, now):
            refused[i] = _throttled(broker, desc, index)
    for attempt in range(2):
        groups: dict[int, list[tuple[str, bytes]]] = {}
        positions: list[int] = []
        for i, (_hash, _size, key, data) in enumerate(records):
            if i in refused:
                positions.append(-1)
                continue
            bucket = groups.get(shards[i])
            if bucket is None:
                bucket = groups[shards[i]] = []
            positions.append(len(bucket))
            bucket.append((key, data))
        if not groups:
            return [refused[i] for i in range(len(records))]
        try:
            result = await broker.log.append(name, groups, incarnation=desc.incarnation)
            break
        except ShardClosedError:
            if attempt:
                raise
            desc = broker.log.describe(name)
            route = router(broker, desc).shard_for_hash
            shards = [route(r[0]) for r in records]
    out: list[tuple[int, int] | str] = []
    bases = {
        index: base(result.incarnation, index) + first
        for index, (first, _n) in result.ranges.items()
    }
    for i, position in enumerate(positions):
        if position < 0:
            out.append(refused[i])
        else:
            out.append((shards[i], bases[shards[i]] + position))
    return out


def _mismatch(desc: StreamDescription, index: int, targets: set[int]) -> ShardMismatchError:
    shard = next((s for s in desc.shards if s.index == index), None)
    if shard is None:
        state = f"is not a shard of stream {desc.name}"
    elif not shard.is_open:
        state = f"of stream {desc.name} is closed (split or merged)"
    else:
        state = f"of stream {desc.name} is not where every record routes"
    routed = ", ".join(shard_id(i) for i in sorted(targets))
    return ShardMismatchError(
        f"ShardId {shard_id(index)} {state}: with the current shard map the records route to "
        f"{routed}; refresh the shard map (ListShards) and route them again"
    )


def _route_batch(
    broker: Broker, desc: StreamDescription, index: int, sent: _Records, arrival: int
) -> tuple[list[tuple[int, str, bytes]], int]:
    """An idempotent batch's records, checked and stamped, and their bytes.

    ``ShardMismatchError`` unless every record routes to shard ``index`` with
    the stream's current shard map (so the shard is open, too).
    """
    config = broker.config
    routing = router(broker, desc)
    max_record = record_limit(config, desc)
    plain = _route(sent, routing, arrival, max_record, config.max_request_records_bytes)
    if plain is not None:
        filled = [p for p, bucket in enumerate(plain.buckets) if bucket]
        if len(filled) == 1 and routing.indexes[filled[0]] == index:
            return plain.buckets[filled[0]], plain.nbytes
        raise _mismatch(desc, index, {routing.indexes[p] for p in filled})
    records = _validated(sent.maps(), max_record, config.max_request_records_bytes)
    route = routing.shard_for_hash
    targets = {route(hash_key) for hash_key, _size, _key, _data in records}
    if targets != {index}:
        raise _mismatch(desc, index, targets)
    return [(arrival, key, data) for _h, _s, key, data in records], sum(r[1] for r in records)


async def _put_idempotent(broker: Broker, name: str, request: Request, sent: _Records) -> Result:
    """One idempotent batch: appended once however often it is sent (module docstring)."""
    batch = producers.batch_fields(request)
    index = batch.shard_index
    log = broker.log
    # The catalog before the producer table: the writer publishes them the other way
    # round (``LogStore._publish``), so a batch committed before a reshard is seen.
    desc = log.describe(name)
    arrival = log.now_ms()
    original = producers.committed_original(broker, batch, desc, len(sent), arrival)
    if original is not None:
        return _batch_result(
            desc.incarnation, index, original.first_offset, original.count, True, sent.compact
        )
    records, nbytes = _route_batch(broker, desc, index, sent, arrival)
    limiter = _limiter(broker)
    if limiter is not None and not limiter.admit_batch(
        desc.incarnation, index, len(records), nbytes, arrival
    ):
        message = _throttled(broker, desc, index)
        code = ProvisionedThroughputExceededError.wire_name
        return {
            "FailedRecordCount": len(records),
            "Records": [{"ErrorCode": code, "ErrorMessage": message} for _ in records],
            "EncryptionType": "NONE",
            "Deduplicated": False,
        }
    stamp = ProducerStamp(
        batch.producer_id,
        batch.batch_number,
        arrival,
        broker.config.producer_idle_expiry_s * 1000,
    )
    result = await log.append_stamped(
        name, {index: records}, arrival, incarnation=desc.incarnation, producer=stamp
    )
    first, count = result.ranges[index]
    return _batch_result(result.incarnation, index, first, count, result.deduplicated, sent.compact)


@operation("PutRecord")
async def put_record(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    ordering = f.optional_str(request, "SequenceNumberForOrdering")
    if ordering is not None:
        decode(ordering)
    record = _record(request, "", record_limit(broker.config, broker.log.describe(name)))
    (outcome,) = await _put(broker, name, [record])
    if isinstance(outcome, str):
        raise ProvisionedThroughputExceededError(outcome)
    index, sequence = outcome
    return {"ShardId": shard_id(index), "SequenceNumber": str(sequence), "EncryptionType": "NONE"}


@operation("PutRecords")
async def put_records(broker: Broker, request: Request) -> Result:
    name = f.required_stream(broker.config, request)
    sent = _records(request)
    if producers.is_idempotent(request):
        return await _put_idempotent(broker, name, request, sent)
    if _limiter(broker) is None:
        fast = await _put_plain(broker, name, sent)
        if fast is not None:
            return fast
    config = broker.config
    max_record = record_limit(config, broker.log.describe(name))
    records = _validated(sent.maps(), max_record, config.max_request_records_bytes)
    outcomes = await _put(broker, name, records)
    if sent.compact and not any(isinstance(outcome, str) for outcome in outcomes):
        return _compact_result([o for o in outcomes if not isinstance(o, str)])
    results: list[dict[str, Any]] = []
    failed = 0
    for outcome in outcomes:
        if isinstance(outcome, str):
            failed += 1
            results.append(
                {"ErrorCode": ProvisionedThroughputExceededError.wire_name, "ErrorMessage": outcome}
            )
        else:
            results.append({"SequenceNumber": str(outcome[1]), "ShardId": shard_id(outcome[0])})
    return {"FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE"}

"""Event source mappings: which function reads which stream, through which consumer.

A mapping (Lambda's event source mapping) is stored under its UUID (16 bytes,
``keys.py``) in the ``mappings`` database, *not* under a stream incarnation
like everything else of a stream: it outlives a deleted stream (its state then
says so, ``broker.operations.mappings``) until someone deletes it. There are
few of them, so listings and the conflict check walk the whole database.

Stored value (msgpack array)::

    [1 (format version), function name, event source ARN (as created: a
     stream's or a consumer's), stream name, stream incarnation, consumer
     name, consumer creation second, owns consumer (bool), settings (map of
     Lambda's parameter names), last modified ms]

The log knows the mapping's identity and its consumer; the settings are an
opaque map here, validated by the operations layer before they are written.

Each mapping reads through one registered consumer (enhanced fan-out). A
mapping created on a stream registers its own, named ``mapping-<UUID>``, in
the same commit as the mapping (so the stream's consumer limit applies and
nothing is left half made), and deregisters it when it is deleted; a mapping
created on a consumer's ARN uses that consumer and leaves it alone. At most one
mapping per (function name, event source ARN), as Lambda:
``ResourceConflictError``.

The write functions run inside a ``Commit`` (the writer thread); the read
functions take a read (or write) transaction and copy what they return. The
async helpers at the end queue the writes on the log's group commit.
"""

from __future__ import annotations

import dataclasses
import uuid as uuids
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack

from ..errors import InternalFailureError, ResourceConflictError, ResourceNotFoundError
from . import consumers
from .store import Commit

if TYPE_CHECKING:
    from .writer import Log

FORMAT_VERSION = 1
#: Prefix of the consumer a mapping on a stream registers for itself.
CONSUMER_PREFIX = "mapping-"


@dataclass(frozen=True, slots=True)
class MappingRecord:
    """A stored mapping. ``settings`` holds Lambda's parameters by their names."""

    uuid: str
    function_name: str
    event_source_arn: str
    stream: str
    incarnation: int
    consumer_name: str
    consumer_created_s: int
    #: True when the mapping registered its consumer itself (and deregisters it when deleted).
    owns_consumer: bool
    settings: Mapping[str, Any]
    last_modified_ms: int


def consumer_name_for(uuid: str) -> str:
    """The name of the consumer a mapping on a stream registers: ``mapping-<UUID>``."""
    return CONSUMER_PREFIX + uuid


def key(uuid: str) -> bytes:
    return uuids.UUID(uuid).bytes


def _encode(record: MappingRecord) -> bytes:
    packed: bytes = msgpack.packb(
        [
            FORMAT_VERSION,
            record.function_name,
            record.event_source_arn,
            record.stream,
            record.incarnation,
            record.consumer_name,
            record.consumer_created_s,
            record.owns_consumer,
            dict(record.settings),
            record.last_modified_ms,
        ]
    )
    return packed


def _decode(raw_key: bytes, raw: Any) -> MappingRecord:
    value = msgpack.unpackb(raw)
    if not isinstance(value, list) or not value or value[0] != FORMAT_VERSION:
        raise InternalFailureError(
            f"the stored event source mapping {uuids.UUID(bytes=bytes(raw_key))} has an "
            "unknown format"
        )
    _, function, arn, stream, inc, consumer, created_s, owns, settings, modified = value
    return MappingRecord(
        str(uuids.UUID(bytes=bytes(raw_key))),
        function,
        arn,
        stream,
        inc,
        consumer,
        created_s,
        owns,
        settings,
        modified,
    )


# -- reads ---------------------------------------------------------------------


def get(txn: Any, db: Any, uuid: str) -> MappingRecord | None:
    """The mapping ``uuid`` (canonical form), or None."""
    raw_key = key(uuid)
    raw = txn.get(raw_key, db=db)
    return None if raw is None else _decode(raw_key, raw)


def scan(
    txn: Any,
    db: Any,
    *,
    after: str | None = None,
    limit: int | None = None,
    match: Callable[[MappingRecord], bool] | None = None,
) -> list[MappingRecord]:
    """Mappings in UUID byte order, after ``after``, that ``match``, at most ``limit``."""
    out: list[MappingRecord] = []
    if limit is not None and limit <= 0:
        return out
    cursor = txn.cursor(db=db)
    start = b"" if after is None else key(after)
    found = cursor.set_range(start)
    while found:
        raw_key = bytes(cursor.key())
        if after is None or raw_key != start:
            record = _decode(raw_key, cursor.value())
            if match is None or match(record):
                out.append(record)
                if limit is not None and len(out) >= limit:
                    break
        found = cursor.next()
    cursor.close()
    return out


# -- writes (inside a Commit) -----------------------------------------------------


def _put(c: Commit, record: MappingRecord) -> None:
    c.txn.put(key(record.uuid), _encode(record), db=c.dbs["mappings"])


def _check_conflict(c: Commit, function_name: str, arn: str, uuid: str) -> None:
    clash = scan(
        c.txn,
        c.dbs["mappings"],
        limit=1,
        match=lambda m: (
            m.uuid != uuid and m.function_name == function_name and m.event_source_arn == arn
        ),
    )
    if clash:
        raise ResourceConflictError(
            f"The event source mapping {clash[0].uuid} already maps function {function_name} "
            f"to {arn}: update or delete that one"
        )


def create(
    c: Commit,
    uuid: str,
    function_name: str,
    event_source_arn: str,
    stream: str,
    settings: Mapping[str, Any],
    now_ms: int,
    *,
    consumer: tuple[str, int] | None,
    max_consumers: int,
) -> MappingRecord:
    """Store a new mapping with its consumer: a new one, or ``consumer`` (name, creation s).

    Refusals, before anything is written: the stream is missing
    (``ResourceNotFoundError``), the given consumer is not registered
    (``ResourceNotFoundError``), a mapping of the function on the source
    exists (``ResourceConflictError``), the stream has its maximum of
    consumers (``LimitExceededError``).
    """
    desc = c.stream(stream)
    _check_conflict(c, function_name, event_source_arn, uuid)
    if consumer is None:
        made = consumers.register(
            c, stream, consumer_name_for(uuid), now_ms, max_consumers=max_consumers
        )
        name, created_s, owns = made.name, made.created_s, True
    else:
        name, created_s = consumer
        found = consumers.get_consumer(c.txn, c.dbs["consumers"], desc.incarnation, name)
        if found is None or found.created_s != created_s:
            raise ResourceNotFoundError(f"Consumer {event_source_arn} not found")
        owns = False
    record = MappingRecord(
        uuid,
        function_name,
        event_source_arn,
        stream,
        desc.incarnation,
        name,
        created_s,
        owns,
        dict(settings),
        now_ms,
    )
    _put(c, record)
    return record


def update(
    c: Commit, uuid: str, change: Callable[[MappingRecord], MappingRecord], now_ms: int
) -> MappingRecord:
    """Apply ``change`` (which validates, and may raise) to mapping ``uuid`` and store it."""
    before = get(c.txn, c.dbs["mappings"], uuid)
    if before is None:
        raise ResourceNotFoundError(f"The event source mapping {uuid} does not exist")
    after = dataclasses.replace(change(before), last_modified_ms=now_ms)
    if after.function_name != before.function_name:
        _check_conflict(c, after.function_name, after.event_source_arn, uuid)
    _put(c, after)
    return after


def delete(c: Commit, uuid: str) -> MappingRecord:
    """Remove mapping ``uuid``, and the consumer it registered if that is still there."""
    db = c.dbs["mappings"]
    record = get(c.txn, db, uuid)
    if record is None:
        raise ResourceNotFoundError(f"The event source mapping {uuid} does not exist")
    c.txn.delete(key(uuid), db=db)
    # A deleted stream took the consumer with it; a stream created again under the
    # same name is another incarnation, whose consumers are not this mapping's.
    if record.owns_consumer and c.is_live(record.incarnation):
        found = consumers.get_consumer(
            c.txn, c.dbs["consumers"], record.incarnation, record.consumer_name
        )
        if found is not None and found.created_s == record.consumer_created_s:
            consumers.deregister(c, record.stream, record.consumer_name, found.created_s)
    return record


# -- the async side (the log's group commit) -----------------------------------------
#
# Mapping writes ride the same group commit as every other write (``Log._apply``);
# they live here rather than as ``Log`` methods so the writer keeps to streams
# and records.


async def create_mapping(
    log: Log,
    function_name: str,
    event_source_arn: str,
    stream: str,
    settings: Mapping[str, Any],
    *,
    consumer: tuple[str, int] | None,
    max_consumers: int,
) -> MappingRecord:
    """A new mapping under a fresh UUID, durable when this returns (see ``create``)."""
    uuid = str(uuids.uuid4())
    now = log.now_ms()
    return await log._apply(
        lambda c: create(
            c,
            uuid,
            function_name,
            event_source_arn,
            stream,
            settings,
            now,
            consumer=consumer,
            max_consumers=max_consumers,
        )
    )


async def update_mapping(
    log: Log, uuid: str, change: Callable[[MappingRecord], MappingRecord]
) -> MappingRecord:
    """Change a mapping in one commit: ``change`` sees the mapping as that commit does."""
    now = log.now_ms()
    return await log._apply(lambda c: update(c, uuid, change, now))


async def delete_mapping(log: Log, uuid: str) -> MappingRecord:
    return await log._apply(lambda c: delete(c, uuid))


def get_mapping(log: Log, uuid: str) -> MappingRecord | None:
    env = log.store.environment
    with env.reading() as txn:
        return get(txn, env.dbs["mappings"], uuid)


def list_mappings(
    log: Log,
    *,
    after: str | None = None,
    limit: int | None = None,
    match: Callable[[MappingRecord], bool] | None = None,
) -> list[MappingRecord]:
    env = log.store.environment
    with env.reading() as txn:
        return scan(txn, env.dbs["mappings"], after=after, limit=limit, match=match)

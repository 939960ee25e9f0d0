"""Registered stream consumers: who may subscribe to a stream's shards (enhanced fan-out).

A consumer belongs to one stream incarnation and is keyed by
(incarnation, name) (``keys.consumer``), so a stream deleted and created
again never sees the old one's consumers, and they are deleted with its other
keys, in chunks, by maintenance. Names follow the stream name rule
(``[a-zA-Z0-9_.-]{1,128}``) and are unique per stream incarnation.

Stored value (msgpack array)::

    consumer    [created_ms]                       a consumer with no tags
                [created_ms, [[key, value], ...]]  with tags, in key order

A row is read by its length, so rows written before consumers held tags
(always one element) open as consumers with none; and a consumer without
tags is still written in the one-element form, so a data directory in which
no consumer was ever tagged is unchanged.

Tags follow the stream tag rules: each key and value is checked by the
caller (``broker.operations.tags``), while the count, at most
``catalog.MAX_TAGS_PER_STREAM`` (50, Kinesis' limit per resource) after the
change, is checked here inside the commit, against the staged row, so two
concurrent additions cannot together pass it. Tags live in the consumer's row,
so they are written in the same commit as its registration and go with it on
deregistration (or with its stream).

A consumer's ARN ends in its creation time in whole seconds. So that a name
deregistered and registered again gets a new ARN, even within one second, the
log keeps a floor (``meta`` ``consumer-floor``, u64 ms): removing a consumer
raises it to the second after that consumer's creation, and a consumer is
created at the later of the log's clock and the floor. The cost: a
registration that follows such a removal within the same second is stamped up
to a second ahead of the clock.

The write functions run inside a ``Commit`` (the writer thread); the read
functions take a read (or write) transaction and copy what they return.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

from ..errors import (
    InvalidArgumentError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
)
from ..model import STREAM_NAME_RE, Consumer
from . import keys
from .catalog import MAX_TAGS_PER_STREAM
from .store import Commit

Tags = tuple[tuple[str, str], ...]


def check_consumer_name(name: object) -> str:
    """Consumer names follow the stream name rule, as in Kinesis."""
    if not isinstance(name, str) or STREAM_NAME_RE.fullmatch(name) is None:
        raise InvalidArgumentError(
            f"ConsumerName {name!r} is not valid: it must match [a-zA-Z0-9_.-]{{1,128}}"
        )
    return name


def _decode_row(raw: Any) -> tuple[int, Tags]:
    """A stored row: its creation ms and its tags (none in a one-element row)."""
    row = msgpack.unpackb(raw)
    tags = row[1] if len(row) > 1 else ()
    return row[0], tuple((key, value) for key, value in tags)


def _encode_row(created_ms: int, tags: Tags) -> bytes:
    row: list[Any] = [created_ms]
    if tags:
        row.append([list(kv) for kv in tags])
    packed: bytes = msgpack.packb(row)
    return packed


def decode_consumer(inc: int, name: str, raw: Any) -> Consumer:
    return Consumer(inc, name, _decode_row(raw)[0])


# -- reads ---------------------------------------------------------------------


def get_consumer(txn: Any, db: Any, inc: int, name: str) -> Consumer | None:
    """The consumer ``name`` of incarnation ``inc``, or None."""
    raw = txn.get(keys.consumer(inc, name), db=db)
    return None if raw is None else decode_consumer(inc, name, raw)


def get_tagged_consumer(txn: Any, db: Any, inc: int, name: str) -> tuple[Consumer, Tags] | None:
    """The consumer ``name`` of incarnation ``inc`` and its tags in key order, or None."""
    raw = txn.get(keys.consumer(inc, name), db=db)
    if raw is None:
        return None
    created_ms, tags = _decode_row(raw)
    return Consumer(inc, name, created_ms), tags


def list_consumers(
    txn: Any, db: Any, inc: int, *, after: str | None = None, limit: int | None = None
) -> list[Consumer]:
    """The consumers of incarnation ``inc`` named after ``after``, in name order, at most ``limit``.

    ``db`` is the ``consumers`` database.
    """
    prefix = keys.incarnation(inc)
    out: list[Consumer] = []
    if limit is not None and limit <= 0:
        return out
    cursor = txn.cursor(db=db)
    # Names hold no 0x00, so name + 0x00 is the first key after ``after``'s own.
    found = cursor.set_range(prefix if after is None else keys.consumer(inc, after) + b"\x00")
    while found:
        key = bytes(cursor.key())
        if not key.startswith(prefix):
            break
        out.append(decode_consumer(inc, keys.consumer_name(key), cursor.value()))
        if limit is not None and len(out) >= limit:
            break
        found = cursor.next()
    cursor.close()
    return out


def _count(c: Commit, inc: int, limit: int) -> int:
    """How many consumers the stream has, counting no further than ``limit``."""
    return len(list_consumers(c.txn, c.dbs["consumers"], inc, limit=limit))


# -- writes (inside a Commit) -----------------------------------------------------


def _floor(c: Commit) -> int:
    raw = c.txn.get(keys.CONSUMER_FLOOR_KEY, db=c.dbs["meta"])
    return 0 if raw is None else int.from_bytes(raw, "big")


def _raise_floor(c: Commit, removed: Consumer) -> None:
    """Make the next consumer's creation second later than ``removed``'s (a new ARN)."""
    floor = (removed.created_s + 1) * 1000
    if floor > _floor(c):
        c.txn.put(keys.CONSUMER_FLOOR_KEY, floor.to_bytes(8, "big"), db=c.dbs["meta"])


def _merge_tags(what: str, current: Tags, tags: Mapping[str, str], max_tags: int) -> Tags:
    merged = dict(current)
    merged.update(tags)
    if len(merged) > max_tags:
        raise LimitExceededError(
            f"{what} would have {len(merged)} tags: a consumer can have at most {max_tags} "
            f"(it has {len(current)})"
        )
    return tuple(sorted(merged.items()))


def register(
    c: Commit,
    stream: str,
    name: str,
    now_ms: int,
    *,
    max_consumers: int,
    tags: Mapping[str, str] | None = None,
    max_tags: int = MAX_TAGS_PER_STREAM,
) -> Consumer:
    """Register ``name``, ACTIVE at once: unique per stream, ``max_consumers`` at most.

    ``tags`` (checked by the caller) are stored with it; more than ``max_tags``
    is ``LimitExceededError`` and nothing is registered.
    """
    check_consumer_name(name)
    stored = _merge_tags(f"Consumer {name} of stream {stream}", (), tags or {}, max_tags)
    desc = c.stream(stream)
    db = c.dbs["consumers"]
    if get_consumer(c.txn, db, desc.incarnation, name) is not None:
        raise ResourceInUseError(f"Consumer {name} already exists on stream {stream}")
    if _count(c, desc.incarnation, max_consumers) >= max_consumers:
        raise LimitExceededError(
            f"Stream {stream} already has the maximum of {max_consumers} registered consumers"
        )
    consumer = Consumer(desc.incarnation, name, max(now_ms, _floor(c)))
    c.txn.put(
        keys.consumer(desc.incarnation, name), _encode_row(consumer.created_ms, stored), db=db
    )
    return consumer


def _tagged(c: Commit, stream: str, name: str, created_s: int | None) -> tuple[Consumer, Tags]:
    """The consumer to (un)tag and its tags, looked up in the commit's staged view."""
    found = get_tagged_consumer(c.txn, c.dbs["consumers"], c.stream(stream).incarnation, name)
    if found is None or (created_s is not None and found[0].created_s != created_s):
        raise ResourceNotFoundError(f"Consumer {name} of stream {stream} not found")
    return found


def add_tags(
    c: Commit,
    stream: str,
    name: str,
    created_s: int | None,
    tags: Mapping[str, str],
    *,
    max_tags: int = MAX_TAGS_PER_STREAM,
) -> Tags:
    """Add or overwrite tags on a consumer (with ``created_s``, only that one); its new tags."""
    consumer, current = _tagged(c, stream, name, created_s)
    merged = _merge_tags(f"Consumer {name} of stream {stream}", current, tags, max_tags)
    key = keys.consumer(consumer.stream_incarnation, name)
    c.txn.put(key, _encode_row(consumer.created_ms, merged), db=c.dbs["consumers"])
    return merged


def remove_tags(
    c: Commit, stream: str, name: str, created_s: int | None, tag_keys: Iterable[str]
) -> Tags:
    """Remove tags by key; keys the consumer does not have are ignored, as for streams."""
    consumer, current = _tagged(c, stream, name, created_s)
    gone = set(tag_keys)
    kept = tuple(kv for kv in current if kv[0] not in gone)
    if kept != current:
        key = keys.consumer(consumer.stream_incarnation, name)
        c.txn.put(key, _encode_row(consumer.created_ms, kept), db=c.dbs["consumers"])
    return kept


def deregister(c: Commit, stream: str, name: str, created_s: int | None = None) -> Consumer:
    """Remove consumer ``name``; with ``created_s`` (its ARN's), only if created in that second."""
    desc = c.stream(stream)
    db = c.dbs["consumers"]
    consumer = get_consumer(c.txn, db, desc.incarnation, name)
    if consumer is None or (created_s is not None and consumer.created_s != created_s):
        raise ResourceNotFoundError(f"Consumer {name} of stream {stream} not found")
    c.txn.delete(keys.consumer(desc.incarnation, name), db=db)
    _raise_floor(c, consumer)
    return consumer


def delete_stream(c: Commit, stream: str, *, enforce_consumer_deletion: bool) -> None:
    """DeleteStream: refused while consumers are registered, unless they are to go with it.

    The consumers' keys are deleted with the stream's other keys, in chunks;
    the floor rises past the newest of them, so none of their ARNs comes back.
    """
    desc = c.stream(stream)
    registered = list_consumers(c.txn, c.dbs["consumers"], desc.incarnation)
    if registered and not enforce_consumer_deletion:
        raise ResourceInUseError(
            f"Stream {stream} has {len(registered)} registered consumer(s): deregister them "
            "or set EnforceConsumerDeletion"
        )
    if registered:
        _raise_floor(c, max(registered, key=lambda consumer: consumer.created_ms))
    c.delete_stream(stream)

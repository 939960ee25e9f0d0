"""Leases and checkpoints: who processes a shard for an application, and how far it got.

Both are keyed by (stream incarnation, application, shard) (``keys.application``),
so they never outlive their stream's incarnation and are deleted with it.

A lease has an owner, an expiry and a counter that grows at every change of
owner (a released lease keeps its record, owner empty, so the counter keeps
growing). A checkpoint carries the counter its writer was granted, and a
counter that is not the lease's current one is refused (fencing): a worker
whose lease was taken over cannot move the checkpoint any more. A checkpoint
without a counter is accepted only while no lease exists.

Stored values (msgpack arrays)::

    lease       [owner, expires_ms, counter]
    checkpoint  [offset or None, lease counter or None, shard_end, updated_ms]

The write functions run inside a ``Commit`` (the writer thread); the read
functions inside a read transaction. An application's leases on one stream
incarnation are one key range (``keys.application_prefix``; application names
hold no 0x00), listed in shard order by ``list_leases``.
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..errors import InvalidArgumentError, LeaseLostError, ResourceInUseError, ResourceNotFoundError
from ..model import STREAM_NAME_RE, Checkpoint, Lease
from . import keys
from .store import Commit


def check_application(app: object) -> str:
    """Application names follow the stream name rule."""
    if not isinstance(app, str) or STREAM_NAME_RE.fullmatch(app) is None:
        raise InvalidArgumentError(
            f"application name {app!r} is not valid: it must match [a-zA-Z0-9_.-]{{1,128}}"
        )
    return app


def decode_lease(inc: int, app: str, index: int, raw: Any) -> Lease:
    owner, expires, counter = msgpack.unpackb(raw)
    return Lease(inc, app, index, owner, expires, counter)


def decode_checkpoint(inc: int, app: str, index: int, raw: Any) -> Checkpoint:
    offset, counter, shard_end, updated = msgpack.unpackb(raw)
    return Checkpoint(inc, app, index, offset, counter, shard_end, updated)


def list_leases(
    txn: Any, db: Any, inc: int, app: str, *, after: int = -1, limit: int | None = None
) -> list[Lease]:
    """The leases of ``app`` on incarnation ``inc`` with a shard index above ``after``.

    In shard order, at most ``limit`` of them; ``txn`` is a read (or write)
    transaction, ``db`` the ``leases`` database.
    """
    prefix = keys.application_prefix(inc, app)
    out: list[Lease] = []
    if (limit is not None and limit <= 0) or after >= keys.MAX_SHARD_INDEX:
        return out
    cursor = txn.cursor(db=db)
    found = cursor.set_range(prefix if after < 0 else keys.application(inc, app, after + 1))
    while found:
        key = bytes(cursor.key())
        if not key.startswith(prefix):
            break
        out.append(decode_lease(inc, app, keys.application_shard(key), cursor.value()))
        if limit is not None and len(out) >= limit:
            break
        found = cursor.next()
    return out


def _put_lease(c: Commit, key: bytes, lease: Lease) -> Lease:
    c.txn.put(
        key, msgpack.packb([lease.owner, lease.expires_ms, lease.counter]), db=c.dbs["leases"]
    )
    return lease


def _lease_at(c: Commit, inc: int, app: str, index: int) -> Lease | None:
    raw = c.txn.get(keys.application(inc, app, index), db=c.dbs["leases"])
    return None if raw is None else decode_lease(inc, app, index, raw)


def _check_duration(duration_ms: int) -> None:
    if duration_ms <= 0:
        raise InvalidArgumentError(f"lease duration must be positive, got {duration_ms} ms")


def acquire(
    c: Commit, name: str, app: str, index: int, owner: str, duration_ms: int, now_ms: int
) -> Lease:
    """Take the lease: free, expired, or already held by ``owner``."""
    desc = c.stream(name)
    shard = desc.shard(index)
    check_application(app)
    if not isinstance(owner, str) or not owner:
        raise InvalidArgumentError("lease owner must be a non-empty string")
    _check_duration(duration_ms)
    current = _lease_at(c, desc.incarnation, app, index)
    counter = 1
    if current is not None:
        if current.owner and current.owner != owner and not current.is_expired(now_ms):
            raise ResourceInUseError(
                f"the lease on {shard.shard_id} for application {app} is held by "
                f"{current.owner} until {current.expires_ms}"
            )
        counter = current.counter + (current.owner != owner)
    lease = Lease(desc.incarnation, app, index, owner, now_ms + duration_ms, counter)
    return _put_lease(c, keys.application(desc.incarnation, app, index), lease)


def renew(
    c: Commit,
    name: str,
    app: str,
    index: int,
    owner: str,
    counter: int,
    duration_ms: int,
    now_ms: int,
    *,
    release: bool = False,
) -> Lease:
    """Extend the lease (or release it) if ``owner`` still holds it under ``counter``."""
    if not release:
        _check_duration(duration_ms)
    desc = c.stream(name)
    current = _lease_at(c, desc.incarnation, app, index)
    if current is None or current.owner != owner or current.counter != counter:
        if current is None:
            state = "no lease exists"
        elif current.owner:
            state = f"it is held by {current.owner} with counter {current.counter}"
        else:
            state = f"it was released; its counter is {current.counter}"
        raise LeaseLostError(
            f"the lease on {desc.shard(index).shard_id} for application {app} is no longer "
            f"held by {owner} with counter {counter}: {state}"
        )
    expires = 0 if release else now_ms + duration_ms
    lease = Lease(desc.incarnation, app, index, "" if release else owner, expires, counter)
    return _put_lease(c, keys.application(desc.incarnation, app, index), lease)


def checkpoint(
    c: Commit,
    name: str,
    app: str,
    index: int,
    offset: int | None,
    lease_counter: int | None,
    now_ms: int,
    incarnation: int | None = None,
) -> Checkpoint:
    """Record the last processed offset (None: SHARD_END), fenced by the lease counter.

    ``incarnation``: the stream the offset was resolved against; a stream
    deleted and created again since is refused rather than written.
    """
    desc = c.stream(name)
    if incarnation is not None and incarnation != desc.incarnation:
        raise ResourceNotFoundError(
            f"Stream {name} was deleted and created again since the checkpoint was made"
        )
    shard = desc.shard(index)
    check_application(app)
    lease = _lease_at(c, desc.incarnation, app, index)
    if lease is None and lease_counter is not None:
        raise LeaseLostError(
            f"no lease exists on {shard.shard_id} for application {app}, but the checkpoint "
            f"carries lease counter {lease_counter}"
        )
    if lease is not None and lease_counter != lease.counter:
        raise LeaseLostError(
            f"the checkpoint for {shard.shard_id} of application {app} carries lease counter "
            f"{lease_counter}, but the lease's counter is {lease.counter} "
            f"(held by {lease.owner!r})"
        )
    tail = c.tail(desc.incarnation, index)
    if offset is None:
        if shard.is_open:
            raise InvalidArgumentError(
                f"SHARD_END is only a valid checkpoint for a closed shard; {shard.shard_id} is open"
            )
    elif not 0 <= offset <= tail.newest_offset:
        raise InvalidArgumentError(
            f"checkpoint offset {offset} is beyond the newest record "
            f"({tail.newest_offset}) of {shard.shard_id}"
        )
    value = msgpack.packb([offset, lease_counter, offset is None, now_ms])
    c.txn.put(keys.application(desc.incarnation, app, index), value, db=c.dbs["checkpoints"])
    return Checkpoint(desc.incarnation, app, index, offset, lease_counter, offset is None, now_ms)

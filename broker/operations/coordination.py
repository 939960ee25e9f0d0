"""Leases and checkpoints on the wire: how a group of consumers shares a stream's shards.

Six operations in Kinesis' style (the names are ours; Kinesis keeps this state
in the client's DynamoDB table, KCL's lease table): ``AcquireLease``,
``RenewLease``, ``ReleaseLease``, ``ListLeases``, ``SetCheckpoint`` and
``GetCheckpoint``. The rules are the log's (``broker.log.leases``): a lease per
(stream incarnation, application, shard) with an owner, an expiry and a
counter that grows at every change of owner; a checkpoint per (stream,
application, shard) that carries the counter its writer was granted, refused
with ``LeaseLostException`` when that counter is no longer the lease's.

Shapes (``docs/protocol.md``)::

    Lease       {ShardId, ApplicationName, Owner ("" once released), LeaseCounter,
                 ExpiresAt (ms), Held (an owner and not expired)}
    Checkpoint  {ShardId, ApplicationName, SequenceNumber (decimal or "SHARD_END"),
                 LeaseCounter?, UpdatedAt (ms)}

Every operation names the shard's stream first, so a shard of a missing stream
or a shard the stream never had is ``ResourceNotFoundException`` before the
log is asked anything. ``ListLeases`` pages with a signed ``NextToken`` that
carries the stream, its incarnation, the application and the last shard
listed (``iterators.py``).
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidArgumentError, ResourceNotFoundError
from ..log.leases import check_application
from ..model import SHARD_END, Checkpoint, Lease, shard_id
from ..sequence import encode
from . import fields as f
from .base import Broker, Request, Response, operation
from .shapes import codec

#: The longest lease a call may ask for: a day (KCL's default is 10 s, renewed often).
MAX_LEASE_DURATION_MS = 86_400_000
MAX_OWNER_CHARS = 256
MAX_APPLICATION_CHARS = 128
#: Counters start at 1 and are stored as msgpack integers.
MAX_LEASE_COUNTER = (1 << 63) - 1
#: A decimal 128-bit sequence number has at most 39 digits; Kinesis allows 128.
MAX_SEQUENCE_CHARS = 129
DEFAULT_MAX_RESULTS = 1000
MAX_MAX_RESULTS = 10_000


# -- shapes ------------------------------------------------------------------------


def lease_view(lease: Lease, now_ms: int) -> dict[str, Any]:
    return {
        "ShardId": shard_id(lease.shard_index),
        "ApplicationName": lease.application,
        "Owner": lease.owner,
        "LeaseCounter": lease.counter,
        "ExpiresAt": lease.expires_ms,
        "Held": bool(lease.owner) and not lease.is_expired(now_ms),
    }


def checkpoint_view(cp: Checkpoint) -> dict[str, Any]:
    if cp.shard_end or cp.offset is None:
        sequence = SHARD_END
    else:
        sequence = encode(cp.stream_incarnation, cp.shard_index, cp.offset)
    view: dict[str, Any] = {
        "ShardId": shard_id(cp.shard_index),
        "ApplicationName": cp.application,
        "SequenceNumber": sequence,
    }
    if cp.lease_counter is not None:
        view["LeaseCounter"] = cp.lease_counter
    view["UpdatedAt"] = cp.updated_ms
    return view


# -- fields ------------------------------------------------------------------------


def _application(request: Request) -> str:
    return check_application(
        f.required_str(request, "ApplicationName", max_len=MAX_APPLICATION_CHARS)
    )


def _owner(request: Request) -> str:
    return f.required_str(request, "Owner", max_len=MAX_OWNER_CHARS)


def _duration(request: Request) -> int:
    return f.required_int(request, "DurationMillis", low=1, high=MAX_LEASE_DURATION_MS)


def _counter(request: Request) -> int:
    return f.required_int(request, "LeaseCounter", low=1, high=MAX_LEASE_COUNTER)


def _shard_address(broker: Broker, request: Request) -> tuple[str, str, int]:
    """(stream, application, shard index) of a request; the fields read in that order."""
    name = f.required_stream(broker.config, request)
    app = _application(request)
    index = f.required_shard(request, "ShardId")
    return name, app, index


def _existing(broker: Broker, name: str, index: int) -> int:
    """The stream's incarnation; ``ResourceNotFoundError`` if the stream or shard is missing."""
    desc = broker.log.describe(name)
    desc.shard(index)
    return desc.incarnation


# -- leases ------------------------------------------------------------------------


@operation("AcquireLease")
async def acquire_lease(broker: Broker, request: Request) -> Response:
    name, app, index = _shard_address(broker, request)
    owner = _owner(request)
    duration = _duration(request)
    _existing(broker, name, index)
    lease = await broker.log.acquire_lease(name, app, index, owner, duration)
    return {"Lease": lease_view(lease, broker.log.now_ms())}


async def _renew(broker: Broker, request: Request, *, release: bool) -> Response:
    name, app, index = _shard_address(broker, request)
    owner = _owner(request)
    counter = _counter(request)
    duration = 0 if release else _duration(request)
    granted = Lease(_existing(broker, name, index), app, index, owner, 0, counter)
    if release:
        lease = await broker.log.release_lease(granted)
    else:
        lease = await broker.log.renew_lease(granted, duration)
    return {"Lease": lease_view(lease, broker.log.now_ms())}


@operation("RenewLease")
async def renew_lease(broker: Broker, request: Request) -> Response:
    return await _renew(broker, request, release=False)


@operation("ReleaseLease")
async def release_lease(broker: Broker, request: Request) -> Response:
    return await _renew(broker, request, release=True)


@operation("ListLeases")
async def list_leases(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    app = _application(request)
    limit = f.optional_int(
        request, "MaxResults", default=DEFAULT_MAX_RESULTS, low=1, high=MAX_MAX_RESULTS
    )
    assert limit is not None
    token = f.optional_str(request, "NextToken")
    now = broker.log.now_ms()
    incarnation = broker.log.describe(name).incarnation
    after = -1
    if token is not None:
        state = codec(broker).decode_page(token, now)
        if len(state) != 5 or state[0] != "leases" or not isinstance(state[4], int):
            raise InvalidArgumentError("NextToken is not valid: it is not a ListLeases token")
        _, token_name, token_incarnation, token_app, after = state
        if (token_name, token_app) != (name, app):
            raise InvalidArgumentError(
                f"NextToken was issued for application {token_app} on stream {token_name}, "
                f"not for {app} on {name}"
            )
        if token_incarnation != incarnation:
            raise ResourceNotFoundError(f"Stream {name} was deleted since the NextToken was issued")
    found = broker.log.list_leases(name, app, after=after, limit=limit + 1)
    page = found[:limit]
    response: Response = {"Leases": [lease_view(lease, now) for lease in page]}
    if len(found) > limit:
        response["NextToken"] = codec(broker).encode_page(
            ["leases", name, incarnation, app, page[-1].shard_index], now
        )
    return response


# -- checkpoints -------------------------------------------------------------------


@operation("SetCheckpoint")
async def set_checkpoint(broker: Broker, request: Request) -> Response:
    name, app, index = _shard_address(broker, request)
    sequence = f.required_str(request, "SequenceNumber", max_len=MAX_SEQUENCE_CHARS)
    counter = f.optional_int(request, "LeaseCounter", low=1, high=MAX_LEASE_COUNTER)
    _existing(broker, name, index)
    cp = await broker.log.checkpoint(name, app, index, sequence, counter)
    return {"Checkpoint": checkpoint_view(cp)}


@operation("GetCheckpoint")
async def get_checkpoint(broker: Broker, request: Request) -> Response:
    name, app, index = _shard_address(broker, request)
    _existing(broker, name, index)
    cp = broker.log.get_checkpoint(name, app, index)
    if cp is None:
        raise ResourceNotFoundError(
            f"No checkpoint for {shard_id(index)} of stream {name} for application {app}"
        )
    return {"Checkpoint": checkpoint_view(cp)}

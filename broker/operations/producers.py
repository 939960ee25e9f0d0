"""Idempotent producers on the wire: ``InitProducer``, and what makes a PutRecords a batch of one.

``InitProducer`` (request ``{}``) stores a new producer and answers
``{"ProducerId": <32 lowercase hex digits>, "IdleExpirySeconds": <int>}``.

A ``PutRecords`` that carries ``ProducerId``, ``ShardId`` and ``BatchNumber``
(all three or none) is an *idempotent batch*: every record routed by the
producer to ``ShardId``, numbered per (producer, shard) 0, 1, 2, ... Whether it
is appended is decided in the log's commit (``broker.log.producers``); this
module reads the fields and answers, before any routing, what the published
table already settles: an unknown or expired producer, a retry of the last
batch committed (answered with its original sequence numbers, appending
nothing, even if the shard was closed since), and a number older than it.
``writes.py`` does the rest (routing, the write limits, the append).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidArgumentError
from ..log import LastBatch, Log
from ..log.producers import count_mismatch, out_of_order, unknown_producer
from ..model import StreamDescription
from . import fields as f
from .base import Broker, Request, Response, operation

FIELDS = ("ProducerId", "ShardId", "BatchNumber")
MAX_BATCH_NUMBER = (1 << 63) - 1
_PRODUCER_ID_RE = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class BatchFields:
    """An idempotent batch's address: producer, shard, number."""

    producer_id: bytes
    shard_index: int
    batch_number: int


def is_idempotent(request: Request) -> bool:
    """Whether a PutRecords names any of the three fields (a nil one counts as absent)."""
    get = request.get
    return (
        get("ProducerId") is not None
        or get("ShardId") is not None
        or get("BatchNumber") is not None
    )


def batch_fields(request: Request) -> BatchFields:
    """The three fields, each checked; ``InvalidArgumentException`` naming any one missing."""
    missing = [name for name in FIELDS if request.get(name) is None]
    if missing:
        given = [name for name in FIELDS if name not in missing]
        raise InvalidArgumentError(
            f"{' and '.join(missing)} missing: an idempotent PutRecords carries ProducerId, "
            f"ShardId and BatchNumber together, and this one has only {' and '.join(given)}"
        )
    text = f.required_str(request, "ProducerId")
    if _PRODUCER_ID_RE.fullmatch(text) is None:
        raise InvalidArgumentError(
            f"ProducerId {text[:64]!r} is not valid: expected the 32 lowercase hexadecimal "
            "digits that InitProducer answered"
        )
    index = f.required_shard(request, "ShardId")
    number = f.required_int(request, "BatchNumber", low=0, high=MAX_BATCH_NUMBER)
    return BatchFields(bytes.fromhex(text), index, number)


def committed_original(
    broker: Broker, batch: BatchFields, desc: StreamDescription, count: int, now_ms: int
) -> LastBatch | None:
    """The committed batch that this one repeats, or None: then it goes to the log.

    Raises what the published table settles for good: the producer unknown or
    expired, a number below the last committed one, or a repeat of it with
    another record count. ``desc`` must be read before this is called (see
    ``LogStore._publish``).
    """
    log: Log = broker.log
    producer_id, index, number = batch.producer_id, batch.shard_index, batch.batch_number
    producer = log.producer(producer_id)
    if producer is None or producer.is_expired(now_ms):
        raise unknown_producer(producer_id, broker.config.producer_idle_expiry_s)
    last = log.last_batch(producer_id, desc.incarnation, index)
    if last is None or number > last.batch_number:
        return None
    if number < last.batch_number:
        raise out_of_order(producer_id, number, last.batch_number, index, desc.name)
    if count != last.count:
        raise count_mismatch(producer_id, number, last.count, count, index, desc.name)
    return last


@operation("InitProducer")
async def init_producer(broker: Broker, request: Request) -> Response:
    expiry_s = broker.config.producer_idle_expiry_s
    producer = await broker.log.init_producer(expiry_s * 1000)
    return {"ProducerId": producer.producer_id.hex(), "IdleExpirySeconds": expiry_s}

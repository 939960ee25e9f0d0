"""LMDB key layouts. Big-endian throughout, so byte order is numeric order.

==============  ===============================================  =========================
database        key                                              value
==============  ===============================================  =========================
``meta``        ``b"incarnation"``                               u32: last incarnation
``meta``        ``b"drop" + inc u32``                            b"": data to delete
``meta``        ``b"consumer-floor"``                            u64: least creation ms
                                                                 of the next consumer
``streams``     ``inc u32``                                      msgpack stream record
``batches``     ``inc u32 + shard u32 + first offset u64``       batch (``batch.py``)
``tails``       ``inc u32 + shard u32``                          msgpack [next offset,
                                                                 last arrival ms]
``checkpoints`` ``inc u32 + application utf-8 + 0x00 + shard``   msgpack checkpoint
``leases``      ``inc u32 + application utf-8 + 0x00 + shard``   msgpack lease
``consumers``   ``inc u32 + consumer name utf-8``                msgpack [creation ms]
                                                                 or [creation ms,
                                                                 [[tag key, value], ...]]
``producers``   ``producer id (16 bytes)``                       msgpack [last active ms,
                                                                 expires ms]
``producers``   ``producer id + inc u32 + shard u32``            msgpack [batch number,
                                                                 first offset, count]
``mappings``    ``mapping UUID (16 bytes)``                      msgpack mapping record
                                                                 (``mappings.py``)
==============  ===============================================  =========================

Every key of a stream starts with its incarnation, so deleting a stream's data
is a walk over one key prefix per database. A stream's consumers, keyed by
name, are listed in name order by a walk over its prefix. The exception is
``producers`` (``producers.py``): keyed by producer, so that one producer's
rows are one range; a deleted stream's rows there go in the producers' sweep.
Event source mappings (``mappings.py``) are keyed by UUID alone, not by
incarnation: a mapping outlives the stream it reads, and says so in its state,
until it is deleted.
"""

from __future__ import annotations

import struct

_INC = struct.Struct(">I")
_SHARD = struct.Struct(">II")
_BATCH = struct.Struct(">IIQ")

#: The largest shard index a key can hold (u32).
MAX_SHARD_INDEX = 0xFFFF_FFFF

INCARNATION_KEY = b"incarnation"
DROP_PREFIX = b"drop"
CONSUMER_FLOOR_KEY = b"consumer-floor"


def incarnation(inc: int) -> bytes:
    return _INC.pack(inc)


def shard(inc: int, index: int) -> bytes:
    return _SHARD.pack(inc, index)


def batch(inc: int, index: int, first_offset: int) -> bytes:
    return _BATCH.pack(inc, index, first_offset)


def batch_offset(key: bytes) -> int:
    return int(_BATCH.unpack(key)[2])


def drop(inc: int) -> bytes:
    return DROP_PREFIX + _INC.pack(inc)


def application(inc: int, app: str, index: int) -> bytes:
    return _INC.pack(inc) + app.encode() + b"\x00" + _INC.pack(index)


def application_prefix(inc: int, app: str) -> bytes:
    return _INC.pack(inc) + app.encode() + b"\x00"


def application_shard(key: bytes) -> int:
    return int(_INC.unpack(key[-4:])[0])


def consumer(inc: int, name: str) -> bytes:
    return _INC.pack(inc) + name.encode()


def consumer_name(key: bytes) -> str:
    return bytes(key[4:]).decode()

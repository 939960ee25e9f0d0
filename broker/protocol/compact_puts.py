"""Compact PutRecords (``"Compact": true``): records as columns, answers as positions.

A shardline extension of the native wire (``docs/protocol.md``, PutRecords).
The map form costs the broker a map per record to decode, an MD5 per key, and
a map per record to answer: most of its CPU per record. The compact form
sends the same records as three columns,

    {"Compact": true, "PartitionKeys": [str, ...], "Data": [bin, ...],
     "HashKeys": bin}

``HashKeys`` (optional) is 16 bytes per record, the record's 128-bit hash key
big-endian: the client computes MD5(partition key) itself, or takes the
record's ``ExplicitHashKey``, and the broker routes every record by it as it
would by an ``ExplicitHashKey`` (numpy routes the whole request at once).
The answer of a request whose records all succeeded is

    {"FailedRecordCount": 0, "ShardIds": [str, ...],
     "FirstSequenceNumbers": [str | nil, ...], "Positions": bin,
     "EncryptionType": "NONE"}

Record *i* went to ``ShardIds[p]``, ``p`` its position in ``Positions`` (one
byte per record, or two bytes big-endian when there are more than 256 shard
ids); its sequence number is ``FirstSequenceNumbers[p]`` plus the number of
records before it with the same position. Any failed record makes the answer
the map form (``Records``). Kafka's producers route on the client in the same
way, and Kinesis' KPL sends ``ExplicitHashKey`` for the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgumentError
from ..hashing import md5, parse_explicit_hash_key

#: Shard ids up to which a position is one byte; past it, two (big-endian).
ONE_BYTE_SHARDS = 256

#: The fields a record map may have to be sent in the compact form.
_RECORD_FIELDS = frozenset(("Data", "PartitionKey", "ExplicitHashKey"))


def position_bytes(positions: Sequence[int] | npt.NDArray[np.intp], shards: int) -> bytes:
    """An answer's ``Positions`` for ``shards`` shard ids."""
    width = np.uint8 if shards <= ONE_BYTE_SHARDS else np.dtype(">u2")
    return np.asarray(positions).astype(width).tobytes()


def compact_request(
    records: Sequence[Mapping[str, Any]], digests: Sequence[bytes] | None = None
) -> dict[str, Any] | None:
    """``records`` (maps with Kinesis names) as compact columns with their hash keys.

    None when a record is not plainly valid (a missing or mistyped field, an
    unknown one, a key that is not valid UTF-8, a malformed ExplicitHashKey):
    the map form then lets the broker name the offending record. ``digests``:
    the MD5 of each record's key, already computed (a ``Producer`` routes by
    them); used when every record is a plain ``Data`` and ``PartitionKey``.
    """
    if not records:
        return None  # the map form's error names Records
    if set(map(type, records)) == {dict} and set(map(len, records)) == {2}:
        # The common case, checked per batch: maps of exactly Data and PartitionKey.
        try:
            keys = [record["PartitionKey"] for record in records]
            datas = [record["Data"] for record in records]
        except KeyError:
            return None
        if set(map(type, keys)) == {str} and set(map(type, datas)) == {bytes}:
            if digests is not None and len(digests) == len(keys):
                hashes = b"".join(digests)
            else:
                try:
                    hashes = b"".join([md5(key.encode()).digest() for key in keys])
                except UnicodeEncodeError:
                    return None
            return {"Compact": True, "PartitionKeys": keys, "Data": datas, "HashKeys": hashes}
    return _compact_one_by_one(records)


def _compact_one_by_one(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    keys: list[str] = []
    datas: list[bytes] = []
    digests: list[bytes] = []
    for record in records:
        if not isinstance(record, Mapping) or not record.keys() <= _RECORD_FIELDS:
            return None
        key = record.get("PartitionKey")
        data = record.get("Data")
        if type(key) is not str or not isinstance(data, bytes | bytearray | memoryview):
            return None
        explicit = record.get("ExplicitHashKey")
        try:
            if explicit is None:
                digests.append(md5(key.encode()).digest())
            else:
                digests.append(parse_explicit_hash_key(explicit).to_bytes(16, "big"))
        except (UnicodeEncodeError, InvalidArgumentError):
            return None
        keys.append(key)
        datas.append(data if type(data) is bytes else bytes(data))
    return {"Compact": True, "PartitionKeys": keys, "Data": datas, "HashKeys": b"".join(digests)}


def answered(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(ShardId, SequenceNumber)`` per record of a compact answer, in request order."""
    shard_ids: list[str] = body["ShardIds"]
    raw: bytes = body["Positions"]
    positions = raw if len(shard_ids) <= ONE_BYTE_SHARDS else np.frombuffer(raw, ">u2").tolist()
    following = [0 if first is None else int(first) for first in body["FirstSequenceNumbers"]]
    out: list[tuple[str, str]] = []
    add = out.append
    for position in positions:
        sequence = following[position]
        following[position] = sequence + 1
        add((shard_ids[position], str(sequence)))
    return out


class Placed:
    """``(ShardId, SequenceNumber)`` per record of a compact answer.

    A ``Producer`` batch goes to one shard: its record *i* is the first
    sequence number plus *i*, so nothing is made per record until a handle
    asks. Any other answer is expanded whole (``answered``) at once.
    """

    __slots__ = ("_count", "_expanded", "_first", "_shard_id")

    def __init__(self, body: Mapping[str, Any]) -> None:
        shard_ids: list[str] = body["ShardIds"]
        raw: bytes = body["Positions"]
        self._first = -1
        self._shard_id = ""
        self._expanded: list[tuple[str, str]] = []
        if len(shard_ids) <= ONE_BYTE_SHARDS and raw and raw.count(raw[:1]) == len(raw):
            self._first = int(body["FirstSequenceNumbers"][raw[0]])
            self._shard_id = shard_ids[raw[0]]
            self._count = len(raw)
        else:
            self._expanded = answered(body)
            self._count = len(self._expanded)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> tuple[str, str]:
        if self._first < 0:
            return self._expanded[index]
        if not 0 <= index < self._count:
            raise IndexError(index)
        return self._shard_id, str(self._first + index)

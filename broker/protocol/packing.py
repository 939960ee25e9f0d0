"""PutRecords responses packed by numpy, byte-for-byte what ``msgpack.packb`` gives.

A ``PutRecords`` response of n records is n small maps
``{"SequenceNumber": "<decimal>", "ShardId": "shardId-..."}``. Built as Python
dicts and packed, that is three objects, a 30-digit ``str()`` of a big integer
and a map to pack per record: about 0.35 µs each, the largest per-record cost
of the write path after routing. Here the work is per batch instead.

Theory of operation. Within one response the records of one shard have
consecutive sequence numbers ``B + rank`` (``B`` the shard's first sequence
number in this append, ``rank`` the record's position among the request's
records for that shard). Write ``B = H * 10**12 + L``: while
``L + count <= 10**12`` every ``str(B + rank)`` is ``str(H)`` followed by
``L + rank`` zero-padded to 12 digits. So each shard has one fixed entry
*template* (map header, keys, the shard id, the high digits), and a record's
entry is its shard's template with the 12 low digits written in. numpy
gathers the templates by shard and computes every low digit at once.

All entries must have the same length (same number of high digits, same
shard-id length) for the fixed-width layout; when they do not, or when a
shard's run would carry past the 12 low digits, ``pack_put_records`` returns
None and the caller packs the dict form (a rare case: once every 10**12
records of a shard, or a stream whose shards straddle a power of ten).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack
import numpy as np

LOW_DIGITS = 12
_LOW_MOD = 10**LOW_DIGITS
#: The four ASCII digits of 0..9999, zero-padded, one uint32 each: 12 digits are
#: three lookups (a gather on a 1-D table, ten times faster than on a 2-D one).
_QUADS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), np.uint32)
_SEQUENCE_KEY = msgpack.packb("SequenceNumber")
_SHARD_KEY = msgpack.packb("ShardId")
_HEAD: bytes = msgpack.packb("FailedRecordCount") + msgpack.packb(0) + msgpack.packb("Records")
_TAIL: bytes = msgpack.packb("EncryptionType") + msgpack.packb("NONE")


def _str_header(length: int) -> bytes:
    packed: bytes = msgpack.packb("x" * length)
    return packed[: -length or None]


def _array_header(count: int) -> bytes:
    if count < 16:
        return bytes([0x90 | count])
    if count < 1 << 16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


_TEMPLATES: dict[tuple[int, str], tuple[bytes, int]] = {}


def _template(high: int, shard_id: str) -> tuple[bytes, int]:
    """A shard's entry with zeros for the low digits, and where those digits go."""
    key = (high, shard_id)
    found = _TEMPLATES.get(key)
    if found is None:
        prefix = str(high).encode()
        head = b"\x82" + _SEQUENCE_KEY + _str_header(len(prefix) + LOW_DIGITS) + prefix
        found = (head + b"0" * LOW_DIGITS + _SHARD_KEY + msgpack.packb(shard_id), len(head))
        if len(_TEMPLATES) >= 4096:
            _TEMPLATES.clear()
        _TEMPLATES[key] = found
    return found


def pack_put_records(
    positions: Sequence[int] | np.ndarray, shard_ids: Sequence[str], firsts: Sequence[int | None]
) -> bytes | None:
    """The packed all-successful response ``{"FailedRecordCount": 0, "Records": [...], ...}``.

    ``positions[i]`` is record i's shard position (an index into ``shard_ids``
    and ``firsts``); ``firsts[p]`` is the sequence number (as an integer) of
    the first record of position p in this request, or None for a position
    no record went to. None when the fixed-width layout does not apply.
    """
    n = len(positions)
    p = np.fromiter(positions, dtype=np.intp, count=n)
    counts = np.bincount(p, minlength=len(shard_ids))
    templates: list[bytes] = []
    rows = np.zeros(len(shard_ids), dtype=np.intp)
    lows = np.zeros(len(shard_ids), dtype=np.int64)
    width = digits_at = -1
    for position in np.flatnonzero(counts).tolist():
        first = firsts[position]
        if first is None:
            return None
        high, low = divmod(first, _LOW_MOD)
        if high == 0 or low + int(counts[position]) > _LOW_MOD:
            return None
        template, at = _template(high, shard_ids[position])
        if width < 0:
            width, digits_at = len(template), at
        elif len(template) != width or at != digits_at:
            return None
        rows[position] = len(templates)
        lows[position] = low
        templates.append(template)
    if n == 0:
        return b"\x83" + _HEAD + _array_header(0) + _TAIL
    # Rank of each record among its shard's records, in request order. A loop, not
    # numpy's argsort: that lets the GIL go, and taking it back from the log's
    # writer thread can cost a switch interval (``ShardRouter.digest_positions``).
    seen = [0] * len(shard_ids)
    ranks: list[int] = []
    add = ranks.append
    for position in p.tolist():
        add(seen[position])
        seen[position] += 1
    rank = np.array(ranks, dtype=np.int64)
    # One opaque item per template: the gather copies whole rows (fast), then
    # the rows are seen as bytes to write the digits in.
    table = np.frombuffer(b"".join(templates), dtype=np.dtype((np.void, width)))
    entries = table[rows[p]].view(np.uint8).reshape(n, width)
    entries[:, digits_at : digits_at + LOW_DIGITS] = _digits(lows[p] + rank)
    body: bytes = b"".join((b"\x83", _HEAD, _array_header(n), entries.tobytes(), _TAIL))
    return body


def _digits(values: np.ndarray) -> np.ndarray:
    """The 12 zero-padded ASCII digits of each value (< 10**12), one row per value.

    Two divisions by a scalar (numpy uses libdivide for those) split a value
    into three groups of four digits; one lookup gives their ASCII bytes.
    """
    groups = np.empty((len(values), 3), dtype=np.intp)
    groups[:, 0], rest = np.divmod(values, 100_000_000)
    groups[:, 1], groups[:, 2] = np.divmod(rest, 10_000)
    return _QUADS[groups].view(np.uint8)

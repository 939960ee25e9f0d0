"""Partition key -> 128-bit hash key -> shard.

Kinesis routes a record by the MD5 of its partition key's UTF-8 bytes, read as
a big-endian 128-bit integer, or by an explicit hash key; the record goes to
the open shard whose inclusive hash range holds the key. Pure functions; the
per-record work is one MD5 and one binary search.

``md5`` is CPython's built-in MD5 (``_md5``) where it exists: for keys of a few
dozen bytes it costs about half of ``hashlib.md5``, which goes through
OpenSSL's EVP layer and allocates a context per call (``python -m bench.micro
md5``: 193 against 352 ns a key; the digests are the same). Routing compares the
16-byte digest with the shards' range ends as 16-byte big-endian strings, which
orders them exactly as the integers and skips ``int.from_bytes``.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from .errors import InvalidArgumentError
from .model import MAX_HASH_KEY, HashKeyRange, Shard

try:  # CPython's own MD5: no OpenSSL context per call
    from _md5 import md5 as _builtin_md5  # type: ignore[import-not-found]

    md5: Callable[[bytes], hashlib._Hash] = _builtin_md5
except ImportError:  # pragma: no cover - built without it
    md5 = hashlib.md5

_LOW64 = (1 << 64) - 1
#: Streams with at most this many open shards route a batch by one comparison per end.
COUNTED_ENDS = 32
_HASH_KEY_RE = re.compile(r"0|[1-9][0-9]{0,38}")
MAX_PARTITION_KEY_CHARS = 256


def validate_partition_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidArgumentError(
            f"PartitionKey must be a string of 1 to 256 characters, got {type(key).__name__}"
        )
    if not 1 <= len(key) <= MAX_PARTITION_KEY_CHARS:
        raise InvalidArgumentError(
            f"PartitionKey must be 1 to 256 characters long, got {len(key)} characters"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            "PartitionKey is not valid Unicode: it contains a lone surrogate"
        ) from None
    return key


def hash_partition_key(key: str) -> int:
    """The 128-bit hash key of a partition key (MD5 of its UTF-8 bytes, big-endian)."""
    return int.from_bytes(md5(key.encode("utf-8")).digest(), "big")


def parse_explicit_hash_key(value: object) -> int:
    """An ``ExplicitHashKey`` (decimal string, 0..2^128-1) as an integer."""
    if not isinstance(value, str) or _HASH_KEY_RE.fullmatch(value) is None:
        raise InvalidArgumentError(
            f"ExplicitHashKey {value!r} is not valid: expected a decimal integer "
            f"between 0 and {MAX_HASH_KEY}"
        )
    key = int(value)
    if key > MAX_HASH_KEY:
        raise InvalidArgumentError(
            f"ExplicitHashKey {value} is out of range: it must be between 0 and {MAX_HASH_KEY}"
        )
    return key


def even_ranges(count: int) -> list[HashKeyRange]:
    """Split the hash space evenly into ``count`` ranges, the last one ending at 2^128-1."""
    if count < 1:
        raise InvalidArgumentError(f"ShardCount must be at least 1, got {count}")
    step = (MAX_HASH_KEY + 1) // count
    ranges = [HashKeyRange(i * step, (i + 1) * step - 1) for i in range(count)]
    ranges[-1] = HashKeyRange(ranges[-1].start, MAX_HASH_KEY)
    return ranges


class ShardRouter:
    """Routes hash keys to the open shards of one stream (a sorted table, binary search)."""

    __slots__ = ("_ends", "_ends_high", "_ends_low", "_high_list", "_indexes", "digest_ends")

    def __init__(self, shards: Iterable[Shard]) -> None:
        open_shards = sorted((s for s in shards if s.is_open), key=lambda s: s.hash_range.start)
        expected = 0
        for shard in open_shards:
            if shard.hash_range.start != expected:
                raise ValueError(f"open shards leave a gap or overlap at hash key {expected}")
            expected = shard.hash_range.end + 1
        if expected != MAX_HASH_KEY + 1:
            raise ValueError("open shards do not cover the whole hash space")
        self._ends = [s.hash_range.end for s in open_shards]
        self._indexes = [s.index for s in open_shards]
        #: The range ends as 16-byte big-endian strings: ``bisect_left`` on a key's
        #: MD5 digest gives its *position*, and ``indexes[position]`` its shard.
        self.digest_ends = [end.to_bytes(16, "big") for end in self._ends]
        # The same ends as two uint64 columns, for ``digest_positions``; None when two
        # ends share their high half (ranges narrower than 2^64), where it bisects.
        high = [end >> 64 for end in self._ends]
        self._ends_high = np.array(high, np.uint64) if len(set(high)) == len(high) else None
        self._ends_low = np.array([end & _LOW64 for end in self._ends], np.uint64)
        self._high_list = high

    @property
    def indexes(self) -> list[int]:
        """Shard index per position (open shards in hash-range order)."""
        return self._indexes

    def digest_positions(self, digests: bytes) -> npt.NDArray[np.intp]:
        """The position of each 16-byte big-endian hash key in ``digests``, at once.

        The same as ``bisect_left(digest_ends, digest)`` per key: the number of
        range ends below the key. With distinct high halves, a key's high half
        finds the one end it can tie with, and its low half settles the tie.

        Up to ``COUNTED_ENDS`` ends, each end is one comparison over all keys:
        numpy keeps the GIL for element-wise work on at most 500 elements (a
        PutRecords' worth), where ``searchsorted`` always lets it go, and
        taking it back from a busy thread can cost a switch interval (5 ms).
        """
        keys = np.frombuffer(digests, ">u8").reshape(-1, 2)
        high = keys[:, 0].astype(np.uint64)
        if self._ends_high is None:
            find, ends = bisect.bisect_left, self.digest_ends
            n = len(digests) // 16
            return np.array([find(ends, digests[16 * i : 16 * i + 16]) for i in range(n)], np.intp)
        if len(self._high_list) <= COUNTED_ENDS:
            positions = np.zeros(len(high), np.intp)
            for end in self._high_list[:-1]:  # no key passes the last end, 2^128 - 1
                positions += high > end
        else:
            positions = np.searchsorted(self._ends_high, high, "left")
        # Ties: the key's high half equals its end's; ``positions`` stays in range.
        tie = (self._ends_high[positions] == high) & (
            self._ends_low[positions] < keys[:, 1].astype(np.uint64)
        )
        positions += tie
        return positions

    def shard_for_hash(self, hash_key: int) -> int:
        return self._indexes[bisect.bisect_left(self._ends, hash_key)]

    def shard_for_key(self, partition_key: str, explicit_hash_key: str | None = None) -> int:
        """The shard index for a record; validates both keys."""
        validate_partition_key(partition_key)
        if explicit_hash_key is not None:
            return self.shard_for_hash(parse_explicit_hash_key(explicit_hash_key))
        return self.shard_for_hash(hash_partition_key(partition_key))

    def group(self, records: Sequence[tuple[str, bytes]]) -> dict[int, list[tuple[str, bytes]]]:
        """Group ``(partition_key, data)`` records by shard, keeping their order within a shard."""
        out: dict[int, list[tuple[str, bytes]]] = {}
        ends, indexes = self._ends, self._indexes
        find = bisect.bisect_left
        for record in records:
            key = record[0]
            if not isinstance(key, str) or not 1 <= len(key) <= MAX_PARTITION_KEY_CHARS:
                validate_partition_key(key)
            try:
                h = int.from_bytes(md5(key.encode("utf-8")).digest(), "big")
            except UnicodeEncodeError:
                validate_partition_key(key)
                raise
            index = indexes[find(ends, h)]
            bucket = out.get(index)
            if bucket is None:
                out[index] = [record]
            else:
                bucket.append(record)
        return out

"""Per-shard write limits: two token buckets per shard, records and bytes per second.

Kinesis allows each shard 1 MiB/s (data plus keys) and 1,000 records/s of
writes; a record over either limit fails with
``ProvisionedThroughputExceededException``. Here the limits are optional
(``BrokerConfig.shard_write_bytes_per_s`` / ``shard_write_records_per_s``; 0
turns one off) and each bucket holds one second's worth, so a shard may burst
one second of traffic after a quiet second. Pure: ``now_ms`` is passed in.

Buckets are kept per (stream incarnation, shard index), at most
``MAX_BUCKETS`` of them; when full, the table is cleared (every shard starts
again with a full bucket), which errs on the side of admitting.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_BUCKETS = 65_536


@dataclass(slots=True)
class _Bucket:
    records: float
    nbytes: float
    at_ms: int


class ShardWriteLimiter:
    """Admits or refuses one record at a time against its shard's buckets."""

    __slots__ = ("_buckets", "bytes_per_s", "records_per_s")

    def __init__(self, records_per_s: int, bytes_per_s: int) -> None:
        self.records_per_s = records_per_s
        self.bytes_per_s = bytes_per_s
        self._buckets: dict[tuple[int, int], _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.records_per_s > 0 or self.bytes_per_s > 0

    def _bucket(self, key: tuple[int, int], now_ms: int) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(
                float(self.records_per_s), float(self.bytes_per_s), now_ms
            )
        elif now_ms > bucket.at_ms:
            elapsed = (now_ms - bucket.at_ms) / 1000.0
            bucket.records = min(
                float(self.records_per_s), bucket.records + elapsed * self.records_per_s
            )
            bucket.nbytes = min(float(self.bytes_per_s), bucket.nbytes + elapsed * self.bytes_per_s)
            bucket.at_ms = now_ms
        return bucket

    def admit(self, incarnation: int, shard_index: int, nbytes: int, now_ms: int) -> bool:
        """Take one record of ``nbytes`` from the shard's buckets; False if either is short."""
        bucket = self._bucket((incarnation, shard_index), now_ms)
        if self.records_per_s > 0 and bucket.records < 1.0:
            return False
        if self.bytes_per_s > 0 and bucket.nbytes < nbytes:
            return False
        bucket.records -= 1.0
        bucket.nbytes -= nbytes
        return True

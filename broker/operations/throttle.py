"""Per-shard throughput limits: token buckets per shard for writes and for GetRecords.

Kinesis allows each shard 1 MiB/s (data plus keys) and 1,000 records/s of
writes; a record over either limit fails with
``ProvisionedThroughputExceededException``. Here the limits are optional
(``BrokerConfig.shard_write_bytes_per_s`` / ``shard_write_records_per_s``; 0
turns one off) and each bucket holds one second's worth, so a shard may burst
one second of traffic after a quiet second. Pure: ``now_ms`` is passed in.

Reads have the same shape (``ShardReadLimiter``: calls and bytes per second,
``BrokerConfig.shard_read_calls_per_s`` / ``shard_read_bytes_per_s``), applied
to ``GetRecords`` by the ``limit_reads`` decorator, which costs one attribute
test per call while the limits are off.

Buckets are kept per (stream incarnation, shard index), at most
``MAX_BUCKETS`` of them; when full, the table is cleared (every shard starts
again with a full bucket), which errs on the side of admitting.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProvisionedThroughputExceededError, ShardlineError
from ..model import shard_id
from .base import Broker, Handler, Prepared, Request, Result
from .shapes import codec

MAX_BUCKETS = 65_536


@dataclass(slots=True)
class _Bucket:
    records: float
    nbytes: float
    at_ms: int


class _ShardBuckets:
    """Two token buckets per shard: a count (records or calls) and bytes, per second.

    Each holds one second's worth and refills continuously; 0 turns one off.
    """

    __slots__ = ("_buckets", "bytes_per_s", "count_per_s")

    def __init__(self, count_per_s: int, bytes_per_s: int) -> None:
        self.count_per_s = count_per_s
        self.bytes_per_s = bytes_per_s
        self._buckets: dict[tuple[int, int], _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.count_per_s > 0 or self.bytes_per_s > 0

    def _bucket(self, key: tuple[int, int], now_ms: int) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(
                float(self.count_per_s), float(self.bytes_per_s), now_ms
            )
        elif now_ms > bucket.at_ms:
            elapsed = (now_ms - bucket.at_ms) / 1000.0
            bucket.records = min(
                float(self.count_per_s), bucket.records + elapsed * self.count_per_s
            )
            bucket.nbytes = min(float(self.bytes_per_s), bucket.nbytes + elapsed * self.bytes_per_s)
            bucket.at_ms = now_ms
        return bucket


class ShardWriteLimiter(_ShardBuckets):
    """Admits or refuses one record at a time against its shard's buckets."""

    __slots__ = ()

    def __init__(self, records_per_s: int, bytes_per_s: int) -> None:
        super().__init__(records_per_s, bytes_per_s)

    @property
    def records_per_s(self) -> int:
        return self.count_per_s

    def admit(self, incarnation: int, shard_index: int, nbytes: int, now_ms: int) -> bool:
        """Take one record of ``nbytes`` from the shard's buckets; False if either is short."""
        bucket = self._bucket((incarnation, shard_index), now_ms)
        if self.count_per_s > 0 and bucket.records < 1.0:
            return False
        if self.bytes_per_s > 0 and bucket.nbytes < nbytes:
            return False
        bucket.records -= 1.0
        bucket.nbytes -= nbytes
        return True

    def admit_batch(
        self, incarnation: int, shard_index: int, records: int, nbytes: int, now_ms: int
    ) -> bool:
        """Take a whole batch (``records`` records, ``nbytes`` in all) or nothing of it.

        For idempotent batches, which are appended or refused as one. A batch
        larger than one second's allowance is never admitted.
        """
        bucket = self._bucket((incarnation, shard_index), now_ms)
        if self.count_per_s > 0 and bucket.records < records:
            return False
        if self.bytes_per_s > 0 and bucket.nbytes < nbytes:
            return False
        bucket.records -= records
        bucket.nbytes -= nbytes
        return True


class ShardReadLimiter(_ShardBuckets):
    """Per-shard GetRecords limits: calls per second and bytes per second, two token buckets.

    Kinesis allows each shard 5 GetRecords calls/s and 2 MiB/s of reads. A call
    is admitted when the shard's call bucket holds a whole token and its byte
    bucket is not in debt; the bytes of the response are charged afterwards
    (``charge``), so one large response can put the byte bucket into debt and
    the calls that follow are refused until the debt is repaid at
    ``bytes_per_s`` (a 10 MiB response at 2 MiB/s blocks the shard for about
    four seconds, close to Kinesis' "the next five seconds"). Each bucket holds
    one second's worth. 0 turns a limit off. Pure: ``now_ms`` is passed in.
    """

    __slots__ = ()

    def __init__(self, calls_per_s: int, bytes_per_s: int) -> None:
        super().__init__(calls_per_s, bytes_per_s)

    @property
    def calls_per_s(self) -> int:
        return self.count_per_s

    def admit(self, incarnation: int, shard_index: int, now_ms: int) -> bool:
        """Take one call from the shard's bucket; False if it is empty or the bytes are in debt."""
        bucket = self._bucket((incarnation, shard_index), now_ms)
        if self.count_per_s > 0 and bucket.records < 1.0:
            return False
        if self.bytes_per_s > 0 and bucket.nbytes <= 0.0:
            return False
        bucket.records -= 1.0
        return True

    def charge(self, incarnation: int, shard_index: int, nbytes: int, now_ms: int) -> None:
        """Charge a response of ``nbytes`` to the shard (the byte bucket may go into debt)."""
        if self.bytes_per_s > 0:
            self._bucket((incarnation, shard_index), now_ms).nbytes -= nbytes


def read_limiter(broker: Broker) -> ShardReadLimiter | None:
    """The broker's read limiter, or None when read limits are off."""
    config = broker.config
    if not (config.shard_read_calls_per_s or config.shard_read_bytes_per_s):
        return None
    limiter = broker.extras.get("read_limiter")
    if limiter is None:
        limiter = broker.extras["read_limiter"] = ShardReadLimiter(
            config.shard_read_calls_per_s, config.shard_read_bytes_per_s
        )
    assert isinstance(limiter, ShardReadLimiter)
    return limiter


def limit_reads(handler: Handler) -> Handler:
    """Wrap the GetRecords handler with the optional per-shard read limits."""

    async def limited(broker: Broker, request: Request) -> Result:
        limiter = read_limiter(broker)
        if limiter is None:
            return await handler(broker, request)
        now = broker.log.now_ms()
        try:
            it = codec(broker).decode(request.get("ShardIterator"), now)
        except ShardlineError:
            return await handler(broker, request)  # the handler names the error
        if not limiter.admit(it.incarnation, it.shard_index, now):
            raise ProvisionedThroughputExceededError(
                f"Rate exceeded for shard {shard_id(it.shard_index)} of stream {it.stream}: "
                f"the shard's read limit is {limiter.calls_per_s} calls/s and "
                f"{limiter.bytes_per_s} bytes/s"
            )
        response = await handler(broker, request)
        if isinstance(response, Prepared):
            nbytes = response.record_bytes
        elif isinstance(response, dict):
            nbytes = sum(len(r["Data"]) + len(r["PartitionKey"]) for r in response["Records"])
        else:
            nbytes = 0
        limiter.charge(it.incarnation, it.shard_index, nbytes, now)
        return response

    limited.__name__ = getattr(handler, "__name__", "limited")
    limited.__doc__ = handler.__doc__
    return limited

"""Per-shard token buckets with explicit times."""

from __future__ import annotations

from broker.operations.throttle import MAX_BUCKETS, ShardReadLimiter, ShardWriteLimiter


def test_read_calls_per_second() -> None:
    limiter = ShardReadLimiter(calls_per_s=5, bytes_per_s=0)
    assert limiter.enabled
    assert [limiter.admit(1, 0, 1000) for _ in range(6)] == [True] * 5 + [False]
    assert limiter.admit(1, 1, 1000)  # another shard has its own bucket
    assert limiter.admit(2, 0, 1000)  # and so has another incarnation
    assert not limiter.admit(1, 0, 1100)  # 0.5 of a call refilled
    assert limiter.admit(1, 0, 1200)  # 1.0
    assert not limiter.admit(1, 0, 1200)
    assert [limiter.admit(1, 0, 60_000) for _ in range(6)] == [True] * 5 + [False]  # capped at 1 s


def test_read_bytes_debt_blocks_until_repaid() -> None:
    limiter = ShardReadLimiter(calls_per_s=0, bytes_per_s=2 << 20)
    assert limiter.admit(1, 0, 0)
    limiter.charge(1, 0, 10 << 20, 0)  # one 10 MiB response: 8 MiB of debt
    assert not limiter.admit(1, 0, 1000)
    assert not limiter.admit(1, 0, 4000)  # debt repaid to exactly zero: still refused
    assert limiter.admit(1, 0, 4001)
    many = [limiter.admit(1, 0, 4001) for _ in range(100)]
    assert all(many)  # no call limit: small reads pass while the bytes are not in debt


def test_read_limits_off() -> None:
    limiter = ShardReadLimiter(0, 0)
    assert not limiter.enabled
    assert all(limiter.admit(1, 0, 0) for _ in range(1000))
    limiter.charge(1, 0, 1 << 30, 0)
    assert limiter.admit(1, 0, 0)


def test_time_going_back_does_not_refill() -> None:
    limiter = ShardReadLimiter(calls_per_s=1, bytes_per_s=0)
    assert limiter.admit(1, 0, 5000)
    assert not limiter.admit(1, 0, 4000)
    assert not limiter.admit(1, 0, 5999)
    assert limiter.admit(1, 0, 6000)


def test_bucket_table_is_bounded() -> None:
    limiter = ShardReadLimiter(calls_per_s=1, bytes_per_s=0)
    assert limiter.admit(0, 0, 0)
    assert not limiter.admit(0, 0, 0)
    for index in range(1, MAX_BUCKETS + 1):
        limiter.admit(1, index, 0)
    assert limiter.admit(0, 0, 0)  # the table was cleared: full buckets again (errs on admitting)


def test_write_limits() -> None:
    limiter = ShardWriteLimiter(records_per_s=2, bytes_per_s=100)
    assert limiter.admit(1, 0, 60, 0)
    assert not limiter.admit(1, 0, 60, 0)  # bytes short
    assert limiter.admit(1, 0, 40, 0)
    assert not limiter.admit(1, 0, 0, 0)  # records short
    assert limiter.admit(1, 0, 50, 500)  # half a second: 1 record, 50 bytes

"""The peers inside the scenarios: rows beside shardline's, with the ratio shardline / peer.

``ingest``, ``fanout`` and ``latency`` call these after measuring shardline,
when ``Options.peers`` is on. Each peer row carries ``system``, the peer's
figures under the same keys as shardline's row, ``shardline_ratio`` (shardline's
headline figure over the peer's: above 1, shardline is ahead; for latencies
the peer's over shardline's, so that above 1 still means shardline ahead) and
``ratio_of`` (which figure). A peer that cannot run here gives a row with
``unavailable`` (the reason and how to install it); a peer that fails gives
``peer_error``; neither fails the suite.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any

from ..scenario import Options, Row
from . import PeerUnavailable
from . import nats as nats_peer
from . import redis as redis_peer

#: The record size every peer is measured with (as shardline's scenarios).
RECORD_BYTES = 100


def _attempt(system: str, measure: Callable[[], dict[str, Any]]) -> Row:
    try:
        row: Row = dict(measure())
    except PeerUnavailable as exc:
        return {"system": system, "unavailable": str(exc)}
    except Exception as exc:  # a peer's failure is reported, not raised: the suite goes on
        detail = "".join(traceback.format_exception_only(exc)).strip()
        return {"system": system, "peer_error": detail[-500:]}
    row.setdefault("system", system)
    return row


def _ratio(row: Row, ours: float | None, key: str, what: str, *, lower_is_better: bool) -> Row:
    theirs = row.get(key)
    if ours and isinstance(theirs, int | float) and theirs > 0:
        row["shardline_ratio"] = theirs / ours if lower_is_better else ours / theirs
        row["ratio_of"] = what
    return row


def ingest_rows(options: Options, warmup: float, duration: float, ours: float) -> list[Row]:
    """Redis (redis-py + hiredis and redis-benchmark, both fsync modes) and NATS ingest."""
    rows = []
    for fsync in ("always", "everysec"):
        rows.append(
            _attempt(
                f"Redis Streams, redis-py + hiredis (appendfsync {fsync})",
                functools.partial(
                    redis_peer.ingest_python,
                    fsync=fsync,
                    warmup=warmup,
                    duration=duration,
                    tmpdir=options.tmpdir,
                ),
            )
        )
        rows.append(
            _attempt(
                f"Redis Streams, redis-benchmark C client (appendfsync {fsync})",
                functools.partial(
                    redis_peer.ingest_c, fsync=fsync, duration=duration, tmpdir=options.tmpdir
                ),
            )
        )
    rows.append(
        _attempt(
            "NATS JetStream, nats-py",
            lambda: nats_peer.ingest(warmup=warmup, duration=duration, tmpdir=options.tmpdir),
        )
    )
    for row in rows:  # under the columns of shardline's row
        row.setdefault("server_cpu_peak", row.get("server_cpu"))
        row.setdefault("producer_cpu_peak", row.get("client_cpu"))
        if isinstance(row.get("records_per_s"), int | float):
            row.setdefault("mb_per_s", row["records_per_s"] * RECORD_BYTES / 1e6)
    return [_ratio(row, ours, "records_per_s", "records/s", lower_is_better=False) for row in rows]


def fanout_live_rows(
    options: Options, rate: int, readers: int, warmup: float, duration: float, ours: float
) -> list[Row]:
    """Redis XREAD readers and NATS push consumers at shardline's rate and reader count."""
    rows = [
        _attempt(
            "Redis Streams, redis-py XREAD BLOCK readers",
            lambda: redis_peer.fanout_live(
                rate=rate,
                readers=readers,
                warmup=warmup,
                duration=duration,
                tmpdir=options.tmpdir,
            ),
        ),
        _attempt(
            "NATS JetStream, nats-py push consumers",
            lambda: nats_peer.fanout_live(
                rate=rate,
                readers=readers,
                warmup=warmup,
                duration=duration,
                tmpdir=options.tmpdir,
            ),
        ),
    ]
    for row in rows:
        row.setdefault("kind", "live")
        row.setdefault("rate", rate)
        row.setdefault("subscribers", readers)
    return [
        _ratio(row, ours, "delivered_total", "delivered records/s, live", lower_is_better=False)
        for row in rows
    ]


def drain_rows(options: Options, records: int, readers: int, ours: float) -> list[Row]:
    """Redis and NATS readers draining a pre-filled stream."""
    rows = [
        _attempt(
            "Redis Streams, redis-py readers",
            lambda: redis_peer.drain(records=records, readers=readers, tmpdir=options.tmpdir),
        ),
        _attempt(
            "NATS JetStream, nats-py consumers",
            lambda: nats_peer.drain(records=records, readers=readers, tmpdir=options.tmpdir),
        ),
    ]
    for row in rows:
        row.setdefault("kind", "drain")
        row.setdefault("subscribers", readers)
    return [
        _ratio(
            row, ours, "delivered_total", "delivered records/s, pre-filled", lower_is_better=False
        )
        for row in rows
    ]


def latency_rows(
    options: Options, rate: int, readers: int, warmup: float, duration: float, ours: float | None
) -> list[Row]:
    """The latency method with Redis and NATS readers; the ratio is of p99 (peer / shardline)."""
    rows = fanout_live_rows(options, rate, readers, warmup, duration, 0.0)
    for row in rows:
        row.pop("shardline_ratio", None)
        row.pop("ratio_of", None)
        _ratio(row, ours, "p99_ms", f"p99 latency at {rate:,} rec/s", lower_is_better=True)
    return rows

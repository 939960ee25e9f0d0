"""Latency summaries shared by every scenario and peer: percentiles and a CDF.

Latencies are measured from each record's *due* time on a fixed schedule to
its delivery (no coordinated omission); this module only summarises them, so
that shardline and each peer are reported with exactly the same arithmetic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Quantiles stored as the CDF of a row (for the plots): dense in the body, then the tail.
CDF_QUANTILES: tuple[float, ...] = tuple(
    [i / 100 for i in range(0, 100)] + [0.995, 0.999, 0.9995, 0.9999, 1.0]
)


def summarize(latencies_ms: np.ndarray) -> dict[str, Any]:
    """p50/p90/p99/p99.9/max in ms, and ``cdf_ms`` (latency at each of ``CDF_QUANTILES``).

    Empty input gives None for every figure.
    """
    lat = np.asarray(latencies_ms, dtype=np.float64)
    if not lat.size:
        return {
            "p50_ms": None,
            "p90_ms": None,
            "p99_ms": None,
            "p999_ms": None,
            "max_ms": None,
            "cdf_ms": None,
        }
    p50, p90, p99, p999 = np.percentile(lat, [50, 90, 99, 99.9])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "p999_ms": float(p999),
        "max_ms": float(lat.max()),
        "cdf_ms": [round(float(v), 4) for v in np.quantile(lat, CDF_QUANTILES)],
    }


def delivered(reports: list[dict[str, Any]], rate: float, duration: float) -> dict[str, Any]:
    """Fan-out figures from the readers' reports, the same for shardline and every peer.

    Each report has ``records`` (records due inside the measured window that
    the reader got), ``first_ns``/``last_ns`` (when the first and last of them
    arrived) and ``latency_ms``. A reader's rate is its records over the time
    between those arrivals, never less than the window: a reader whose lag
    grows reads slower; a steady lag shows in the latency. ``complete`` is the
    slowest reader's share of the records due.
    """
    per = [
        r["records"] / max(duration, (r["last_ns"] - r["first_ns"]) / 1e9) if r["records"] else 0.0
        for r in reports
    ]
    expected = rate * duration
    lists = [np.asarray(r["latency_ms"], dtype=np.float64) for r in reports]
    return {
        "per_subscriber_min": min(per),
        "per_subscriber_median": float(np.median(per)),
        "delivered_total": sum(per),
        "complete": min(r["records"] for r in reports) / expected if expected else None,
        **summarize(np.concatenate(lists) if lists else np.zeros(0)),
    }

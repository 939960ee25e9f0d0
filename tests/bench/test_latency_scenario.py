"""The ``latency`` scenario end to end at its smoke size: real broker, real processes.

A run shorter than ``fanout.SMOKE_DURATION`` measures two small
configurations; the rows must hold every figure, be JSON, and leave no
process behind.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import report
from bench.latency import CDF_QUANTILES
from bench.scenario import Options
from bench.scenarios import SCENARIOS, latency

from .processes import descendants


def smoke_options(tmp_path: Path) -> Options:
    return Options(
        quick=True,
        duration=0.5,
        warmup=0.3,
        records=5_000,
        progress=False,
        peers=False,
        tmpdir=str(tmp_path),
    )


def test_registered() -> None:
    assert SCENARIOS["latency"] is latency.SCENARIO


def test_smoke_run(tmp_path: Path) -> None:
    result = latency.run(smoke_options(tmp_path))
    assert descendants() == []
    assert list(tmp_path.iterdir()) == []  # the scratch directories are gone

    assert [(r["rate"], r["subscribers"]) for r in result.rows] == list(
        latency.SMOKE_CONFIGURATIONS
    )
    for row in result.rows:
        assert set(row) == {"system", *latency.ROW_KEYS}
        assert row["system"] == "shardline"
        assert row["complete"] >= 0.9
        assert row["failed_records"] == 0
        figures = [row[k] for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms")]
        assert figures[0] > 0
        assert figures == sorted(figures)
        assert len(row["cdf_ms"]) == len(CDF_QUANTILES)
        assert row["cdf_ms"] == sorted(row["cdf_ms"])
        assert row["cdf_ms"][-1] == round(row["max_ms"], 4)
        # Never more than was offered (how much less depends on the machine's load:
        # a lower bound here would be a timing assertion).
        assert 0 < row["delivered_total"] <= 1.05 * row["rate"] * row["subscribers"]
        assert row["server_cpu"] > 0
    json.loads(json.dumps(result.rows))
    assert [goal.target for goal in result.goals] == [latency.GOAL_P99_MS]
    assert "p90 ms" in report.summary("latency", latency.SCENARIO.summary, result)

"""The suite's reporting tools: repetitions folded, compare, plots and the generated page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bench import compare, docs_report, plots, repeat
from bench.latency import CDF_QUANTILES, summarize
from bench.scenario import Column, Goal, ScenarioResult

finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.lists(finite, min_size=1, max_size=9))
def test_a_folded_figure_is_the_median_within_its_spread(values: list[float]) -> None:
    row = repeat.fold_rows([{"x": v, "name": "a", "ok": True} for v in values])
    assert min(values) <= row["x"] <= max(values)
    assert row["name"] == "a" and row["ok"] is True
    assert row["repetitions"] == len(values)
    if len(values) > 1:
        assert row["spread"]["x"] == [min(values), max(values)]


def test_lists_fold_element_wise_and_missing_figures_are_ignored() -> None:
    row = repeat.fold_rows(
        [{"cdf": [1, 5], "p": None}, {"cdf": [3, 1], "p": 2.0}, {"cdf": [2, 3], "p": 4.0}]
    )
    assert row["cdf"] == [2, 3]
    assert row["p"] == 3.0


def _result(value: float, measured: float) -> ScenarioResult:
    return ScenarioResult(
        parameters={"n": 1},
        columns=(Column("rate", "rate"), Column("value", "value", ".1f")),
        rows=[{"rate": 10, "value": value}],
        goals=[Goal("value >= 5", 5.0, measured)],
    )


def test_fold_takes_the_median_goal_and_says_how_many_repetitions() -> None:
    folded = repeat.fold([_result(1.0, 4.0), _result(9.0, 6.0), _result(5.0, 7.0)])
    assert folded.rows[0]["value"] == 5.0
    assert folded.goals[0].measured == 6.0 and folded.goals[0].met is True
    assert folded.parameters["repetitions"] == 3
    assert any("medians of 3 repetitions" in note for note in folded.notes)


def _doc(scenario: str, figures: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "summary": f"the {scenario} scenario",
        "started_utc": "2026-11-26T10:00:00+00:00",
        "command": f"shardline bench {scenario}",
        "options": {"quick": False},
        "machine": {"cpu": "CPU", "cores": 2, "memory_bytes": 2**34, "python": "3.11.7"},
        "code": {"commit": "abc"},
        "columns": [
            {"key": "rate", "title": "rate", "spec": ""},
            {"key": "records_per_s", "title": "records/s", "spec": ",.0f"},
        ],
        "figures": figures,
        "goals": [],
        "notes": [],
        **extra,
    }


def test_compare_prints_ratios_and_labels_rows_by_their_configuration() -> None:
    a = _doc("ingest", [{"rate": 10, "records_per_s": 100.0}])
    b = _doc("ingest", [{"rate": 10, "records_per_s": 150.0}])
    text = "\n".join(compare.lines(a, b))
    assert "rate=10" in text
    assert "100 -> 150  x1.500" in text


def test_compare_main_reads_files(tmp_path: Path, capsys: Any) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_doc("x", [{"rate": 1, "records_per_s": 200.0}])))
    b.write_text(json.dumps(_doc("x", [{"rate": 1, "records_per_s": 100.0}])))
    assert compare.main([str(a), str(b)]) == 0
    assert "x0.500" in capsys.readouterr().out
    assert compare.main([str(a), str(tmp_path / "missing.json")]) == 2


def _latency_rows() -> list[dict[str, Any]]:
    import numpy as np

    rows = []
    for system in ("shardline", "Redis Streams"):
        for subscribers in (1, 10):
            summary = summarize(np.linspace(0.5, 5.0, 1000) * subscribers)
            rows.append({"system": system, "rate": 1000, "subscribers": subscribers, **summary})
    return rows


def test_plots_and_the_page_come_from_the_latest_full_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    fanout = [
        {
            "kind": "live",
            "system": "shardline",
            "rate": 200,
            "subscribers": n,
            "delivered_total": 200.0 * n,
        }
        for n in (1, 2, 5)
    ]
    ingest_rows = [
        {"system": "shardline", "rate": 1, "records_per_s": 400.0},
        {
            "system": "Redis Streams",
            "rate": 1,
            "records_per_s": 100.0,
            "shardline_ratio": 4.0,
            "ratio_of": "records/s",
        },
        {
            "system": "NATS",
            "rate": 1,
            "records_per_s": 800.0,
            "shardline_ratio": 0.5,
            "ratio_of": "records/s",
        },
    ]
    goal = {
        "description": "records/s >= 500",
        "target": 500,
        "measured": 400.0,
        "at_most": False,
        "met": False,
    }
    (results / "ingest-20260101T000000Z.json").write_text(
        json.dumps(_doc("ingest", [{"system": "shardline", "records_per_s": 1.0}]))
    )
    (results / "ingest-20260102T000000Z.json").write_text(
        json.dumps(_doc("ingest", ingest_rows, goals=[goal]))
    )
    quick = _doc("ingest", [{"records_per_s": 2.0}], options={"quick": True})
    (results / "ingest-20260103T000000Z.json").write_text(json.dumps(quick))
    (results / "fanout-20260101T000000Z.json").write_text(json.dumps(_doc("fanout", fanout)))
    (results / "latency-20260101T000000Z.json").write_text(
        json.dumps(_doc("latency", _latency_rows()))
    )
    latest = plots.latest(results, "ingest")
    assert latest is not None and latest[0].name == "ingest-20260102T000000Z.json"

    img = tmp_path / "img"
    made = plots.draw(results, img)
    assert set(made) == {"latency-cdf", "fanout-throughput", "peers"}
    for name, path in made.items():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (img / f"{name}.png").exists()

    page = docs_report.render(results, made)
    assert "| ingest | records/s >= 500 | 500 | 400.00 | **NOT MET** |" in page
    assert "NATS is ahead of shardline on records/s: ratio 0.50 (above 1 where" in page
    assert "![peers](img/peers.png)" in page
    assert "| Redis Streams | 1 | 100 | 4.00 |" in page
    assert "Not run yet:" in page


def test_the_cdf_quantiles_end_at_the_maximum() -> None:
    import numpy as np

    summary = summarize(np.arange(1, 101, dtype=float))
    assert summary["cdf_ms"][-1] == 100.0 == summary["max_ms"]
    assert len(summary["cdf_ms"]) == len(CDF_QUANTILES)
    assert summarize(np.zeros(0))["p99_ms"] is None

"""Smoke tests of the benchmark suite: each existing scenario, tiny, through the runner.

Each run goes through ``bench.runner.main`` as ``shardline bench`` would, with
``--quick`` and the smallest sizes the scenario takes, writes its JSON into a
temporary results directory, and must leave no process behind. The figures
of such tiny runs mean nothing; what is checked is that every scenario runs
end to end and records what a result file promises.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import runner
from bench.scenarios import SCENARIOS

from .processes import descendants

#: Scenario -> the options that make it take seconds.
TINY: dict[str, list[str]] = {
    "log-append": ["--duration", "0.4", "--rounds", "1", "--sizes", "100", "--appenders", "8"],
    "log-read": ["--records", "20000", "--passes", "1"],
    "ingest": ["--duration", "0.5", "--warmup", "0.2"],
    "poll-read": ["--records", "20000", "--passes", "1"],
    "isolation": ["--duration", "0.6", "--warmup", "0.3", "--rounds", "1"],
    "producer": ["--duration", "0.5", "--warmup", "0.2", "--rounds", "1"],
    "group": ["--records", "5000"],
    "functions": ["--records", "5000"],
    "functions-latency": ["--duration", "0.8", "--warmup", "0.2"],
}

DOCUMENT_KEYS = {
    "scenario",
    "summary",
    "command",
    "machine",
    "code",
    "options",
    "parameters",
    "columns",
    "figures",
    "goals",
    "notes",
    "started_utc",
    "finished_utc",
}


def _run(tmp_path: Path, name: str, extra: list[str]) -> dict[str, object]:
    results = tmp_path / "results"
    argv = [name, "--quick", "--no-progress", "--no-peers", "--tmpdir", str(tmp_path)]
    argv += ["--results", str(results), *extra]
    status = runner.main(argv)
    files = sorted(results.glob(f"{name}-2*.json"))
    assert len(files) == 1, files
    doc: dict[str, object] = json.loads(files[0].read_text())
    assert status == 0, doc.get("figures")
    return doc


@pytest.mark.parametrize("name", sorted(TINY))
def test_a_scenario_runs_tiny_and_records_a_result(tmp_path: Path, name: str) -> None:
    doc = _run(tmp_path, name, TINY[name])
    assert doc.keys() >= DOCUMENT_KEYS
    assert doc["scenario"] == name
    assert str(doc["command"]).startswith(f"shardline bench {name} --quick")
    machine = doc["machine"]
    assert isinstance(machine, dict) and machine["cores"] and machine["python"]
    figures = doc["figures"]
    assert isinstance(figures, list) and figures
    columns = doc["columns"]
    assert isinstance(columns, list) and columns
    # Every column of the table names a key that some row has.
    for column in columns:
        assert any(column["key"] in row for row in figures), column
    for goal in doc["goals"]:  # type: ignore[attr-defined]
        assert set(goal) >= {"description", "target", "measured", "met"}
    assert descendants() == []


def test_every_scenario_the_issue_names_is_listed() -> None:
    named = {
        "log-append",
        "log-read",
        "ingest",
        "poll-read",
        "fanout",
        "isolation",
        "producer",
        "group",
        "functions",
        "latency",
        "recovery",
    }
    assert named <= set(SCENARIOS)


def test_an_unknown_scenario_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["no-such-scenario"]) == 2
    assert "unknown scenario" in capsys.readouterr().err

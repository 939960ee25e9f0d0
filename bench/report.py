"""Results out: the JSON file under ``bench/results/`` and the summary table.

A result file is named ``<scenario>-<UTC timestamp>.json`` and holds the
scenario's parameters and figures, the goals checked, the command line and the
machine (``bench.machine``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .scenario import Column, Goal, Row, ScenarioResult

RESULTS = Path(__file__).resolve().parent / "results"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(document), indent=2) + "\n")


def document(
    scenario: str,
    summary: str,
    result: ScenarioResult,
    *,
    started: str,
    finished: str,
    command: str,
    argv: list[str],
    options: dict[str, Any],
    machine: dict[str, Any],
    code: dict[str, Any],
    profiles: list[str],
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "summary": summary,
        "started_utc": started,
        "finished_utc": finished,
        "command": command,
        "argv": argv,
        "options": options,
        "machine": machine,
        "code": code,
        "parameters": result.parameters,
        "columns": [{"key": c.key, "title": c.title, "spec": c.spec} for c in result.columns],
        "figures": result.rows,
        "goals": [goal.as_dict() for goal in result.goals],
        "notes": result.notes,
        "profiles": profiles,
    }


def _spread(row: Row, key: str) -> str:
    """`` ±N%``: half the range over the repetitions relative to the median, when known."""
    bounds = row.get("spread", {}).get(key)
    value = row.get(key)
    if not bounds or not isinstance(value, int | float) or not value:
        return ""
    return f" ±{(bounds[1] - bounds[0]) / 2 / abs(value) * 100:.0f}%"


def cell(row: Row, column: Column) -> str:
    """A row's value for a column, formatted, with its spread over repetitions if any."""
    value = row.get(column.key)
    if value is None:
        return "-"
    try:
        return format(value, column.spec) + _spread(row, column.key)
    except (TypeError, ValueError):
        return str(value)


def table(columns: tuple[Column, ...], rows: list[Row]) -> str:
    cells = [[column.title for column in columns]]
    cells += [[cell(row, column) for column in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in cells
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def goal_line(goal: Goal) -> str:
    verdict = {True: "MET", False: "NOT MET", None: "not measured"}[goal.met]
    measured = "-" if goal.measured is None else f"{goal.measured:,.2f}"
    return f"  [{verdict}] {goal.description}: measured {measured}, target {goal.target:,}"


def summary(scenario: str, text: str, result: ScenarioResult) -> str:
    out = [f"== {scenario}: {text}", table(result.columns, result.rows)]
    if result.goals:
        out.append("goals:")
        out.extend(goal_line(goal) for goal in result.goals)
    for note in result.notes:
        out.append(f"note: {note}")
    for row in result.rows:
        if "error" in row:
            out.append(f"ERROR: {row['error']}")
    return "\n".join(out)

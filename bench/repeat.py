"""Repetitions of a scenario folded into one result: medians, with their spread.

A scenario that does not alternate rounds itself is run ``repeats`` times
(``Scenario.repeats``, ``--repeat N``; once with ``--quick``). Row ``i`` of
every repetition measured the same configuration, so the rows are folded key
by key: numbers become their median and ``row["spread"][key]`` keeps
``[min, max]`` over the repetitions; lists of numbers of the same length (the
latency CDFs) become their element-wise median; anything else is taken from
the first repetition. A goal's measured figure is the median of the
repetitions' figures for it.
"""

from __future__ import annotations

import statistics
from typing import Any

from .scenario import Goal, Row, ScenarioResult


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(values: list[Any]) -> bool:
    return bool(values) and all(_number(v) for v in values)


def fold_rows(versions: list[Row]) -> Row:
    """One row from the same configuration's rows of several repetitions."""
    out: Row = {}
    spread: dict[str, list[float]] = {}
    for key in versions[0]:
        values = [row.get(key) for row in versions]
        present = [v for v in values if v is not None]
        if _numbers(present):
            out[key] = statistics.median(present)
            if len(present) > 1:
                spread[key] = [min(present), max(present)]
        elif (
            present
            and all(isinstance(v, list) for v in present)
            and len({len(v) for v in present}) == 1
            and all(_numbers(v) for v in present)
        ):
            out[key] = [statistics.median(column) for column in zip(*present, strict=True)]
        else:
            out[key] = values[0]
    errors = [row["error"] for row in versions if "error" in row]
    if errors:
        out["error"] = errors[0]
    out["repetitions"] = len(versions)
    if spread:
        out["spread"] = spread
    return out


def fold(results: list[ScenarioResult]) -> ScenarioResult:
    """The repetitions of one scenario as one result (the first one when there is one)."""
    if len(results) == 1:
        return results[0]
    first = results[0]
    rows = [
        fold_rows([result.rows[i] for result in results if i < len(result.rows)])
        for i in range(len(first.rows))
    ]
    goals = []
    for goal in first.goals:
        measured = [
            g.measured
            for result in results
            for g in result.goals
            if g.description == goal.description and g.measured is not None
        ]
        goals.append(
            Goal(
                goal.description,
                goal.target,
                statistics.median(measured) if measured else None,
                goal.at_most,
            )
        )
    notes = list(first.notes)
    notes.append(
        f"figures are medians of {len(results)} repetitions; '±' in a cell is half their "
        "range (max - min) / 2 relative to the median"
    )
    return ScenarioResult(
        parameters={**first.parameters, "repetitions": len(results)},
        columns=first.columns,
        rows=rows,
        goals=goals,
        notes=notes,
    )

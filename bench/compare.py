"""``shardline bench compare A.json B.json``: a change's effect on a scenario, as ratios.

Rows are paired by position (the same scenario measures its configurations
in the same order). A row is labelled by its system and kind, and by the
table's columns whose values are the same in both files (the configuration:
rate, subscribers, size...); every other numeric column is printed as
``A -> B`` with the ratio B / A. Goals are compared the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def _ratio(a: float, b: float) -> str:
    return f"x{b / a:.3f}" if a else "-"


def _columns(doc: dict[str, Any]) -> list[dict[str, str]]:
    columns: list[dict[str, str]] = doc.get("columns") or []
    if columns:
        return columns
    figures = doc.get("figures") or [{}]
    return [{"key": key, "title": key, "spec": ""} for key in figures[0]]


def lines(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The comparison of two result documents, as printable lines."""
    out = [f"compare {a.get('scenario')}: A {a.get('started_utc')}  B {b.get('started_utc')}"]
    if a.get("scenario") != b.get("scenario"):
        out.append(f"warning: different scenarios ({a.get('scenario')} / {b.get('scenario')})")
    for side, doc in (("A", a), ("B", b)):
        code = doc.get("code") or {}
        out.append(f"  {side}: {doc.get('command')}  (commit {str(code.get('commit'))[:10]})")
    columns = _columns(b)
    rows_a, rows_b = a.get("figures") or [], b.get("figures") or []
    if len(rows_a) != len(rows_b):
        out.append(f"warning: {len(rows_a)} rows in A, {len(rows_b)} in B; pairing by position")
    for ra, rb in zip(rows_a, rows_b, strict=False):
        label = [str(rb[k]) for k in ("system", "kind") if k in rb]
        changed = []
        for column in columns:
            key = column["key"]
            va, vb = ra.get(key), rb.get(key)
            if va == vb and va is not None:
                label.append(f"{column['title']}={va}")
            elif _number(va) and _number(vb):
                changed.append(f"    {column['title']}: {_fmt(va)} -> {_fmt(vb)}  {_ratio(va, vb)}")
        out.append("row " + ", ".join(label))
        out.extend(changed or ["    (no numeric change)"])
    goals_a = {g["description"]: g for g in a.get("goals") or []}
    for goal in b.get("goals") or []:
        before = goals_a.get(goal["description"])
        if before and _number(before.get("measured")) and _number(goal.get("measured")):
            out.append(
                f"goal {goal['description']}: {_fmt(before['measured'])} -> "
                f"{_fmt(goal['measured'])}  {_ratio(before['measured'], goal['measured'])}"
            )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="shardline bench compare", description="compare two bench/results JSON files"
    )
    parser.add_argument("a", type=Path, help="the baseline result")
    parser.add_argument("b", type=Path, help="the result to compare with it")
    args = parser.parse_args(argv)
    try:
        a, b = (json.loads(path.read_text()) for path in (args.a, args.b))
    except (OSError, ValueError) as exc:
        print(f"shardline bench compare: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines(a, b)))
    return 0

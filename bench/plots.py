"""Plots of the latest results (matplotlib): PNGs under ``bench/results/``, copies in ``docs/img/``.

- ``latency-cdf``: per offered rate, the CDF of delivery latency for each
  system and number of subscribers (the ``latency`` scenario's ``cdf_ms``).
- ``fanout-throughput``: records/s delivered in total against the number of
  subscribers at the ``fanout`` scenario's highest rate, with the ideal
  (rate x subscribers) and any peer measured beside it.
- ``peers``: the ratio of every peer row of the latest results (rows
  with a ``shardline_ratio``): above 1, shardline is ahead.

``shardline bench plots`` draws them; ``shardline bench report`` draws them
and regenerates ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .latency import CDF_QUANTILES
from .report import RESULTS

DOCS_IMG = Path(__file__).resolve().parent.parent / "docs" / "img"


def latest(results: Path, scenario: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest result of ``scenario``: a full run if there is one, else a quick one."""
    paths = sorted(results.glob(f"{scenario}-2*.json"))
    docs = []
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("scenario") == scenario:
            docs.append((path, doc))
    full = [(p, d) for p, d in docs if not (d.get("options") or {}).get("quick")]
    chosen = full or docs
    return chosen[-1] if chosen else None


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, name: str, results: Path, docs_img: Path | None, stamp: str) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}-{stamp}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if docs_img is not None:
        docs_img.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs_img / f"{name}.png")
    return path


def _label(row: dict[str, Any]) -> str:
    return str(row.get("system") or "shardline")


def latency_cdf(doc: dict[str, Any]) -> Any | None:
    rows = [r for r in doc.get("figures") or [] if r.get("cdf_ms")]
    rates = sorted({r["rate"] for r in rows})
    if not rates:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        for row in (r for r in rows if r["rate"] == rate):
            cdf = row["cdf_ms"]
            quantiles = CDF_QUANTILES[: len(cdf)]
            ax.plot(cdf, quantiles, label=f"{_label(row)}, {row['subscribers']} sub")
        ax.set_xscale("log")
        ax.set_title(f"{rate:,} records/s offered")
        ax.set_xlabel("latency from due time to delivery (ms, log)")
        ax.set_ylabel("fraction of records")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle("Delivery latency CDF (fixed schedule, no coordinated omission)")
    return fig


def fanout_throughput(doc: dict[str, Any]) -> Any | None:
    rows = [r for r in doc.get("figures") or [] if r.get("kind", "live") == "live"]
    if not rows:
        return None
    top = max(r["rate"] for r in rows if r.get("rate"))
    rows = [r for r in rows if r.get("rate") == top and r.get("delivered_total") is not None]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    systems: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        systems.setdefault(_label(row), []).append(row)
    for system, points in systems.items():
        points.sort(key=lambda r: r["subscribers"])
        ax.plot(
            [r["subscribers"] for r in points],
            [r["delivered_total"] for r in points],
            marker="o",
            label=system,
        )
    counts = sorted({r["subscribers"] for r in rows})
    ax.plot(counts, [top * n for n in counts], linestyle="--", color="grey", label="offered x subs")
    ax.set_xticks(counts)
    ax.set_xlabel("subscribers")
    ax.set_ylabel("records/s delivered in total")
    ax.set_title(f"Fan-out at {top:,} records/s offered")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def peer_ratios(docs: list[dict[str, Any]]) -> Any | None:
    bars = []
    for doc in docs:
        for row in doc.get("figures") or []:
            if (
                isinstance(row.get("shardline_ratio"), int | float)
                and row.get("system") != "shardline"
            ):
                what = row.get("ratio_of", "")
                bars.append(
                    (f"{doc['scenario']}: {row['system']} ({what})", row["shardline_ratio"])
                )
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(bars) + 1.2))
    labels = [label for label, _ in bars]
    values = [value for _, value in bars]
    colors = ["tab:green" if v >= 1 else "tab:red" for v in values]
    ax.barh(range(len(bars)), values, color=colors)
    ax.set_yticks(range(len(bars)), labels, fontsize="small")
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("ratio (log; above 1: shardline ahead)")
    ax.set_title("shardline against each peer, same machine, same run")
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:.2f}x", va="center", fontsize="small")
    return fig


def draw(results: Path = RESULTS, docs_img: Path | None = DOCS_IMG) -> dict[str, Path]:
    """Draw every plot the latest results allow; their paths by name."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plt = None
    made: dict[str, Path] = {}
    latest_docs = {
        name: found[1]
        for name in ("ingest", "fanout", "latency")
        if (found := latest(results, name)) is not None
    }
    figures = {
        "latency-cdf": latency_cdf(latest_docs["latency"]) if "latency" in latest_docs else None,
        "fanout-throughput": (
            fanout_throughput(latest_docs["fanout"]) if "fanout" in latest_docs else None
        ),
        "peers": peer_ratios(list(latest_docs.values())),
    }
    for name, fig in figures.items():
        if fig is None:
            continue
        made[name] = _save(fig, name, results, docs_img, stamp)
        plt = plt or _pyplot()
        plt.close(fig)
    return made


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="shardline bench plots")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-docs", action="store_true", help="do not copy into docs/img/")
    args = parser.parse_args(argv)
    made = draw(args.results, None if args.no_docs else DOCS_IMG)
    for name, path in made.items():
        print(f"{name}: {path}")
    if not made:
        print("no results to plot yet: run shardline bench ingest|fanout|latency first")
    return 0

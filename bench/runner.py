"""``shardline bench SCENARIO|all [options]``: run scenarios, write results, print summaries.

Each scenario runs in fresh temporary directories (``--tmpdir`` chooses where;
it should be on the disk being measured, not a tmpfs), then its result goes to
``bench/results/<scenario>-<UTC timestamp>.json`` with the command line and the
machine, and a summary table with the goals met or not is printed, followed by
the command that reproduces it. ``--profile`` adds cProfile profiles of each
scenario's timed sections (all threads): ``.prof`` files beside the JSON and
their top entries printed; profiled figures are slower than real ones.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from . import compare, docs_report, machine, plots, provenance, repeat, report
from .profiling import Profiler, top_entries
from .scenario import Options, Scenario
from .scenarios import SCENARIOS


def _numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas: {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shardline bench", description="run benchmark scenarios and record their figures"
    )
    parser.add_argument(
        "scenario",
        help=f"one of {', '.join(SCENARIOS)}, or 'all', or 'list'; "
        "also: compare A.json B.json, report, plots",
    )
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    parser.add_argument("--duration", type=float, help="seconds measured per configuration")
    parser.add_argument("--warmup", type=float, help="seconds run before measuring")
    parser.add_argument("--records", type=int, help="records to fill (log-read)")
    parser.add_argument("--appenders", type=_numbers, help="concurrent appenders, e.g. 1,8,64")
    parser.add_argument("--sizes", type=_numbers, help="record sizes in bytes, e.g. 100,1024")
    parser.add_argument("--passes", type=int, help="read passes (log-read)")
    parser.add_argument(
        "--rounds", type=int, help="alternating rounds (log-append, producer, isolation)"
    )
    parser.add_argument(
        "--repeat", type=int, help="repetitions of each scenario (default: 3, or 1 when quick)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the raw baselines")
    parser.add_argument(
        "--no-peers",
        action="store_true",
        help="skip the peers (Redis Streams, NATS JetStream, the Kinesis emulators)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--profile", action="store_true", help="cProfile the timed sections")
    parser.add_argument("--tmpdir", help="where data directories go (default: the system's)")
    parser.add_argument("--results", type=Path, default=report.RESULTS, help="results directory")
    return parser


def _now() -> datetime:
    return datetime.now(UTC)


def _run_one(
    scenario: Scenario, options: Options, args: argparse.Namespace, argv: list[str]
) -> bool:
    code = provenance.describe()
    started = _now()
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    repeats = options.repeats or (1 if options.quick else scenario.repeats)
    print(f"-- running {scenario.name} ({scenario.summary})", flush=True)
    result = repeat.fold(
        [
            scenario.run(options)
            for _ in options.steps(range(repeats), f"{scenario.name}, repetitions")
        ]
    )
    finished = _now()
    profiles: list[str] = []
    texts: list[str] = []
    if options.profiler is not None:
        for label, stats in options.profiler.sections:
            path = args.results / f"{scenario.name}-{stamp}-{label}.prof"
            path.parent.mkdir(parents=True, exist_ok=True)
            stats.dump_stats(path)
            profiles.append(str(path))
            for sort in ("cumulative", "tottime"):
                texts.append(f"-- profile {label}, by {sort} ({path.name})")
                texts.append(top_entries(stats, sort))
        options.profiler.sections.clear()
    command = shlex.join(["shardline", "bench", *argv])
    doc = report.document(
        scenario.name,
        scenario.summary,
        result,
        started=started.isoformat(),
        finished=finished.isoformat(),
        command=command,
        argv=list(sys.argv),
        options=options.as_dict(),
        machine=machine.describe(options.tmpdir or tempfile.gettempdir()),
        code=code,
        profiles=profiles,
    )
    out = args.results / f"{scenario.name}-{stamp}.json"
    report.write_json(out, doc)
    for text in texts:
        print(text)
    print(report.summary(scenario.name, scenario.summary, result))
    print(f"result: {out}")
    print(f"command: {command}", flush=True)
    return not any("error" in row for row in result.rows)


def main(argv: list[str]) -> int:
    if argv[:1] == ["compare"]:
        return compare.main(argv[1:])
    if argv[:1] == ["report"]:
        return docs_report.main(argv[1:])
    if argv[:1] == ["plots"]:
        return plots.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.scenario == "list":
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:12}  {scenario.summary}")
        return 0
    if args.scenario == "all":
        chosen = list(SCENARIOS.values())
    elif args.scenario in SCENARIOS:
        chosen = [SCENARIOS[args.scenario]]
    else:
        print(
            f"shardline bench: unknown scenario {args.scenario!r}; "
            f"choose from {', '.join(SCENARIOS)}, all, list",
            file=sys.stderr,
        )
        return 2
    options = Options(
        quick=args.quick,
        duration=args.duration,
        warmup=args.warmup,
        records=args.records,
        appenders=args.appenders,
        sizes=args.sizes,
        passes=args.passes,
        rounds=args.rounds,
        repeats=args.repeat,
        baseline=not args.no_baseline,
        tmpdir=args.tmpdir,
        profiler=Profiler() if args.profile else None,
        progress=not args.no_progress,
        peers=not args.no_peers,
    )
    ok = True
    for scenario in chosen:
        ok = _run_one(scenario, options, args, argv) and ok
    return 0 if ok else 1

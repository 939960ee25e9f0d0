"""Profiles of benchmark sections, across threads.

``Profiler.section(label)`` runs cProfile on the calling thread and on every
thread started inside the section (the log's writer thread among them: a
``threading.setprofile`` hook enables a profiler of its own in each new
thread), and merges them into one ``pstats.Stats``. Scenarios mark their timed
code with ``options.section(label)``; the runner writes each section to a
``.prof`` file and prints its top entries. cProfile's overhead inflates
Python-level calls, so profiled runs are for finding where time goes, not for
figures.

``python -m bench.profiling FILE`` summarizes a py-spy ``--format raw``
(collapsed stacks) recording: the functions with the most samples, by self
and by inclusive share.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any


@dataclass(slots=True)
class Profiler:
    sections: list[tuple[str, pstats.Stats]] = field(default_factory=list)

    @contextlib.contextmanager
    def section(self, label: str) -> Iterator[None]:
        started: list[cProfile.Profile] = []
        lock = threading.Lock()

        def start_in_thread(frame: FrameType, event: str, arg: Any) -> None:
            profile = cProfile.Profile()
            with lock:
                started.append(profile)
            profile.enable()  # replaces this hook for the rest of the thread's life

        main = cProfile.Profile()
        threading.setprofile(start_in_thread)
        main.enable()
        try:
            yield
        finally:
            main.disable()
            threading.setprofile(None)  # type: ignore[arg-type]
            stats = pstats.Stats(main)
            with lock:
                for profile in started:
                    stats.add(profile)
            self.sections.append((label, stats))


def top_entries(stats: pstats.Stats, sort: str, limit: int = 15) -> str:
    """The ``limit`` top lines of ``stats`` sorted by ``sort`` ("cumulative", "tottime")."""
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(limit)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())


_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['name']} ({match['file']})"


def summarize_collapsed(text: str, limit: int = 15, process: str | None = None) -> str:
    """Top functions of a collapsed-stacks recording, by self and by inclusive samples.

    ``process``: only stacks whose process line (``py-spy --subprocesses``)
    contains this text, e.g. ``"broker.cli serve"`` for the server alone.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if process is not None and process not in stack.split(";thread ")[0]:
            continue
        samples = int(count)
        total += samples
        frames = [
            _function(f) for f in stack.split(";") if not f.startswith(("thread ", "process "))
        ]
        if not frames:
            continue
        own[frames[-1]] += samples
        for name in set(frames):
            inclusive[name] += samples
    if total == 0:
        return "no samples"
    out = [f"{total} samples"]
    for title, counter in (("self", own), ("inclusive", inclusive)):
        out.append(f"-- by {title} samples --")
        for name, samples in counter.most_common(limit):
            out.append(f"{100 * samples / total:6.1f}%  {samples:7d}  {name}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="summarize a py-spy raw (collapsed) recording")
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--process", help="only this process's stacks (text in its command)")
    args = parser.parse_args(argv)
    print(summarize_collapsed(Path(args.file).read_text(), args.top, args.process))
    return 0


if __name__ == "__main__":
    sys.exit(main())

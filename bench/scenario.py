"""What a benchmark scenario is: options in, a ``ScenarioResult`` out.

A scenario is a name, a one-line summary and a ``run(options)`` function. It
starts whatever it needs in a fresh temporary directory, measures, removes what
it created, and returns its parameters, one row of figures per configuration
it measured (with the columns the summary table shows), the goals it checked
and free-form notes. Writing the JSON result and printing the table is the
runner's job (``bench.runner``, ``bench.report``), so a scenario never prints
its figures itself.

Adding a scenario: write ``bench/scenarios/<name>.py`` with a module-level
``SCENARIO = Scenario(...)`` and list it in ``bench/scenarios/__init__.py``.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from . import progress as _progress

if TYPE_CHECKING:
    from .profiling import Profiler

T = TypeVar("T")

#: One configuration's figures: JSON-able values by name.
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Options:
    """Command-line choices every scenario understands; None means the scenario's default."""

    quick: bool = False
    duration: float | None = None
    warmup: float | None = None
    records: int | None = None
    appenders: tuple[int, ...] | None = None
    sizes: tuple[int, ...] | None = None
    passes: int | None = None
    rounds: int | None = None
    #: Repetitions of the whole scenario (None: the scenario's own ``repeats``; 1 when quick).
    repeats: int | None = None
    baseline: bool = True
    tmpdir: str | None = None
    profiler: Profiler | None = None
    #: Show a progress bar (``bench.progress``); off in the smoke tests.
    progress: bool = True
    #: Measure the peers (Redis Streams, NATS JetStream) beside shardline where they apply.
    peers: bool = True

    def section(self, label: str) -> contextlib.AbstractContextManager[None]:
        """Profile the enclosed code under ``label`` when profiling is on."""
        if self.profiler is None:
            return contextlib.nullcontext()
        return self.profiler.section(label)

    def timing(
        self, duration: float, warmup: float, quick_duration: float, quick_warmup: float
    ) -> tuple[float, float]:
        """(measured seconds, warm-up seconds): the options' own, else the scenario's defaults."""
        default = quick_duration if self.quick else duration
        return (
            self.duration or default,
            self.warmup if self.warmup is not None else (quick_warmup if self.quick else warmup),
        )

    def steps(self, items: Sequence[T], what: str) -> Iterator[T]:
        """``items`` one by one, counted by the progress bar under ``what``."""
        return _progress.steps(items, what, enabled=self.progress)

    def as_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "duration": self.duration,
            "warmup": self.warmup,
            "records": self.records,
            "appenders": list(self.appenders) if self.appenders else None,
            "sizes": list(self.sizes) if self.sizes else None,
            "passes": self.passes,
            "rounds": self.rounds,
            "repeats": self.repeats,
            "baseline": self.baseline,
            "tmpdir": self.tmpdir,
            "profile": self.profiler is not None,
            "peers": self.peers,
        }


@dataclass(frozen=True, slots=True)
class Column:
    """A column of the summary table: the row key, its title and a format spec."""

    key: str
    title: str
    spec: str = ""


@dataclass(frozen=True, slots=True)
class Goal:
    """A target from the issue, checked against a measured figure (None: not measured).

    The measured figure must reach the target, or stay at or under it when
    ``at_most`` (latencies).
    """

    description: str
    target: float
    measured: float | None
    at_most: bool = False

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        if self.at_most:
            return self.measured <= self.target
        return self.measured >= self.target

    def as_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "target": self.target,
            "at_most": self.at_most,
            "measured": self.measured,
            "met": self.met,
        }


@dataclass(slots=True)
class ScenarioResult:
    parameters: dict[str, Any]
    columns: tuple[Column, ...]
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named measurement; ``repeats``: how often the runner repeats it for medians.

    Scenarios that alternate rounds themselves (and report medians over them)
    say ``repeats=1``.
    """

    name: str
    summary: str
    run: Callable[[Options], ScenarioResult]
    repeats: int = 3


@contextlib.contextmanager
def scratch_directory(options: Options, label: str) -> Iterator[str]:
    """A fresh temporary directory for one measurement, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"shardline-bench-{label}-", dir=options.tmpdir) as d:
        yield d


def ratio(value: float, baseline: float | None) -> float | None:
    if baseline is None or baseline <= 0:
        return None
    return value / baseline

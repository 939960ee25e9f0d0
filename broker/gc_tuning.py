"""The garbage collector's settings for shardline's long-running processes."""

from __future__ import annotations

import gc

#: Container allocations between young collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze what start-up built; collect the young generation every 50,000 allocations.

    For the long-running commands (``serve``, ``worker``): what they allocate
    per request or per record is acyclic and freed by reference counting, so
    the collector finds nothing in it, only rescans it (in the worker, whose
    records in flight are tens of thousands of lists, tuples and dicts, about
    40 % of the process). ``gc.freeze`` takes the modules and classes out of
    every later scan.
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)

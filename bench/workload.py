"""Pre-built benchmark inputs: record lists and stored batch values.

Everything here runs before timing starts, so that the timed loops do no
per-record work beyond what the code under test does itself.
"""

from __future__ import annotations

import random

from broker.log import batch as fmt

#: The arrival time stamped into pre-built values (any fixed value will do).
ARRIVAL_MS = 1_700_000_000_000


def make_records(count: int, size: int, *, seed: int) -> list[tuple[str, bytes]]:
    """``count`` records of ``size`` random bytes, with short distinct partition keys."""
    rng = random.Random(seed)
    blob = rng.randbytes(count * size)
    return [(f"pk-{seed}-{i}", blob[i * size : (i + 1) * size]) for i in range(count)]


def make_value(records: list[tuple[str, bytes]], first_offset: int = 1) -> bytes:
    """The stored value the log writes for one append of ``records`` (``broker.log.batch``)."""
    segment = fmt.pack_segment(records, ARRIVAL_MS)
    return fmt.build_value(first_offset, segment.count, ARRIVAL_MS, ARRIVAL_MS, segment.packed)

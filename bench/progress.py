"""The progress bar a scenario shows while it runs: one step per configuration measured.

tqdm draws it on stderr when installed (the ``bench`` extra); without it, a
line per step is printed instead. Scenarios wrap their loops in
``options.steps(items, what)``; the bar is off when ``Options.progress`` is
False (the smoke tests).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def steps(items: Sequence[T], what: str, *, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` one by one while a bar labelled ``what`` counts them."""
    if not enabled:
        yield from items
        return
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]
    except ImportError:
        for n, item in enumerate(items, 1):
            print(f"   {what}: {n}/{len(items)}", file=sys.stderr, flush=True)
            yield item
        return
    with tqdm(
        total=len(items), desc=f"   {what}", unit="step", file=sys.stderr, leave=False
    ) as bar:
        for item in items:
            bar.set_postfix_str(str(item)[:40])
            yield item
            bar.update(1)

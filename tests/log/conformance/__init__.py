"""A conformance suite for the log: what every implementation of ``Log`` must do.

The pattern is ZODB's ``BasicStorage``: ``LogConformance`` is a base class of
test methods that never names an implementation. A test module subclasses it
(under a ``Test...`` name, so that pytest collects it) and implements
``open_log(path, config, clock)``, returning an async context manager that
opens a log on ``path`` and closes it on exit. Every test opens its log through
``self.opened()``, so it can close it and open it again on the same directory
to check what survives.

Time comes from ``self.clock``, a ``FakeClock`` the tests move by hand: nothing
sleeps and nothing waits for real time. Implementations that can count the
keys they still store for a stream incarnation override ``stored_keys`` so
that deletion is checked down to the storage; the default skips that part.
"""

from __future__ import annotations

from .base import FakeClock, make_records, offsets, payloads, read_all
from .durability import LeaseAndReopenTests
from .reads import ReadTests
from .reshaping import RetentionAndReshardingTests
from .streams import StreamTests

__all__ = ["FakeClock", "LogConformance", "make_records", "offsets", "payloads", "read_all"]


class LogConformance(StreamTests, ReadTests, RetentionAndReshardingTests, LeaseAndReopenTests):
    """The suite. Subclass it and implement ``open_log``; see the module docstring."""

"""The durable sharded log on LMDB.

``open_log(path)`` gives a ``Log``: async writes through one group-commit
writer, synchronous short reads. The storage format is specified in
``batch.py`` (values) and ``keys.py`` (keys); the write path in ``store.py``
and ``writer.py``; reads in ``reader.py``; the catalog's transitions in
``catalog.py``; idempotent producers in ``producers.py``.
"""

from __future__ import annotations

from .env import EnvConfig
from .producers import LastBatch, Producer, ProducerStamp
from .reader import ReadResult, RecordChunk, StoredBatch
from .store import AppendResult, CommitReport, CommittedBatch, LogConfig
from .writer import Log, open_log, wall_clock_ms

__all__ = [
    "AppendResult",
    "CommitReport",
    "CommittedBatch",
    "EnvConfig",
    "LastBatch",
    "Log",
    "LogConfig",
    "Producer",
    "ProducerStamp",
    "ReadResult",
    "RecordChunk",
    "StoredBatch",
    "open_log",
    "wall_clock_ms",
]

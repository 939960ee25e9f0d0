"""The group commit: one writer thread per log.

Trio tasks hand operations to ``GroupCommitter.submit`` (a put on a C-level
queue, never a wait). The writer thread takes *everything* queued at once,
applies it with ``LogStore.commit`` in one LMDB write transaction and one
durable commit, and hands the finished operations back to the trio thread
through the trio token (``run_sync_soon``), where their waiters wake. While a
commit is in flight, new operations queue for the next one: the more callers,
the more records each fsync carries, with no timer and no polling.

The thread also runs maintenance (retention trims, chunked deletions of
dropped streams) inside a commit every ``maintenance_interval`` seconds, and
in every commit while deletions are pending, so that it proceeds in bounded
chunks between producers' appends.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import trio

from ..errors import InternalFailureError
from .store import AppendOp, CommitReport, LogStore, Op

OnCommit = Callable[[list[AppendOp | Op], CommitReport], None]


class GroupCommitter:
    """The writer thread and its queue. ``submit`` from the trio thread only."""

    def __init__(
        self,
        store: LogStore,
        clock: Callable[[], int],
        token: trio.lowlevel.TrioToken,
        on_commit: OnCommit,
        maintenance_interval: float,
    ) -> None:
        self._store = store
        self._clock = clock
        self._token = token
        self._on_commit = on_commit
        self._interval = maintenance_interval
        # A C-level queue: the cheapest hand-off and wake-up between threads.
        self._queue: queue.SimpleQueue[AppendOp | Op | None] = queue.SimpleQueue()
        # Each counter is written by one thread only; their difference is the queue's size.
        # ``_force_maintenance`` is the writer thread's own (pending deletions).
        self._submitted_bytes = 0
        self._taken_bytes = 0
        self._force_maintenance = bool(store.drops)
        self._thread = threading.Thread(target=self._main, name="shardline-log-writer", daemon=True)
        self._thread.start()

    @property
    def queued_bytes(self) -> int:
        """Bytes queued and not yet taken by the writer thread."""
        return self._submitted_bytes - self._taken_bytes

    def submit(self, op: AppendOp | Op) -> None:
        self._submitted_bytes += op.nbytes
        self._queue.put(op)

    def stop(self) -> None:
        """Ask the thread to finish what is queued and exit; ``join`` waits for it."""
        self._queue.put(None)

    def join(self) -> None:
        self._thread.join()

    def _take(self, next_maintenance: float) -> tuple[list[AppendOp | Op], bool] | None:
        """Wait for work; return everything queued and whether maintenance is forced.

        None once ``stop`` was called and everything before it was taken.
        """
        ops: list[AppendOp | Op] = []
        stopping = False
        if not self._force_maintenance:
            try:
                first = self._queue.get(timeout=max(0.0, next_maintenance - time.monotonic()))
            except queue.Empty:
                first = None
            else:
                if first is None:
                    stopping = True
                else:
                    ops.append(first)
        while True:
            try:
                op = self._queue.get_nowait()
            except queue.Empty:
                break
            if op is None:
                stopping = True
            else:
                ops.append(op)
        self._taken_bytes += sum(op.nbytes for op in ops)
        if stopping and not ops:
            return None
        if stopping:
            self._queue.put(None)
        forced = self._force_maintenance or any(isinstance(op, Op) and op.maintain for op in ops)
        self._force_maintenance = False
        return ops, forced

    def _main(self) -> None:
        next_maintenance = time.monotonic() + self._interval
        while True:
            taken = self._take(next_maintenance)
            if taken is None:
                return
            ops, forced = taken
            now = time.monotonic()
            maintain = forced or now >= next_maintenance
            if maintain:
                next_maintenance = now + self._interval
            started = time.perf_counter()
            try:
                report = self._store.commit(ops, self._clock(), maintain=maintain)
            except Exception as exc:  # a bug: fail this group loudly, keep serving
                error = InternalFailureError(f"the log failed to commit: {exc!r}")
                for op in ops:
                    op.error, op.result = error, None
                report = CommitReport()
            report.operations = len(ops)
            report.seconds = time.perf_counter() - started
            if report.more_maintenance or self._store.drops:
                self._force_maintenance = True
            if not ops and not report.batches:
                continue
            try:
                self._token.run_sync_soon(self._on_commit, ops, report)
            except trio.RunFinishedError:
                return

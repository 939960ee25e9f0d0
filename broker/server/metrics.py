"""The server's metrics and their Prometheus text exposition.

Counters, gauges and histograms kept as plain numbers (the hot path adds to a
dict entry or a list slot, nothing more) and rendered in the Prometheus text
format (version 0.0.4) on ``GET /metrics``:

- ``shardline_requests_total{operation, outcome}``: outcome is ``ok`` or the
  error's wire name; ``shardline_request_duration_seconds{operation}`` is a
  histogram of the time from the decoded body to the encoded answer (for
  ``PutRecords`` that includes the durable commit, so it is the commit latency
  a producer sees);
- records and bytes in (``PutRecord``/``PutRecords``: acknowledged records,
  request body bytes) and out (``GetRecords``: records returned, response body
  bytes), counted once per request from the request and response maps;
- per-shard gauges read from the log's tails at scrape time:
  ``shardline_shard_latest_offset`` (the newest record's offset; the sequence
  number is ``(incarnation << 96) | (shard index << 64) | offset``, shown by
  ``shardline_stream_incarnation``, because a 128-bit sequence number does not
  survive a float64 sample value) and ``shardline_shard_trim_horizon_offset``;
- the log's commits (a commit listener): commits, records committed, and
  histograms of records and bytes per stored batch;
- connections open, accepted and refused; socket bytes in and out.

``prometheus-client`` is not used at run time: its labelled children take a
lock and a label-tuple lookup per update, and the per-shard gauges would need
a custom collector anyway; the exposition here is a page of code. The tests
check the output with ``prometheus-client``'s own parser. Other layers can
contribute lines through ``extra_sources`` (callables returning exposition
text), so the fan-out's metrics can join without this module importing them.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import ResourceNotFoundError
from ..log import CommitReport, Log
from ..model import shard_id
from ..operations.base import Prepared, Result, Streamed

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Request latency buckets, seconds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Records per stored batch.
BATCH_RECORD_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
#: Bytes per stored batch.
BATCH_BYTE_BUCKETS = tuple(float(1 << n) for n in range(8, 25, 2))
#: Seconds per durable commit (its sync is most of it).
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
#: Operations (appends, stream changes, ...) per commit.
COMMIT_OPERATION_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape(value)}"' for name, value in pairs)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """Fixed upper bounds; ``observe`` is one bisect and three additions."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: Sequence[tuple[str, str]] = ()) -> list[str]:
        out = []
        cumulative = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            le = _labels((*labels, ("le", _number(float(bound)))))
            out.append(f"{name}_bucket{le} {cumulative}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.total)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


@dataclass
class ServerMetrics:
    #: (operation, outcome) -> count; outcome is "ok" or the error's wire name.
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    #: operation -> latency histogram (seconds).
    latency: dict[str, Histogram] = field(default_factory=dict)
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    records_in: int = 0
    record_bytes_in: int = 0
    records_out: int = 0
    record_bytes_out: int = 0
    commits: int = 0
    committed_records: int = 0
    batch_records: Histogram = field(default_factory=lambda: Histogram(BATCH_RECORD_BUCKETS))
    batch_bytes: Histogram = field(default_factory=lambda: Histogram(BATCH_BYTE_BUCKETS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(COMMIT_BUCKETS))
    commit_operations: Histogram = field(
        default_factory=lambda: Histogram(COMMIT_OPERATION_BUCKETS)
    )
    log: Log | None = None
    extra_sources: list[Callable[[], str]] = field(default_factory=list)

    def count_request(self, operation: str, outcome: str) -> None:
        key = (operation, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_success(
        self,
        operation: str,
        seconds: float,
        request_bytes: int,
        result: Result,
        response_bytes: int,
    ) -> None:
        """One successful operation: outcome, latency, and records in or out."""
        key = (operation, "ok")
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(operation)
        if histogram is None:
            histogram = self.latency[operation] = Histogram(LATENCY_BUCKETS)
        histogram.observe(seconds)
        if isinstance(result, Streamed):
            return
        if isinstance(result, Prepared):
            if operation == "PutRecords":
                self.records_in += result.record_count
                self.record_bytes_in += request_bytes
            elif operation == "GetRecords":
                self.records_out += result.record_count
                self.record_bytes_out += response_bytes
        elif operation == "PutRecords":
            records = result.get("Records")
            failed = result.get("FailedRecordCount")
            if isinstance(records, list) and isinstance(failed, int):
                self.records_in += len(records) - failed
            self.record_bytes_in += request_bytes
        elif operation == "PutRecord":
            self.records_in += 1
            self.record_bytes_in += request_bytes
        elif operation == "GetRecords":
            records = result.get("Records")
            if isinstance(records, list):
                self.records_out += len(records)
            self.record_bytes_out += response_bytes

    def attach_log(self, log: Log) -> None:
        """Read per-shard gauges from ``log`` at scrape time and listen to its commits."""
        if self.log is log:
            return
        self.log = log
        log.add_commit_listener(self.on_commit)

    def on_commit(self, report: CommitReport) -> None:
        self.commits += 1
        if report.operations:
            self.commit_seconds.observe(report.seconds)
            self.commit_operations.observe(report.operations)
        for batch in report.batches:
            self.committed_records += batch.count
            self.batch_records.observe(batch.count)
            self.batch_bytes.observe(len(batch.value))

    def render(self) -> str:
        lines = _header("shardline_requests_total", "counter", "Requests by operation and outcome.")
        for (operation, outcome), count in sorted(self.requests.items()):
            labels = _labels((("operation", operation), ("outcome", outcome)))
            lines.append(f"shardline_requests_total{labels} {count}")
        lines += _header(
            "shardline_request_duration_seconds",
            "histogram",
            "Time to answer a successful operation (PutRecords: including the durable commit).",
        )
        for operation, histogram in sorted(self.latency.items()):
            lines += histogram.lines(
                "shardline_request_duration_seconds", (("operation", operation),)
            )
        for name, kind, help_text, value in (
            ("connections_open", "gauge", "Open client connections.", self.connections_open),
            ("connections_total", "counter", "Accepted connections.", self.connections_total),
            (
                "connections_refused_total",
                "counter",
                "Connections refused at the connection limit.",
                self.connections_refused,
            ),
            ("received_bytes_total", "counter", "Bytes read from sockets.", self.bytes_in),
            ("sent_bytes_total", "counter", "Bytes written to sockets.", self.bytes_out),
            (
                "records_in_total",
                "counter",
                "Records acknowledged by PutRecord and PutRecords.",
                self.records_in,
            ),
            (
                "record_bytes_in_total",
                "counter",
                "Request body bytes of successful PutRecord and PutRecords calls.",
                self.record_bytes_in,
            ),
            ("records_out_total", "counter", "Records returned by GetRecords.", self.records_out),
            (
                "record_bytes_out_total",
                "counter",
                "Response body bytes of successful GetRecords calls.",
                self.record_bytes_out,
            ),
            ("log_commits_total", "counter", "Durable commits of the log.", self.commits),
            (
                "log_committed_records_total",
                "counter",
                "Records stored by the log's commits.",
                self.committed_records,
            ),
        ):
            lines += _header(f"shardline_{name}", kind, help_text)
            lines.append(f"shardline_{name} {value}")
        lines += _header(
            "shardline_log_batch_records", "histogram", "Records per stored batch (per commit)."
        )
        lines += self.batch_records.lines("shardline_log_batch_records")
        lines += _header("shardline_log_batch_bytes", "histogram", "Bytes per stored batch.")
        lines += self.batch_bytes.lines("shardline_log_batch_bytes")
        lines += _header(
            "shardline_log_commit_seconds",
            "histogram",
            "Time of a durable commit in the writer thread: staging its values and the sync.",
        )
        lines += self.commit_seconds.lines("shardline_log_commit_seconds")
        lines += _header(
            "shardline_log_commit_operations",
            "histogram",
            "Operations (appends from requests, stream changes) grouped into one commit.",
        )
        lines += self.commit_operations.lines("shardline_log_commit_operations")
        if self.log is not None:
            lines += _shard_lines(self.log)
        text = "\n".join(lines) + "\n"
        for source in self.extra_sources:
            text += source()
        return text


def _shard_lines(log: Log) -> list[str]:
    """Per-stream and per-shard gauges from the log's tails (in memory; no LMDB read)."""
    incarnations: list[str] = []
    latest: list[str] = []
    horizons: list[str] = []
    for name in log.list_streams():
        try:
            desc = log.describe(name)
        except ResourceNotFoundError:  # deleted between the listing and the look-up
            continue
        incarnations.append(
            f"shardline_stream_incarnation{_labels((('stream', name),))} {desc.incarnation}"
        )
        for shard in desc.shards:
            tail = log.tail(name, shard.index)
            labels = _labels((("stream", name), ("shard", shard_id(shard.index))))
            latest.append(f"shardline_shard_latest_offset{labels} {tail.next_offset - 1}")
            horizons.append(f"shardline_shard_trim_horizon_offset{labels} {tail.horizon}")
    return [
        *_header(
            "shardline_stream_incarnation",
            "gauge",
            "Incarnation of each stream (bits 96 and up of its sequence numbers).",
        ),
        *incarnations,
        *_header(
            "shardline_shard_latest_offset",
            "gauge",
            "Offset of the newest record of each shard (0: none yet); the sequence number "
            "is (incarnation << 96) | (shard index << 64) | offset.",
        ),
        *latest,
        *_header(
            "shardline_shard_trim_horizon_offset",
            "gauge",
            "Offset of the oldest record still stored in each shard.",
        ),
        *horizons,
    ]

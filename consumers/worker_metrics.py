"""The worker's own ``/metrics``: invocations, errors, retries, records, batch sizes, IteratorAge.

Per mapping (label ``mapping``, its UUID), in Prometheus' text format with
the broker's own histogram code (``broker.server.metrics``). ``serve_metrics``
answers ``GET /metrics`` over HTTP/1.1 (h11, which Prometheus speaks; the
worker has no other HTTP server), one request per connection.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import h11
import trio

from broker.server.metrics import (
    BATCH_RECORD_BUCKETS,
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    Histogram,
    _header,
    _labels,
)

#: Invocation durations, seconds: functions run far longer than requests.
DURATION_BUCKETS = (*LATENCY_BUCKETS, 30.0, 60.0, 300.0, 900.0)
MAX_REQUEST_BYTES = 16 * 1024


@dataclass
class _MappingFigures:
    invocations: int = 0
    errors: int = 0
    retries: int = 0
    records: int = 0
    discarded_records: int = 0
    restarts: int = 0
    iterator_age_ms: float = 0.0
    batch_records: Histogram = field(default_factory=lambda: Histogram(BATCH_RECORD_BUCKETS))
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BUCKETS))


class WorkerMetrics:
    """What the worker's mappings did; updated by ``MappingRunner``, read by ``render``."""

    def __init__(self) -> None:
        self.mappings: defaultdict[str, _MappingFigures] = defaultdict(_MappingFigures)

    def observe_invocation(
        self,
        mapping: str,
        *,
        records: int,
        seconds: float,
        ok: bool,
        retry: bool,
        iterator_age_ms: float | None,
    ) -> None:
        figures = self.mappings[mapping]
        figures.invocations += 1
        figures.records += records
        figures.errors += not ok
        figures.retries += retry
        figures.batch_records.observe(records)
        figures.duration.observe(seconds)
        if iterator_age_ms is not None:
            figures.iterator_age_ms = max(0.0, iterator_age_ms)

    def observe_discard(self, mapping: str, records: int) -> None:
        self.mappings[mapping].discarded_records += records

    def observe_restart(self, mapping: str) -> None:
        self.mappings[mapping].restarts += 1

    def render(self) -> str:
        counters = (
            ("invocations", "function invocations"),
            ("errors", "invocations that returned a function error"),
            ("retries", "invocations that retried records already invoked"),
            ("records", "records handed to the function"),
            ("discarded_records", "records discarded to the OnFailure destination"),
            ("restarts", "times a mapping's runner restarted after an error"),
        )
        lines: list[str] = []
        for name, help_text in counters:
            metric = f"shardline_worker_{name}_total"
            lines += _header(metric, "counter", help_text)
            for mapping, figures in sorted(self.mappings.items()):
                lines.append(f"{metric}{_labels([('mapping', mapping)])} {getattr(figures, name)}")
        metric = "shardline_worker_iterator_age_milliseconds"
        lines += _header(metric, "gauge", "age of the last record of the last batch (IteratorAge)")
        for mapping, figures in sorted(self.mappings.items()):
            lines.append(f"{metric}{_labels([('mapping', mapping)])} {figures.iterator_age_ms}")
        for attribute, metric, help_text in (
            ("batch_records", "shardline_worker_batch_records", "records per invocation"),
            ("duration", "shardline_worker_invocation_seconds", "invocation durations"),
        ):
            lines += _header(metric, "histogram", help_text)
            for mapping, figures in sorted(self.mappings.items()):
                lines += getattr(figures, attribute).lines(metric, [("mapping", mapping)])
        return "\n".join(lines) + "\n"


async def _answer(stream: trio.SocketStream, metrics: WorkerMetrics) -> None:
    connection = h11.Connection(h11.SERVER)
    with trio.move_on_after(10):
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(MAX_REQUEST_BYTES)
                connection.receive_data(data)
                if not data:
                    await stream.aclose()
                    return
                continue
            if isinstance(event, h11.Request):
                break
            await stream.aclose()
            return
        ok = event.method == b"GET" and event.target.split(b"?")[0] == b"/metrics"
        body = metrics.render().encode() if ok else b"not found: GET /metrics\n"
        headers = [
            ("content-type", CONTENT_TYPE if ok else "text/plain"),
            ("content-length", str(len(body))),
            ("connection", "close"),
        ]
        out = connection.send(h11.Response(status_code=200 if ok else 404, headers=headers))
        out = (out or b"") + (connection.send(h11.Data(data=body)) or b"")
        out += connection.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
    await stream.aclose()


async def serve_metrics(
    metrics: WorkerMetrics,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``host:port`` (0: any free port, reported to ``start``)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await _answer(stream, metrics)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(handle, listeners)  # type: ignore[arg-type]

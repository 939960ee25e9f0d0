"""The server's counters and their Prometheus text exposition.

A handful of counters and gauges kept as plain integers (the hot path adds to
a dict entry, nothing more) and rendered in the Prometheus text format
(version 0.0.4) on ``GET /metrics``. ``prometheus-client`` is not used: for
these few series it would add a dependency and a registry lookup per request
for what is twenty lines here. Other layers can contribute lines through
``extra_sources`` (callables returning exposition text), so the log's and the
fan-out's metrics can join without this module importing them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass
class ServerMetrics:
    #: (operation, outcome) -> count; outcome is "ok" or the error's wire name.
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    extra_sources: list[Callable[[], str]] = field(default_factory=list)

    def count_request(self, operation: str, outcome: str) -> None:
        key = (operation, outcome)
        self.requests[key] = self.requests.get(key, 0) + 1

    def render(self) -> str:
        lines = [
            "# HELP shardline_requests_total Requests by operation and outcome.",
            "# TYPE shardline_requests_total counter",
        ]
        for (operation, outcome), count in sorted(self.requests.items()):
            lines.append(
                f'shardline_requests_total{{operation="{_escape(operation)}",'
                f'outcome="{_escape(outcome)}"}} {count}'
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
        ):
            lines.append(f"# HELP shardline_{name} {help_text}")
            lines.append(f"# TYPE shardline_{name} {kind}")
            lines.append(f"shardline_{name} {value}")
        text = "\n".join(lines) + "\n"
        for source in self.extra_sources:
            text += source()
        return text

"""The Redis Streams peer: tiny real runs against Debian's redis-server, nothing left behind.

Skipped, with the reason, when redis-server, redis-benchmark or the Python
clients are not installed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from bench.peers import redis as peer

pytestmark = pytest.mark.skipif(peer.available() is not None, reason=str(peer.available()))


def _children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc; zombies count as left behind)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def nothing_left() -> Iterator[None]:
    """After the test: no child process of the test's process, started during it, remains."""
    before = set(_children_of(os.getpid()))
    yield
    assert set(_children_of(os.getpid())) - before == set()


def _checked(row: dict[str, Any]) -> dict[str, Any]:
    assert _gone(row["server_pid"]), "redis-server is still running"
    return row


def test_server_runs_inside_its_context_and_stops_after(nothing_left: None) -> None:
    import redis

    with tempfile.TemporaryDirectory() as directory:
        with peer.redis_server(directory, "everysec") as server:
            pid = server.process.pid
            with redis.Redis(host="127.0.0.1", port=server.port) as client:
                assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
                assert client.config_get("save") == {"save": ""}
            assert server.cpu_seconds() is not None
        assert os.path.isdir(os.path.join(directory, "appendonlydir"))
    assert _gone(pid)


def test_an_unknown_fsync_policy_is_refused(nothing_left: None) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        pytest.raises(ValueError),
        peer.redis_server(directory, "sometimes"),
    ):
        pass


def test_ingest_python_counts_only_acknowledged_records(nothing_left: None) -> None:
    row = _checked(peer.ingest_python(fsync="always", warmup=0.1, duration=0.3, connections=1))
    assert row["records_per_s"] > 0
    assert row["requests_per_s"] == pytest.approx(row["records_per_s"] / 500)
    assert row["verified"] is True
    assert row["errors"] == 0
    assert row["hiredis"] is True
    assert row["server_cpu"] is not None


def test_ingest_c_reads_redis_benchmark_csv(nothing_left: None) -> None:
    row = _checked(peer.ingest_c(fsync="everysec", duration=0.1, clients=2, batch=50))
    assert row["records_per_s"] > 0
    assert row["verified"] is True
    assert row["records"] % (2 * 50) == 0


def test_fanout_live_delivers_every_record_to_every_reader(nothing_left: None) -> None:
    row = _checked(peer.fanout_live(rate=2_000, readers=2, warmup=0.3, duration=1.0))
    assert row["subscribers"] == 2
    assert row["complete"] >= 0.99
    assert row["p50_ms"] > 0
    assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["failed_records"] == 0
    assert row["delivered_total"] == pytest.approx(
        row["per_subscriber_min"] + row["per_subscriber_median"], rel=0.05
    )
    assert len(row["cdf_ms"]) > 100


def test_drain_reads_the_whole_stream_in_every_reader(nothing_left: None) -> None:
    row = _checked(peer.drain(records=5_000, readers=2))
    assert row["reads"] == [5_000, 5_000]
    assert row["delivered_total"] > 0
    assert row["delivered_total"] == pytest.approx(2 * row["per_subscriber_min"])


def test_drain_with_xrange_reads_the_same(nothing_left: None) -> None:
    row = _checked(peer.drain(records=25_000, readers=1, command="xrange"))
    assert row["reads"] == [25_000]


def test_a_failing_child_stops_everything(nothing_left: None) -> None:
    # At rate 0 the producer child fails at once (no schedule): the readers blocked in
    # XREAD and the server must still be stopped.
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        peer.fanout_live(rate=0, readers=2, warmup=0.1, duration=0.1)

"""The NATS JetStream peer: tiny real runs against Debian's nats-server, nothing left behind.

Skipped, with the reason, when nats-server or nats-py is not installed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from bench.peers import PeerUnavailable
from bench.peers import nats as peer
from bench.peers import nats_wire as wire

from .processes import descendants

pytestmark = pytest.mark.skipif(peer.available() is not None, reason=str(peer.available()))


def _gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


@pytest.fixture
def nothing_left() -> Iterator[None]:
    """After the test: no process started during it below the test's process remains."""
    before = set(descendants())
    yield
    assert set(descendants()) - before == set()


def _checked(row: dict[str, Any]) -> dict[str, Any]:
    assert _gone(row["server_pid"]), "nats-server is still running"
    return row


def test_server_runs_jetstream_inside_its_context_and_stops_after(nothing_left: None) -> None:
    with tempfile.TemporaryDirectory() as directory:
        with peer.nats_server(directory) as server:
            pid = server.process.pid
            wire.create_stream(server.port, "probe")
            assert wire.stream_messages(server.port, "probe") == 0
            assert server.cpu_seconds() is not None
        # The file store went where it was told.
        assert os.path.isdir(os.path.join(directory, "jetstream"))
    assert _gone(pid)


def test_the_wire_client_raises_a_jetstream_api_error(nothing_left: None) -> None:
    with tempfile.TemporaryDirectory() as directory, peer.nats_server(directory) as server:
        with pytest.raises(RuntimeError, match=r"STREAM\.INFO\.missing"):
            wire.stream_messages(server.port, "missing")
        # An answer that is not an error comes back as JSON.
        wire.create_stream(server.port, "present")
        assert wire.stream_messages(server.port, "present") == 0


def test_an_unknown_fsync_policy_is_refused(nothing_left: None) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        pytest.raises(ValueError),
        peer.nats_server(directory, "sometimes"),
    ):
        pass


def test_fsync_always_runs_where_the_server_supports_it_and_is_refused_elsewhere(
    nothing_left: None,
) -> None:
    if peer.supports_sync_always():
        row = _checked(peer.ingest(warmup=0.1, duration=0.3, fsync="always"))
        assert row["verified"] is True
        assert "sync_interval always" in row["durability"]
    else:
        with pytest.raises(PeerUnavailable, match="sync_interval"):
            peer.ingest(warmup=0.1, duration=0.3, fsync="always")


def test_ingest_counts_only_acknowledged_records(nothing_left: None) -> None:
    row = _checked(peer.ingest(warmup=0.1, duration=0.3))
    assert row["records_per_s"] > 0
    assert row["requests_per_s"] == pytest.approx(row["records_per_s"] / 500)
    assert row["verified"] is True
    assert row["errors"] == 0
    assert row["server_cpu"] is not None
    assert row["client_cpu"] > 0
    assert peer.server_version() in row["durability"]
    assert row["system"].startswith("NATS JetStream, nats-py (")


def test_fanout_live_delivers_every_record_to_every_reader(nothing_left: None) -> None:
    row = _checked(peer.fanout_live(rate=2_000, readers=2, warmup=0.3, duration=1.0))
    assert row["subscribers"] == 2
    assert row["complete"] >= 0.99
    assert row["p50_ms"] > 0
    assert row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert row["failed_records"] == 0
    assert row["slow_consumer_drops"] == 0
    assert row["delivered_total"] == pytest.approx(
        row["per_subscriber_min"] + row["per_subscriber_median"], rel=0.05
    )
    assert len(row["cdf_ms"]) > 100


def test_drain_reads_the_whole_stream_in_every_reader(nothing_left: None) -> None:
    row = _checked(peer.drain(records=5_000, readers=2))
    assert row["reads"] == [5_000, 5_000]
    assert row["slow_consumer_drops"] == 0
    assert row["delivered_total"] > 0
    assert row["delivered_total"] == pytest.approx(2 * row["per_subscriber_min"])


def test_a_failing_child_stops_everything(nothing_left: None) -> None:
    # At rate 0 the producer child fails at once (no schedule): the readers waiting for
    # records and the server must still be stopped.
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        peer.fanout_live(rate=0, readers=2, warmup=0.1, duration=0.1)

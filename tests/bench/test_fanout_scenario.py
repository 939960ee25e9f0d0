"""The ``fanout`` scenario end to end at its smoke size, and the drain's event reading.

A run shorter than ``fanout.SMOKE_DURATION`` measures one live configuration
and a drain of ``records`` by two subscribers: every subscriber must read
exactly the records stored, the rows must be JSON with the table's cells
filled where they apply, and no process may be left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench import report
from bench.latency import CDF_QUANTILES
from bench.scenario import Options
from bench.scenarios import fanout, fanout_clients
from broker.fanout.events import encode_error, encode_heartbeat, encode_records

from .processes import descendants

FIRST = 49_000_000_000_000_000_000_000_000_001

LIVE_KEYS = {
    "system",
    "kind",
    "rate",
    "subscribers",
    "slow",
    "per_subscriber_min",
    "per_subscriber_median",
    "delivered_total",
    "complete",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "cdf_ms",
    "server_cpu",
    "server_anon_mb",
    "buffered_mb",
    "late_groups",
    "failed_records",
}
DRAIN_KEYS = {
    "system",
    "kind",
    "records",
    "subscribers",
    "per_subscriber_min",
    "delivered_total",
    "seconds",
    "server_cpu",
    "reads",
    "subscriptions",
    "fill_s",
}


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=300), st.integers(0, 10**6))
def test_records_and_continuation_read_from_the_wire(datas: list[bytes], behind: int) -> None:
    # Data that holds the continuation key's bytes must not be taken for it.
    datas[0] += msgpack.packb("ContinuationSequenceNumber") + msgpack.packb("7")
    payload = msgpack.packb([[1_764_000_000_000, "k", data] for data in datas])
    last = FIRST + len(datas) - 1
    event = encode_records(FIRST, payload, last, behind)
    assert fanout_clients.records_in(event) == len(datas)
    assert fanout_clients.continuation(event) == str(last)


def test_other_events_carry_no_records() -> None:
    assert fanout_clients.records_in(encode_heartbeat(FIRST, 0)) == 0
    with pytest.raises(RuntimeError, match="ResourceInUseException"):
        fanout_clients.records_in(encode_error("ResourceInUseException", "taken over"))


def test_smoke_run(tmp_path: Path) -> None:
    records = 5_000
    options = Options(
        quick=True,
        duration=0.5,
        warmup=0.3,
        records=records,
        progress=False,
        peers=False,
        tmpdir=str(tmp_path),
    )
    result = fanout.run_fanout(options)
    assert descendants() == []
    assert list(tmp_path.iterdir()) == []

    live = [row for row in result.rows if row["kind"] == "live"]
    (drained,) = [row for row in result.rows if row["kind"] == "drain"]
    assert [(r["rate"], r["subscribers"]) for r in live] == fanout.SMOKE_CONFIGURATIONS
    for row in live:
        assert set(row) == LIVE_KEYS
        assert row["system"] == "shardline"
        assert row["complete"] >= 0.9
        assert 0 < row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
        assert len(row["cdf_ms"]) == len(CDF_QUANTILES)

    assert set(drained) == DRAIN_KEYS
    assert drained["system"] == "shardline"
    assert drained["records"] == records
    assert drained["subscribers"] == fanout.SMOKE_DRAIN_SUBSCRIBERS
    assert drained["reads"] == [records] * fanout.SMOKE_DRAIN_SUBSCRIBERS
    assert drained["subscriptions"] == 1
    assert drained["seconds"] > 0
    assert drained["per_subscriber_min"] == pytest.approx(records / drained["seconds"])
    assert drained["delivered_total"] == pytest.approx(
        fanout.SMOKE_DRAIN_SUBSCRIBERS * drained["per_subscriber_min"]
    )
    json.loads(json.dumps(result.rows))

    # One table for both kinds: a drain row shows "-" where a live figure would be.
    table = report.table(result.columns, result.rows).splitlines()
    assert len(table) == 2 + len(result.rows)
    drain_line = table[-1].split()
    assert "drain" in drain_line
    assert drain_line.count("-") >= 7  # rate, complete, five latencies, ...
    assert f"{records:,}" in drain_line

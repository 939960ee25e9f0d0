"""The ``kinesis-api`` scenario: its null endpoint, its load's bookkeeping, and a tiny real run.

- The null endpoint frames HTTP/1.1 requests however their bytes arrive
  (hypothesis over the split points of two pipelined requests), and boto3
  accepts its canned answers over a real socket: a PutRecords of 500 gets
  500 success entries, and the read-back reads as many canned pages as cover
  what was acknowledged.
- The load's digest counts only acknowledged records, and its read-back check
  can fail: against the null endpoint's canned pages it says not verified.
- The emulators, when their packages are missing, give the row that says how
  to install them.
- The whole scenario through the runner, tiny, with the emulators when this
  machine has them installed and their ``unavailable`` rows when it has not:
  every acknowledged record read back from shardline, the goals computed, no
  process left behind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import runner
from bench.null_kinesis import PAGE_RECORDS, Canned, NullProtocol
from bench.null_kinesis import SHARDS as NULL_SHARDS
from bench.peers import PeerUnavailable, emulators
from bench.scenario import Options
from bench.scenarios import kinesis_api
from bench.scenarios import kinesis_api_clients as load

from .processes import descendants

ENDPOINT_TIMEOUT_S = 120.0


# -- the null endpoint's framing ---------------------------------------------------------


class _Transport(asyncio.Transport):
    """What NullProtocol writes to, kept."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def close(self) -> None:
        self.closed = True


def _request(target: str, body: bytes) -> bytes:
    head = (
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Amz-Target: Kinesis_20131202.{target}\r\n"
        f"Content-Type: application/x-amz-json-1.1\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _protocol() -> tuple[NullProtocol, _Transport]:
    protocol = NullProtocol(Canned(), [0])
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


def _status_and_body(response: bytes) -> tuple[int, dict[str, Any], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
    assert int(headers[b"content-length"]) == len(body)
    assert headers[b"x-amzn-requestid"]
    return int(lines[0].split()[1]), json.loads(body), headers[b"x-amzn-requestid"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=4000), max_size=6))
def test_requests_are_framed_however_their_bytes_arrive(cuts: list[int]) -> None:
    body = json.dumps({"StreamName": "s", "Records": [{"Data": "eA==", "PartitionKey": "k"}]})
    stream = _request("PutRecords", body.encode()) + _request(
        "DescribeStreamSummary", b'{"StreamName":"s"}'
    )
    protocol, transport = _protocol()
    points = sorted({c % len(stream) for c in cuts} | {0, len(stream)})
    for start, end in itertools.pairwise(points):
        protocol.data_received(stream[start:end])
    assert len(transport.written) == 2
    status, put, first_id = _status_and_body(transport.written[0])
    assert status == 200 and put["FailedRecordCount"] == 0
    assert len(put["Records"]) == load.RECORDS_PER_REQUEST
    status, summary, second_id = _status_and_body(transport.written[1])
    assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert first_id != second_id
    assert protocol.buffer == bytearray()


def test_an_unknown_operation_is_refused_by_name() -> None:
    protocol, transport = _protocol()
    protocol.data_received(_request("MergeShards", b"{}"))
    status, error, _ = _status_and_body(transport.written[0])
    assert status == 400 and error["__type"] == "UnknownOperationException"


def test_the_canned_read_back_covers_what_was_acknowledged() -> None:
    canned = Canned()
    for _ in range(81):  # 40,500 records: 10,125 a shard, two pages each
        canned.answer(b"PutRecords", b"")
    _, iterator = canned.answer(b"GetShardIterator", b"{}")
    pages = 0
    position = json.loads(iterator)["ShardIterator"]
    while True:
        _, page = canned.answer(b"GetRecords", json.dumps({"ShardIterator": position}).encode())
        records = json.loads(page)["Records"]
        if not records:
            break
        assert len(records) == PAGE_RECORDS
        pages += 1
        position = json.loads(page)["NextShardIterator"]
    assert pages == math.ceil(81 * load.RECORDS_PER_REQUEST / NULL_SHARDS / PAGE_RECORDS) == 2


# -- the load's bookkeeping ------------------------------------------------------------


def test_a_request_digest_is_the_sum_of_its_records() -> None:
    (records, total), other = load.requests(2)
    assert len(records) == load.RECORDS_PER_REQUEST
    assert total == sum(load.digest(r["PartitionKey"], r["Data"]) for r in records) & load.MASK
    assert total != other[1]


def test_only_acknowledged_records_count() -> None:
    (records, total), *_ = load.requests(1)
    ok = {"SequenceNumber": "1", "ShardId": "shardId-000000000000"}
    failed = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"}
    entries = [ok] * len(records)
    assert load.acknowledged(records, total, {"FailedRecordCount": 0, "Records": entries}) == (
        len(records),
        total,
    )
    entries = [failed if i % 2 else ok for i in range(len(records))]
    count, partial = load.acknowledged(
        records, total, {"FailedRecordCount": 250, "Records": entries}
    )
    kept = [r for i, r in enumerate(records) if i % 2 == 0]
    assert count == len(kept) == 250
    assert partial == sum(load.digest(r["PartitionKey"], r["Data"]) for r in kept) & load.MASK
    with pytest.raises(RuntimeError, match="entries"):
        load.acknowledged(records, total, {"FailedRecordCount": 0, "Records": entries[:10]})


def test_the_read_back_check_can_fail() -> None:
    # Against canned pages the records read are not the records put: the check must say so.
    with kinesis_api.null_endpoint() as server:
        row = kinesis_api.measure(
            f"http://127.0.0.1:{server.port}", server.cpu_seconds, warmup=0.1, duration=0.3
        )
    assert row["put_records_per_s"] > 0 and row["records_put"] > 0
    assert row["records_read"] >= row["records_put"]
    assert row["verified"] is False
    assert descendants() == []


# -- ratios and goals ----------------------------------------------------------------------


def test_the_goals_take_the_faster_emulator_and_the_ceiling() -> None:
    rows = kinesis_api.with_ratios(
        [
            {"system": kinesis_api.SHARDLINE, "put_records_per_s": 60_000.0},
            {"system": kinesis_api.NULL, "put_records_per_s": 80_000.0},
            {"system": kinesis_api.KINESALITE, "put_records_per_s": 15_000.0},
            {"system": kinesis_api.KINESALITE_LEVELDB, "put_records_per_s": 20_000.0},
            {"system": kinesis_api.KINESIS_MOCK, "unavailable": "not here"},
        ]
    )
    assert rows[1]["ceiling_share"] == pytest.approx(0.75) and "shardline_ratio" not in rows[1]
    assert rows[3]["shardline_ratio"] == pytest.approx(3.0)
    assert "shardline_ratio" not in rows[4]
    vs_emulator, vs_ceiling = kinesis_api.goals(rows)
    assert vs_emulator.measured == pytest.approx(3.0) and vs_emulator.met
    assert vs_ceiling.measured == pytest.approx(0.75) and vs_ceiling.met
    failed = kinesis_api.goals([{"system": kinesis_api.SHARDLINE, "error": "down"}, rows[3]])
    assert [goal.measured for goal in failed] == [None, None]


# -- the emulators when they are missing ------------------------------------------------------


def test_a_missing_emulator_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHARDLINE_BENCH_CACHE", str(tmp_path / "empty"))
    assert all(emulators.available().values())
    with (
        pytest.raises(PeerUnavailable, match="make bench-emulators"),
        emulators.kinesis_mock(str(tmp_path)),
    ):
        pass
    rows = kinesis_api._emulator_rows(Options(tmpdir=str(tmp_path), progress=False), 0.1, 0.1)
    assert [row["system"] for row in rows] == list(kinesis_api.EMULATORS)
    for row in rows:
        assert "make bench-emulators" in row["unavailable"]
        assert "npm install --prefix" in row["unavailable"]
    assert descendants() == []


# -- the whole scenario, tiny ----------------------------------------------------------------


def test_the_scenario_runs_tiny_beside_whatever_emulators_are_here(tmp_path: Path) -> None:
    results = tmp_path / "results"
    argv = ["kinesis-api", "--quick", "--no-progress", "--tmpdir", str(tmp_path)]
    argv += ["--results", str(results), "--duration", "0.5", "--warmup", "0.2"]
    status = runner.main(argv)
    (path,) = results.glob("kinesis-api-2*.json")
    doc = json.loads(path.read_text())
    rows = {row["system"]: row for row in doc["figures"]}
    assert status == 0, doc["figures"]
    assert list(rows) == [kinesis_api.SHARDLINE, kinesis_api.NULL, *kinesis_api.EMULATORS]

    ours = rows[kinesis_api.SHARDLINE]
    assert ours["verified"] is True
    assert ours["records_read"] == ours["records_put"] > 0
    assert ours["put_records_per_s"] > 0 and ours["get_records_per_s"] > 0
    assert ours["failed_records"] == 0
    assert ours["server_cpu_put"] is not None and ours["server_cpu_put"] > 0

    ceiling = rows[kinesis_api.NULL]
    assert ceiling["verified"] is None and ceiling["put_records_per_s"] > 0
    assert ceiling["ceiling_share"] == pytest.approx(
        ours["put_records_per_s"] / ceiling["put_records_per_s"]
    )

    installed = emulators.available()
    packages = {
        kinesis_api.KINESALITE: "kinesalite",
        kinesis_api.KINESALITE_LEVELDB: "kinesalite",
        kinesis_api.KINESIS_MOCK: "kinesis-local",
    }
    for system, package in packages.items():
        row = rows[system]
        if installed[package] is None:
            assert row["verified"] is True, row
            assert row["records_read"] == row["records_put"] > 0
            assert row["shardline_ratio"] == pytest.approx(
                ours["put_records_per_s"] / row["put_records_per_s"]
            )
            assert row["durability"] and row["version"].startswith(package)
        else:
            assert row["unavailable"] == installed[package]
            assert "make bench-emulators" in row["unavailable"]

    goals = {goal["description"]: goal for goal in doc["goals"]}
    assert len(goals) == 2
    for goal in goals.values():
        assert goal["measured"] is None or goal["measured"] > 0
    if any(installed[p] is None for p in packages.values()):
        assert all(goal["measured"] is not None for goal in goals.values())
    for column in doc["columns"]:
        assert any(column["key"] in row for row in doc["figures"]), column
    assert descendants() == []

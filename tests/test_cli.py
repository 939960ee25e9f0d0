"""The ``shardline`` command, driven through real processes against a real server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

SHARDLINE = [sys.executable, "-m", "broker.cli"]
DEADLINE_S = 60


class Server:
    """``shardline serve`` on port 0, its address read from its start-up line."""

    def __init__(self, data: Path) -> None:
        self.process = subprocess.Popen(
            [*SHARDLINE, "serve", "--data", str(data), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until the start-up line, or EOF
        match = re.search(r"serving on (http://[\d.]+:\d+)", line)
        if match is None:
            self.process.kill()
            raise AssertionError(f"no start-up line: {line!r} {self.process.stderr.read()!r}")
        self.endpoint = match.group(1)
        self.startup_line = line

    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*SHARDLINE, "--endpoint", self.endpoint, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=DEADLINE_S)
        return self.process.returncode, out


def test_create_put_and_get_back_in_order_per_shard(server: Server) -> None:
    assert "0 stream(s)" in server.startup_line
    created = server.run("streams", "create", "events", "--shards", "3")
    assert created.returncode == 0, created.stderr
    lines = [json.dumps({"user": f"u{i % 7}", "n": i}) for i in range(1200)]
    put = server.run(
        "put", "events", "--key-field", "user", "--json", stdin="\n".join(lines) + "\n"
    )
    assert put.returncode == 0, put.stderr
    assert "put 1200 record(s), 0 failed" in put.stderr
    results = [json.loads(line) for line in put.stdout.splitlines()]
    assert len(results) == 1200
    assert all(list(r) == ["ShardId", "SequenceNumber"] for r in results)

    got = server.run("get", "events")
    assert got.returncode == 0, got.stderr
    records = [json.loads(line) for line in got.stdout.splitlines()]
    assert len(records) == 1200
    assert list(records[0]) == [
        "ShardId",
        "SequenceNumber",
        "PartitionKey",
        "Data",
        "ApproximateArrivalTimestamp",
    ]
    # Epoch seconds, with the milliseconds of the wire as the fraction.
    assert all(abs(r["ApproximateArrivalTimestamp"] - time.time()) < 600 for r in records)
    assert {r["SequenceNumber"] for r in records} == {r["SequenceNumber"] for r in results}
    import base64

    by_shard: dict[str, list[int]] = {}
    for record in records:
        body = json.loads(base64.b64decode(record["Data"]))
        assert record["PartitionKey"] == body["user"]
        by_shard.setdefault(record["ShardId"], []).append(body["n"])
    # Per shard, records come back in the order they were put.
    for numbers in by_shard.values():
        assert numbers == sorted(numbers)
    # The results are printed in input order.
    n_of_sequence = {
        r["SequenceNumber"]: json.loads(base64.b64decode(r["Data"]))["n"] for r in records
    }
    assert [n_of_sequence[r["SequenceNumber"]] for r in results] == list(range(1200))
    # Every record of one key went to one shard.
    shard_of_key: dict[str, set[str]] = {}
    for record in records:
        shard_of_key.setdefault(record["PartitionKey"], set()).add(record["ShardId"])
    assert all(len(shards) == 1 for shards in shard_of_key.values())

    listed = server.run("streams", "list", "--json")
    assert json.loads(listed.stdout) == {"StreamNames": ["events"]}
    described = server.run("streams", "describe", "events")
    assert described.returncode == 0 and "shardId-000000000002" in described.stdout
    as_json = json.loads(server.run("streams", "describe", "events", "--json").stdout)
    assert list(as_json) == ["StreamDescriptionSummary", "Shards"]
    assert as_json["StreamDescriptionSummary"]["OpenShardCount"] == 3
    assert [s["ShardId"] for s in as_json["Shards"]] == [
        f"shardId-00000000000{i}" for i in range(3)
    ]


def test_put_data_and_get_with_limit_and_positions(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    first = server.run("put", "s", "--data", "hello", "--partition-key", "k", "--json")
    assert first.returncode == 0, first.stderr
    sequence = json.loads(first.stdout)["SequenceNumber"]
    server.run("put", "s", "--partition-key", "k", stdin="a\nb\nc\n")
    after = server.run("get", "s", "--from", f"after-sequence:{sequence}", "--limit", "2")
    datas = [json.loads(line)["Data"] for line in after.stdout.splitlines()]
    assert datas == ["YQ==", "Yg=="]
    latest = server.run("get", "s", "--from", "latest")
    assert latest.returncode == 0 and latest.stdout == ""


def test_put_sends_a_large_input_in_batches_exactly_once(server: Server) -> None:
    assert server.run("streams", "create", "big", "--shards", "4").returncode == 0
    lines = [f"line-{i}" for i in range(20_000)]
    put = server.run("put", "big", stdin="\n".join(lines))  # no newline after the last
    assert put.returncode == 0, put.stderr
    assert "put 20000 record(s), 0 failed" in put.stderr
    got = server.run("get", "big")
    import base64

    datas = [
        base64.b64decode(json.loads(line)["Data"]).decode() for line in got.stdout.splitlines()
    ]
    assert sorted(datas) == sorted(lines)


def test_errors_name_the_error_and_exit_non_zero(server: Server) -> None:
    missing = server.run("streams", "describe", "nope")
    assert missing.returncode == 1
    assert "ResourceNotFoundException" in missing.stderr
    bad = server.run("get", "nope", "--from", "sideways")
    assert bad.returncode == 1 and "InvalidArgumentException" in bad.stderr
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    again = server.run("streams", "create", "s", "--shards", "1")
    assert again.returncode == 1 and "ResourceInUseException" in again.stderr


def test_sigterm_stops_gracefully_and_a_second_server_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = Server(data)
    try:
        assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
        second = subprocess.run(
            [*SHARDLINE, "serve", "--data", str(data), "--port", "0"],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
        )
        assert second.returncode == 1
        assert "in use by another shardline process" in second.stderr
        put = server.run("put", "s", "--partition-key", "k", stdin="x\ny\n")
        assert put.returncode == 0
    finally:
        code, out = server.stop()
    assert code == 0, out
    assert "stopped" in out
    # The acknowledged records are there after a restart.
    restarted = Server(data)
    try:
        assert "1 stream(s)" in restarted.startup_line
        got = restarted.run("get", "s")
        assert [json.loads(line)["Data"] for line in got.stdout.splitlines()] == ["eA==", "eQ=="]
    finally:
        restarted.stop()


def test_endpoint_comes_from_the_environment(server: Server) -> None:
    env = {**os.environ, "SHARDLINE_ENDPOINT": server.endpoint}
    listed = subprocess.run(
        [*SHARDLINE, "streams", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE_S,
    )
    assert listed.returncode == 0 and "(no streams)" in listed.stdout

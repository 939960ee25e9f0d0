"""``shardline subscribe``, driven through real processes against a real server."""

from __future__ import annotations

import base64
import json
import select
import signal
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

import trio

from broker.client import Client
from tests.test_cli import DEADLINE_S, SHARDLINE, Server


def register(server: Server, stream: str, consumer: str) -> None:
    async def go() -> None:
        async with Client(server.endpoint) as client:
            arn = (await client.describe_stream_summary(stream)).stream_arn
            await client.register_stream_consumer(arn, consumer)

    trio.run(go)


def lines_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def put_lines(server: Server, stream: str, texts: list[str]) -> list[dict[str, Any]]:
    put = server.run("put", stream, "--json", stdin="".join(t + "\n" for t in texts))
    assert put.returncode == 0, put.stderr
    return [json.loads(line) for line in put.stdout.splitlines()]


def test_every_shard_is_printed_as_get_prints_it_and_count_ends_it(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "3").returncode == 0
    register(server, "s", "reader")
    put_lines(server, "s", [f"record {i}" for i in range(60)])
    got = server.run(
        "subscribe",
        "s",
        "--consumer",
        "reader",
        "--from",
        "trim-horizon",
        "--count",
        "60",
        "--timeout",
        "30",
    )
    assert got.returncode == 0, got.stderr
    pushed = lines_of(got)
    polled = lines_of(server.run("get", "s"))
    assert len(pushed) == 60
    assert sorted(pushed, key=lambda r: int(r["SequenceNumber"])) == sorted(
        polled, key=lambda r: int(r["SequenceNumber"])
    )
    assert list(pushed[0]) == list(polled[0])
    for shard in {r["ShardId"] for r in pushed}:
        numbers = [int(r["SequenceNumber"]) for r in pushed if r["ShardId"] == shard]
        assert numbers == sorted(numbers)


def test_count_stops_inside_an_event(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    register(server, "s", "reader")
    put_lines(server, "s", [f"r{i}" for i in range(10)])  # one PutRecords: one stored batch
    got = server.run(
        "subscribe",
        "s",
        "--consumer",
        "reader",
        "--from",
        "trim-horizon",
        "--count",
        "4",
        "--timeout",
        "30",
    )
    assert got.returncode == 0, got.stderr
    assert [base64.b64decode(r["Data"]) for r in lines_of(got)] == [b"r0", b"r1", b"r2", b"r3"]


def test_a_split_shard_is_read_before_its_children(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    register(server, "s", "reader")
    put_lines(server, "s", [f"parent {i}" for i in range(5)])
    split = server.run(
        "streams", "split", "s", "--shard", "shardId-000000000000", "--hash-key", str(1 << 127)
    )
    assert split.returncode == 0, split.stderr
    put_lines(server, "s", [f"child {i}" for i in range(20)])
    got = server.run(
        "subscribe",
        "s",
        "--consumer",
        "reader",
        "--from",
        "trim-horizon",
        "--count",
        "25",
        "--timeout",
        "30",
    )
    assert got.returncode == 0, got.stderr
    records = lines_of(got)
    assert [r["ShardId"] for r in records[:5]] == ["shardId-000000000000"] * 5
    assert {r["ShardId"] for r in records[5:]} <= {"shardId-000000000001", "shardId-000000000002"}
    assert sorted(base64.b64decode(r["Data"]) for r in records[5:]) == sorted(
        f"child {i}".encode() for i in range(20)
    )


def test_one_shard_from_a_sequence_number(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    register(server, "s", "reader")
    results = put_lines(server, "s", ["a", "b", "c", "d"])
    after = results[1]["SequenceNumber"]
    got = server.run(
        "subscribe",
        "s",
        "--consumer",
        "reader",
        "--shard",
        "shardId-000000000000",
        "--from",
        f"after-sequence:{after}",
        "--count",
        "2",
        "--timeout",
        "30",
    )
    assert got.returncode == 0, got.stderr
    assert [base64.b64decode(r["Data"]) for r in lines_of(got)] == [b"c", b"d"]
    # Without --shard a sequence number means nothing.
    bad = server.run("subscribe", "s", "--consumer", "reader", "--from", f"at-sequence:{after}")
    assert bad.returncode == 1 and "InvalidArgumentException" in bad.stderr


def test_records_from_a_time_on(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "2").returncode == 0
    register(server, "s", "reader")
    put_lines(server, "s", ["old"])
    [old] = lines_of(server.run("get", "s"))
    # Arrival times are milliseconds: start one after the old record's.
    moment = datetime.fromtimestamp(old["ApproximateArrivalTimestamp"] + 0.001, UTC)
    while time.time() < moment.timestamp() + 0.002:
        time.sleep(0.001)  # the new records must arrive at or after the moment
    put_lines(server, "s", ["new 1", "new 2"])
    got = server.run(
        "subscribe",
        "s",
        "--consumer",
        "reader",
        "--from",
        f"at-timestamp:{moment.isoformat()}",
        "--count",
        "2",
        "--timeout",
        "30",
    )
    assert got.returncode == 0, got.stderr
    assert sorted(base64.b64decode(r["Data"]) for r in lines_of(got)) == [b"new 1", b"new 2"]


def test_a_timeout_first_exits_non_zero_with_a_message(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "2").returncode == 0
    register(server, "s", "reader")
    started = time.monotonic()
    got = server.run("subscribe", "s", "--consumer", "reader", "--count", "1", "--timeout", "1")
    assert got.returncode == 1
    assert "timed out after 1 s with 0 of 1 record(s)" in got.stderr
    assert got.stdout == ""
    assert time.monotonic() - started < DEADLINE_S


def test_an_unknown_consumer_is_an_error(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    got = server.run("subscribe", "s", "--consumer", "nobody", "--timeout", "10")
    assert got.returncode == 1
    assert "ResourceNotFoundException" in got.stderr


def test_without_count_it_runs_until_interrupted(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    register(server, "s", "reader")
    put_lines(server, "s", ["first"])
    process = subprocess.Popen(
        [
            *SHARDLINE,
            "--endpoint",
            server.endpoint,
            "subscribe",
            "s",
            "--consumer",
            "reader",
            "--from",
            "trim-horizon",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], DEADLINE_S)
        assert readable, "no record within the deadline"
        first = json.loads(process.stdout.readline())
        assert base64.b64decode(first["Data"]) == b"first"
        assert process.poll() is None  # still following
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert "Traceback" not in err

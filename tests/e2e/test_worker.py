"""``shardline worker`` running event source mappings: real broker, real worker processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.client.blocking import SyncClient
from tests.test_cli import Server

SHARDLINE = [sys.executable, "-m", "broker.cli"]
DEADLINE_S = 60.0
HANDLERS = "python:tests.e2e.worker_handlers"


class Workers:
    """``shardline worker`` processes writing what their handlers saw to one file."""

    def __init__(self, endpoint: str, out: Path) -> None:
        self.endpoint = endpoint
        self.out = out
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *extra: str) -> subprocess.Popen[str]:
        command = [*SHARDLINE, "--endpoint", self.endpoint, "worker", "--poll-interval", "0.2"]
        process = subprocess.Popen(
            [*command, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "WORKER_TEST_OUT": str(self.out)},
        )
        assert process.stdout is not None
        self.processes.append(process)
        return process

    def lines(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def workers(server: Server, tmp_path: Path) -> Iterator[Workers]:
    running = Workers(server.endpoint, tmp_path / "out.jsonl")
    try:
        yield running
    finally:
        running.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def mapping(client: SyncClient, stream: str, function: str, **params: Any) -> dict[str, Any]:
    arn = client.describe_stream_summary(stream).stream_arn
    request = {"FunctionName": function, "EventSourceArn": arn, **params}
    answer: dict[str, Any] = client.call("CreateEventSourceMapping", request)
    return answer


def test_an_unmodified_lambda_handler_gets_every_record_once_per_shard_in_order(
    server: Server, workers: Workers
) -> None:
    with SyncClient(server.endpoint) as client:
        client.create_stream("orders", 2)
        created = mapping(
            client, "orders", f"{HANDLERS}:lambda_style", StartingPosition="TRIM_HORIZON"
        )
        assert created["State"] == "Enabled" and created["BatchSize"] == 100
        sent = [f"order-{i}" for i in range(300)]
        for start in range(0, 300, 100):
            client.put_records(
                "orders",
                [
                    {"Data": d.encode(), "PartitionKey": f"c{i % 7}"}
                    for i, d in enumerate(sent[start : start + 100], start)
                ],
            )
        workers.start()
        wait_for(lambda: len({line["data"] for line in workers.lines()}) == 300, "300 records")
        lines = workers.lines()
        assert sorted(line["data"] for line in lines) == sorted(sent)  # each once
        assert {line["source"] for line in lines} == {"aws:kinesis"}
        assert all(0 < line["remaining_ms"] <= 900_000 for line in lines)
        for shard in {line["shard"] for line in lines}:
            seqs = [int(line["seq"]) for line in lines if line["shard"] == shard]
            assert seqs == sorted(seqs)  # in sequence order per shard
        # The checkpoints reach every shard's last record.
        application = f"mapping-{created['UUID']}"
        for shard in {line["shard"] for line in lines}:
            last = max(int(line["seq"]) for line in lines if line["shard"] == shard)
            wait_for(
                lambda s=shard, n=last: (
                    int(client.get_checkpoint("orders", application, s).sequence_number) >= n
                ),
                f"the checkpoint of {shard}",
            )


def test_a_poison_record_goes_to_the_failure_stream_and_the_rest_carry_on(
    server: Server, workers: Workers
) -> None:
    with SyncClient(server.endpoint) as client:
        client.create_stream("jobs", 1)
        client.create_stream("failures", 1)
        mapping(
            client,
            "jobs",
            f"{HANDLERS}:poison",
            StartingPosition="TRIM_HORIZON",
            BatchSize=10,
            MaximumRetryAttempts=1,
            BisectBatchOnFunctionError=True,
            DestinationConfig={"OnFailure": {"Destination": "failures"}},
        )
        datas = [f"job-{i}" for i in range(30)]
        datas[17] = "poison"
        answer = client.put_records(
            "jobs", [{"Data": d.encode(), "PartitionKey": "k"} for d in datas]
        )
        poison_seq = answer.records[17].sequence_number
        workers.start()
        good = set(datas) - {"poison"}
        wait_for(lambda: {line["data"] for line in workers.lines()} >= good, "the good records")
        assert "poison" not in {line["data"] for line in workers.lines()}

        def failure_records() -> list[dict[str, Any]]:
            shard = client.list_shards("failures").shards[0].shard_id
            it = client.get_shard_iterator("failures", shard, "TRIM_HORIZON").shard_iterator
            return [json.loads(r.data) for r in client.get_records(it).records]

        wait_for(lambda: bool(failure_records()), "the failure record")
        (failure,) = failure_records()
        info = failure["KinesisBatchInfo"]
        # Bisection isolated the poison record: the failure names it alone.
        assert info["startSequenceNumber"] == poison_seq == info["endSequenceNumber"]
        assert info["batchSize"] == 1
        assert failure["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_a_worker_killed_mid_batch_loses_nothing(server: Server, workers: Workers) -> None:
    with SyncClient(server.endpoint) as client:
        client.create_stream("slow", 2)
        mapping(client, "slow", f"{HANDLERS}:slow", StartingPosition="TRIM_HORIZON", BatchSize=5)
        answer = client.put_records(
            "slow", [{"Data": b"x", "PartitionKey": f"k{i}"} for i in range(60)]
        )
        expected = {entry.sequence_number for entry in answer.records}
        first = workers.start()
        wait_for(lambda: len(workers.lines()) >= 10, "the first worker to begin")
        first.send_signal(signal.SIGKILL)
        first.wait()
        workers.start()
        wait_for(
            lambda: {line["seq"] for line in workers.lines()} >= expected,
            "every record after the restart",
        )
        seen = [line["seq"] for line in workers.lines()]
        assert set(seen) == expected  # none skipped; some may have run twice
        print(f"duplicates after the kill: {len(seen) - len(expected)}")


def test_two_workers_share_the_shards_and_serve_metrics(server: Server, workers: Workers) -> None:
    with SyncClient(server.endpoint) as client:
        client.create_stream("shared", 4)
        created = mapping(
            client, "shared", f"{HANDLERS}:lambda_style", StartingPosition="TRIM_HORIZON"
        )
        one = workers.start("--id", "one", "--metrics-port", "0")
        workers.start("--id", "two")
        assert one.stdout is not None
        line = one.stdout.readline()
        match = re.search(r"metrics on (http://\S+)", line)
        assert match, line

        def holders() -> set[str]:
            leases = client.list_leases("shared", f"mapping-{created['UUID']}").leases
            return {lease.owner for lease in leases if lease.owner}

        wait_for(lambda: holders() == {"one", "two"}, "both workers holding leases")
        client.put_records(
            "shared", [{"Data": f"r{i}".encode(), "PartitionKey": f"k{i}"} for i in range(200)]
        )
        wait_for(lambda: len({x["data"] for x in workers.lines()}) == 200, "200 records")
        requests = {x["request"] for x in workers.lines()}
        assert len(requests) >= 2  # more than one invocation
        line = re.compile(
            rf'shardline_worker_invocations_total{{mapping="{created["UUID"]}"}} ([1-9]\d*)'
        )

        def scrape() -> str:
            return str(urllib.request.urlopen(match.group(1), timeout=10).read().decode())

        # The handler notes its records before it returns; the metrics count it after.
        wait_for(lambda: line.search(scrape()) is not None, "worker one's invocations")
        assert "shardline_worker_iterator_age_milliseconds" in scrape()


def test_processes_share_the_shards_restart_a_dead_one_and_stop_together(
    server: Server, workers: Workers
) -> None:
    from tests.bench.processes import descendants

    with SyncClient(server.endpoint) as client:
        client.create_stream("pool", 4)
        created = mapping(
            client, "pool", f"{HANDLERS}:lambda_style", StartingPosition="TRIM_HORIZON"
        )
        parent = workers.start("--id", "pool", "--processes", "2")

        def holders() -> set[str]:
            leases = client.list_leases("pool", f"mapping-{created['UUID']}").leases
            return {lease.owner for lease in leases if lease.owner}

        wait_for(lambda: holders() == {"pool", "pool-2"}, "both processes holding leases")
        (child,) = descendants(parent.pid)
        client.put_records(
            "pool", [{"Data": f"r{i}".encode(), "PartitionKey": f"k{i}"} for i in range(200)]
        )
        wait_for(lambda: len({x["data"] for x in workers.lines()}) == 200, "200 records")
        # A child that dies is started again under a new id; once the dead one's
        # leases expired, the new one holds its share.
        os.kill(child, signal.SIGKILL)
        wait_for(lambda: descendants(parent.pid) not in ([], [child]), "a new child")
        wait_for(lambda: holders() == {"pool", "pool-2.2"}, "the new child holding leases")
        # SIGTERM to the parent stops every process and releases every lease.
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=DEADLINE_S) == 0
        assert descendants(parent.pid) == []
        wait_for(lambda: holders() == set(), "the leases released")

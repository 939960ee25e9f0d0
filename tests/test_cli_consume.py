"""``shardline consume``, driven through real processes against a real server."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from broker.client import CheckpointInfo, Client, LeaseInfo
from broker.errors import ShardlineError
from tests.test_cli import DEADLINE_S, SHARDLINE, Server
from tests.test_cli_subscribe import lines_of, put_lines

T = TypeVar("T")


def consume(server: Server, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SHARDLINE, "--endpoint", server.endpoint, "consume", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def leases(server: Server, stream: str, group: str) -> list[LeaseInfo]:
    async def go() -> list[LeaseInfo]:
        async with Client(server.endpoint) as client:
            return (await client.list_leases(stream, group)).leases

    return trio.run(go)


def checkpoints(server: Server, stream: str, group: str) -> dict[str, CheckpointInfo]:
    async def go() -> dict[str, CheckpointInfo]:
        found = {}
        async with Client(server.endpoint) as client:
            for shard in (await client.list_shards(stream)).shards:
                try:
                    cp = await client.get_checkpoint(stream, group, shard.shard_id)
                except ShardlineError:
                    continue
                found[shard.shard_id] = cp
        return found

    return trio.run(go)


def wait_for(probe: Callable[[], T], what: str) -> T:
    """Ask ``probe`` until it answers something true; that answer, or fail at the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {DEADLINE_S} s: {what}")


def read_records(processes: list[subprocess.Popen[str]], count: int) -> list[dict[str, Any]]:
    """JSON lines from the processes until ``count`` distinct records, within the deadline.

    Read with ``os.read``: a text stream's own buffer would hide lines from ``select``.
    """
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE_S
    pending = {p.stdout.fileno(): b"" for p in processes if p.stdout is not None}
    while len({r["SequenceNumber"] for r in records}) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(records)} of {count} records within {DEADLINE_S} s"
        readable, _, _ = select.select(list(pending), [], [], left)
        for fd in readable:
            chunk = os.read(fd, 1 << 16)
            assert chunk, "a worker exited"
            *lines, pending[fd] = (pending[fd] + chunk).split(b"\n")
            records += [json.loads(line) for line in lines]
    return records


def stop(process: subprocess.Popen[str], signum: signal.Signals) -> tuple[int, str, str]:
    process.send_signal(signum)
    out, err = process.communicate(timeout=DEADLINE_S)
    return process.returncode, out, err


def test_two_workers_share_the_records_and_stop_cleanly(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "4").returncode == 0
    put = put_lines(server, "s", [f"record {i}" for i in range(200)])
    workers = [
        consume(server, "s", "--group", "billing", "--worker", name, "--lease-duration", "2")
        for name in ("w1", "w2")
    ]
    try:
        records = read_records(workers, 200)
        # Printed as `get` prints them: same fields, same values.
        polled = {r["SequenceNumber"]: r for r in lines_of(server.run("get", "s"))}
        assert {r["SequenceNumber"] for r in records} == {p["SequenceNumber"] for p in put}
        for record in records:
            assert record == polled[record["SequenceNumber"]]
            assert list(record) == list(polled[record["SequenceNumber"]])
        # The group's consumer was registered under the group's name.
        listed = server.run("consumers", "list", "s", "--json")
        assert "billing" in listed.stdout

        # Checkpointed after each printed batch: every shard at its newest record.
        newest: dict[str, int] = {}
        for p in put:
            newest[p["ShardId"]] = max(newest.get(p["ShardId"], 0), int(p["SequenceNumber"]))

        def caught_up() -> bool:
            found = checkpoints(server, "s", "billing")
            return {k: int(v.sequence_number) for k, v in found.items()} == newest

        wait_for(caught_up, "a checkpoint at every shard's newest record")

        def both_hold() -> bool:
            return {x.owner for x in leases(server, "s", "billing") if x.held} == {"w1", "w2"}

        wait_for(both_hold, "both workers holding shards")
        # SIGTERM: clean stop, status 0, leases released at once.
        status, _, err = stop(workers[0], signal.SIGTERM)
        assert status == 0, err
        assert "Traceback" not in err
        assert not [x for x in leases(server, "s", "billing") if x.owner == "w1"]
        # SIGINT: the same, with the status of an interrupted command.
        status, _, err = stop(workers[1], signal.SIGINT)
        assert status == 130, err
        assert "Traceback" not in err
        assert not [x for x in leases(server, "s", "billing") if x.held]
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_a_restarted_worker_resumes_after_its_checkpoints(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "2").returncode == 0
    put_lines(server, "s", [f"old {i}" for i in range(20)])
    first = consume(server, "s", "--group", "g", "--lease-duration", "2")
    try:
        assert len(read_records([first], 20)) == 20
        wait_for(lambda: len(checkpoints(server, "s", "g")) == 2, "checkpoints on both shards")
        assert stop(first, signal.SIGTERM)[0] == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    put_lines(server, "s", [f"new {i}" for i in range(10)])
    second = consume(server, "s", "--group", "g", "--lease-duration", "2")
    try:
        records = read_records([second], 10)
        assert sorted(base64.b64decode(r["Data"]) for r in records) == sorted(
            f"new {i}".encode() for i in range(10)
        )
        status, out, _ = stop(second, signal.SIGTERM)
        assert status == 0
        assert out == ""  # nothing old came after the new ones either
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()


def test_from_latest_skips_what_came_before(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "2").returncode == 0
    put_lines(server, "s", [f"before {i}" for i in range(10)])
    worker = consume(server, "s", "--group", "g", "--from", "latest")
    try:
        # A LATEST start is pinned with a checkpoint where it began: once both are
        # there, what is put next is new to the worker.
        wait_for(lambda: len(checkpoints(server, "s", "g")) == 2, "the LATEST starts pinned")
        put_lines(server, "s", [f"after {i}" for i in range(6)])
        records = read_records([worker], 6)
        assert sorted(base64.b64decode(r["Data"]) for r in records) == sorted(
            f"after {i}".encode() for i in range(6)
        )
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


def test_bad_arguments_and_a_missing_stream_are_errors(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    bad = server.run("consume", "s", "--group", "g", "--from", "at-sequence:1")
    assert bad.returncode == 1 and "InvalidArgumentException" in bad.stderr
    missing = server.run("consume", "nope", "--group", "g")
    assert missing.returncode == 1 and "ResourceNotFoundException" in missing.stderr
    no_group = server.run("consume", "s")
    assert no_group.returncode == 2 and "--group" in no_group.stderr


def test_a_stream_deleted_under_the_group_ends_it_with_the_error(server: Server) -> None:
    assert server.run("streams", "create", "s", "--shards", "1").returncode == 0
    put_lines(server, "s", ["one"])
    worker = consume(server, "s", "--group", "g", "--lease-duration", "2")
    try:
        assert len(read_records([worker], 1)) == 1
        assert server.run("streams", "delete", "s", "--force").returncode == 0
        _, err = worker.communicate(timeout=DEADLINE_S)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 1
    assert "ResourceNotFoundException" in err
    assert "Traceback" not in err

"""Crash test with real processes: SIGKILL an appending child, reopen, check every ack.

A child process (``crash_child.py``) appends continuously from several trio
tasks and writes one acknowledgement line per append only after the append
returned (the commit is durable). The parent waits until the child's ack file
has grown by a random amount, kills the child with SIGKILL, reopens the log
itself and checks it, then starts the next child on the same directory.

After every kill, for every shard:

- offsets are contiguous from 1, with no gap, and arrival times never decrease;
- every acknowledged append is present at exactly the offsets it was acknowledged
  with, byte-exact (regenerated from its identity and the seed);
- every stored record belongs to a complete append: an append that spanned
  several shards is in all of them or in none (one transaction), and an
  unacknowledged append may be present only as the one after a task's last
  acknowledged append (committed, then killed before its ack was written).

Set ``SHARDLINE_CRASH_SEED`` to replay a run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import trio

from broker.hashing import ShardRouter
from broker.log import Log, open_log

from .crash_child import SHARDS, STREAM, TASKS, append_records, identity

CHILD = Path(__file__).with_name("crash_child.py")
WAIT_SECONDS = 30.0  # deadline for the ack file to grow; far above what it takes
POLL_SECONDS = 0.002

Identity = tuple[int, int, int]  # (run, task, n)


def _read_acks(path: Path) -> list[dict[str, object]]:
    """The complete ack lines of one run; a final partial line (torn by the kill) is dropped."""
    content = path.read_bytes() if path.exists() else b""
    lines = content.split(b"\n")[:-1]  # the last element is b"" or a torn line
    return [json.loads(line) for line in lines]


async def _wait_for_growth(path: Path, target: int, proc: trio.Process, stderr: Path) -> None:
    """Wait until ``path`` holds at least ``target`` bytes (poll with a deadline)."""
    with trio.move_on_after(WAIT_SECONDS) as scope:
        while (path.stat().st_size if path.exists() else 0) < target:
            assert proc.poll() is None, (
                f"the child exited by itself ({proc.returncode}): {stderr.read_text()}"
            )
            await trio.sleep(POLL_SECONDS)
    assert not scope.cancelled_caught, (
        f"the ack file did not reach {target} bytes in {WAIT_SECONDS} s: {stderr.read_text()}"
    )


def _read_shard(log: Log, index: int) -> list[tuple[int, int, str, bytes]]:
    tail = log.tail(STREAM, index)
    assert tail.horizon == 1, f"shard {index} lost its first records (horizon {tail.horizon})"
    out: list[tuple[int, int, str, bytes]] = []
    offset = 1
    while offset < tail.next_offset:
        result = log.read(STREAM, index, offset, max_records=5000)
        assert result.count > 0, f"shard {index}: nothing readable at offset {offset}"
        out.extend(result.records())
        offset = result.next_offset
    assert offset == tail.next_offset
    return out


def check_log(log: Log, seed: int, acks: list[dict[str, object]]) -> int:
    """Check the log against every acknowledgement so far; return the records stored."""
    desc = log.describe(STREAM)
    assert len(desc.shards) == SHARDS and all(s.is_open for s in desc.shards)
    router = ShardRouter(desc.shards)

    # Where each append's records are: identity -> shard -> [(offset, key, data)].
    found: dict[Identity, dict[int, list[tuple[int, str, bytes]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    total = 0
    for shard in desc.shards:
        records = _read_shard(log, shard.index)
        assert [r[0] for r in records] == list(range(1, len(records) + 1)), (
            f"shard {shard.index}: offsets are not contiguous from 1"
        )
        arrivals = [r[1] for r in records]
        assert arrivals == sorted(arrivals), f"shard {shard.index}: arrival times went back"
        for offset, _, key, data in records:
            run, task, n, _ = identity(data)
            found[(run, task, n)][shard.index].append((offset, key, data))
        total += len(records)

    # Every stored append is whole, byte-exact, contiguous in each shard, and stored once.
    for (run, task, n), shards in found.items():
        expected = router.group(append_records(seed, run, task, n))
        assert set(shards) == set(expected), (
            f"append {(run, task, n)} is in shards {sorted(shards)}, "
            f"expected all of {sorted(expected)}"
        )
        for index, stored in shards.items():
            assert [(k, d) for _, k, d in stored] == expected[index], (
                f"append {(run, task, n)} differs in shard {index}"
            )
            first = stored[0][0]
            assert [o for o, _, _ in stored] == list(range(first, first + len(stored)))

    # Every acknowledged append is where its acknowledgement said.
    acked: dict[tuple[int, int], list[int]] = defaultdict(list)
    for ack in acks:
        ident: Identity = (ack["run"], ack["task"], ack["n"])  # type: ignore[assignment]
        ranges = {int(k): tuple(v) for k, v in ack["ranges"].items()}  # type: ignore[attr-defined]
        assert ident in found, f"acknowledged append {ident} is missing"
        assert set(ranges) == set(found[ident])
        for index, (first, count) in ranges.items():
            stored = found[ident][index]
            assert (stored[0][0], len(stored)) == (first, count), (
                f"acknowledged append {ident} moved in shard {index}"
            )
        acked[ident[:2]].append(ident[2])

    # Per task and run: appends are stored in order from 0 with no hole, every ack is
    # stored, and at most one append past the last ack (committed, not acknowledged).
    stored_ns: dict[tuple[int, int], list[int]] = defaultdict(list)
    for run, task, n in found:
        stored_ns[(run, task)].append(n)
    for key in set(stored_ns) | set(acked):
        ns, acked_ns = sorted(stored_ns[key]), acked[key]
        assert ns == list(range(len(ns))), f"run/task {key}: stored appends have holes"
        assert acked_ns == list(range(len(acked_ns))), f"run/task {key}: acks out of order"
        assert len(acked_ns) <= len(ns) <= len(acked_ns) + 1, (
            f"run/task {key}: {len(ns)} appends stored, {len(acked_ns)} acknowledged"
        )
    return total


async def test_acknowledged_appends_survive_sigkill(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHARDLINE_CRASH_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"crash test seed: {seed} (SHARDLINE_CRASH_SEED={seed} replays it)")
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    kills = rng.randint(6, 8)
    acks: list[dict[str, object]] = []
    stored = 0
    for run in range(kills):
        ack_path = tmp_path / f"ack-{run}.jsonl"
        stderr = tmp_path / f"child-{run}.err"
        # How far the child gets before the kill: right after its first ack, or later.
        target = rng.choice((1, rng.randint(1, 5_000), rng.randint(5_000, 150_000)))
        with stderr.open("wb") as err:
            proc = await trio.lowlevel.open_process(
                [sys.executable, str(CHILD), str(data_dir), str(ack_path), str(seed), str(run)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                cwd=str(tmp_path),
            )
        try:
            await _wait_for_growth(ack_path, target, proc, stderr)
        finally:
            proc.kill()  # SIGKILL
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL, stderr.read_text()

        run_acks = _read_acks(ack_path)
        assert run_acks, "the child acknowledged nothing before the kill"
        assert all(a["run"] == run for a in run_acks)
        acks.extend(run_acks)

        async with open_log(str(data_dir)) as log:
            now_stored = check_log(log, seed, acks)
        # Nothing stored before is ever lost: the log only grows.
        assert now_stored > stored
        stored = now_stored
        print(f"run {run}: killed after {len(run_acks)} acks, {stored} records stored")

    assert {a["task"] for a in acks} == set(range(TASKS))

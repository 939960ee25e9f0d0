"""The LMDB environment: one process per data directory, map growth, and the map size cap."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from broker.errors import DataDirectoryLockedError, StorageFullError
from broker.log import EnvConfig, Log, LogConfig, open_log
from broker.log.env import LogEnvironment

STREAM = "env"
CHUNK = 48 << 10  # bytes of data per append

#: The child tries to open the directory and reports what happened on stdout.
_SECOND_PROCESS = textwrap.dedent(
    """
    import sys
    from broker.errors import DataDirectoryLockedError
    from broker.log.env import LogEnvironment

    try:
        env = LogEnvironment(sys.argv[1])
    except DataDirectoryLockedError as exc:
        print(type(exc).__name__, exc.wire_name)
        print(exc.message)
        sys.exit(3)
    env.close()
    print("opened")
    """
)


def _open_in_another_process(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _SECOND_PROCESS, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _data(i: int, size: int = CHUNK) -> bytes:
    """Distinct, incompressible-looking bytes for append ``i``."""
    seed = i.to_bytes(4, "big")
    return (seed * (size // 4 + 1))[:size] if i % 2 else bytes((i + j) % 251 for j in range(size))


def _read_all(log: Log, index: int = 0) -> list[tuple[int, str, bytes]]:
    out: list[tuple[int, str, bytes]] = []
    offset = 1
    while True:
        result = log.read(STREAM, index, offset)
        out.extend((off, key, data) for off, _, key, data in result.records())
        if result.next_offset == offset:
            return out
        offset = result.next_offset


def _expected(count: int) -> list[tuple[int, str, bytes]]:
    return [(i + 1, f"key-{i}", _data(i)) for i in range(count)]


# -- the directory lock ----------------------------------------------------------


def test_second_environment_in_the_same_process_is_refused(tmp_path: Path) -> None:
    first = LogEnvironment(tmp_path)
    try:
        with pytest.raises(DataDirectoryLockedError) as info:
            LogEnvironment(tmp_path)
        assert str(tmp_path) in info.value.message
        assert info.value.wire_name == "ResourceInUseException"
        # The refused attempt must not have disturbed the open environment.
        with first.reading() as txn:
            assert txn.stat(first.dbs["batches"])["entries"] == 0
    finally:
        first.close()
    # Once closed, the directory opens again.
    LogEnvironment(tmp_path).close()


async def test_open_log_on_a_locked_directory_is_refused(tmp_path: Path) -> None:
    async with open_log(str(tmp_path)) as log:
        await log.create_stream(STREAM, 1)
        with pytest.raises(DataDirectoryLockedError):
            async with open_log(str(tmp_path)):
                pass  # pragma: no cover - must not be reached
        # The first log still works after the refused open.
        await log.append(STREAM, {0: [("k", b"still fine")]})
        assert [r[3] for r in log.read(STREAM, 0, 1).records()] == [b"still fine"]


def test_second_process_is_refused_while_the_directory_is_open(tmp_path: Path) -> None:
    env = LogEnvironment(tmp_path)
    try:
        refused = _open_in_another_process(tmp_path)
        assert refused.returncode == 3, refused.stderr
        lines = refused.stdout.splitlines()
        assert lines[0] == "DataDirectoryLockedError ResourceInUseException"
        assert str(tmp_path) in lines[1]
    finally:
        env.close()
    opened = _open_in_another_process(tmp_path)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == "opened"


# -- map growth ------------------------------------------------------------------


async def test_map_grows_when_full_and_data_survives_reopen(tmp_path: Path) -> None:
    small = LogConfig(env=EnvConfig(map_size=64 << 10))
    appends = 40  # about 2 MiB into a 64 KiB map
    async with open_log(str(tmp_path), small) as log:
        await log.create_stream(STREAM, 2)
        start = log.statistics()["map_size"]
        assert start == 64 << 10
        for i in range(appends):
            result = await log.append(STREAM, {0: [(f"key-{i}", _data(i))]})
            assert result.ranges == {0: (i + 1, 1)}
        grown = log.statistics()["map_size"]
        assert grown >= appends * CHUNK > start
        # What the log reports is what LMDB really has.
        assert log.store.environment.stat()["map_size"] == grown
        assert _read_all(log) == _expected(appends)

    async with open_log(str(tmp_path), small) as log:
        # Reopened with the same small setting: the map is at least the data's size.
        assert log.statistics()["map_size"] >= appends * CHUNK
        assert _read_all(log) == _expected(appends)
        assert log.tail(STREAM, 0).next_offset == appends + 1
        # And it keeps growing from there.
        for i in range(appends, appends + 20):
            await log.append(STREAM, {0: [(f"key-{i}", _data(i))]})
        assert _read_all(log) == _expected(appends + 20)


async def test_one_append_larger_than_the_map_grows_it_in_one_commit(tmp_path: Path) -> None:
    config = LogConfig(env=EnvConfig(map_size=64 << 10))
    big = [(f"key-{i}", _data(i)) for i in range(30)]  # about 1.4 MiB in one batch
    async with open_log(str(tmp_path), config) as log:
        await log.create_stream(STREAM, 1)
        result = await log.append(STREAM, {0: big})
        assert result.ranges == {0: (1, 30)}
        assert _read_all(log) == _expected(30)
    async with open_log(str(tmp_path), config) as log:
        assert _read_all(log) == _expected(30)


# -- the cap ---------------------------------------------------------------------


async def test_append_at_the_cap_fails_cleanly_and_the_log_stays_usable(tmp_path: Path) -> None:
    capped = LogConfig(env=EnvConfig(map_size=64 << 10, max_map_size=1 << 20))
    acknowledged = 0
    async with open_log(str(tmp_path), capped) as log:
        await log.create_stream(STREAM, 2)
        with pytest.raises(StorageFullError) as info:
            for i in range(100):  # 4.8 MiB would be needed: the cap is 1 MiB
                await log.append(STREAM, {0: [(f"key-{i}", _data(i))]})
                acknowledged += 1
        assert "maximum map size" in info.value.message
        assert info.value.wire_name == "InternalFailureException"
        assert 0 < acknowledged < 100
        assert log.statistics()["map_size"] == 1 << 20
        tail = log.tail(STREAM, 0)
        assert tail.next_offset == acknowledged + 1

        # Nothing of the failed append was kept; everything acknowledged reads back.
        assert _read_all(log) == _expected(acknowledged)
        # Still full: the next big append fails too, and again leaves nothing behind.
        with pytest.raises(StorageFullError):
            await log.append(STREAM, {0: [("key-x", _data(10_000))] * 40})
        assert log.tail(STREAM, 0) == tail
        # Other writes and reads keep working.
        assert log.tail(STREAM, 1).next_offset == 1
        assert log.describe(STREAM).name == STREAM

    async with open_log(str(tmp_path), capped) as log:
        assert log.tail(STREAM, 0).next_offset == acknowledged + 1
        assert _read_all(log) == _expected(acknowledged)

    # With a higher cap the same directory takes writes again.
    roomier = LogConfig(env=EnvConfig(map_size=64 << 10, max_map_size=16 << 20))
    async with open_log(str(tmp_path), roomier) as log:
        i = acknowledged
        result = await log.append(STREAM, {0: [(f"key-{i}", _data(i))]})
        assert result.ranges == {0: (acknowledged + 1, 1)}
        assert _read_all(log) == _expected(acknowledged + 1)


# -- a full disk -------------------------------------------------------------------

#: The child appends under a file size limit (the kernel refuses writes past it,
#: as a full disk does) and reports every acknowledged append, then the error.
_FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    import trio
    from broker.errors import ShardlineError
    from broker.log import open_log

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    async def main():
        async with open_log(sys.argv[1]) as log:
            await log.create_stream("env", 1)
            for i in range(10_000):
                data = bytes([i % 251]) * 49152
                try:
                    await log.append("env", {0: [(f"key-{i}", data)]})
                except ShardlineError as exc:
                    print("error", type(exc).__name__, exc.wire_name, exc.message, flush=True)
                    # The log keeps serving reads after the failed commit.
                    print("tail", log.tail("env", 0).next_offset, flush=True)
                    return
                print("ack", i, flush=True)

    trio.run(main)
    """
)


async def test_a_full_disk_fails_the_append_with_a_clear_error_and_keeps_what_was_acked(
    tmp_path: Path,
) -> None:
    limit = 3 << 20
    with trio.fail_after(120):
        child = await trio.run_process(
            [sys.executable, "-c", _FULL_DISK, str(tmp_path), str(limit)],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert child.returncode == 0, child.stderr.decode()
    lines = child.stdout.decode().splitlines()
    acks = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
    errors = [line for line in lines if line.startswith("error ")]
    assert acks == list(range(len(acks))) and len(acks) > 5
    assert len(errors) == 1, lines
    assert "StorageFullError InternalFailureException" in errors[0]
    assert "disk is full" in errors[0] or "no room" in errors[0]
    assert lines[-1] == f"tail {len(acks) + 1}"
    # Every acknowledged record is there after the failure, byte for byte, and nothing else.
    async with open_log(str(tmp_path)) as log:
        rows = _read_all(log)
    assert rows == [(i + 1, f"key-{i}", bytes([i % 251]) * 49152) for i in acks]

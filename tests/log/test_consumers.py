"""Registered consumers in the log: the staged view of one commit, the floor, the reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.errors import LimitExceededError, ResourceInUseError, ResourceNotFoundError
from broker.log import LogConfig, consumers, open_log
from broker.log import keys as log_keys
from broker.log.env import LogEnvironment
from broker.log.store import Commit, LogStore, Op

from .conformance import FakeClock

NOW = 1_700_000_000_250


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LogStore]:
    opened = LogStore(LogEnvironment(tmp_path), LogConfig())
    try:
        yield opened
    finally:
        opened.close()


def commit(store: LogStore, *fns: Callable[[Commit], Any]) -> list[Op]:
    """Run ``fns`` in one commit; their ops, with results or errors."""
    ops = [Op(fn) for fn in fns]
    store.commit(ops)
    return ops


def register(name: str, now: int = NOW, stream: str = "s") -> Callable[[Commit], Any]:
    return lambda c: consumers.register(c, stream, name, now, max_consumers=3)


def listed(store: LogStore, stream: str = "s") -> list[str]:
    env = store.environment
    inc = store.streams[stream].incarnation
    with env.reading() as txn:
        return [c.name for c in consumers.list_consumers(txn, env.dbs["consumers"], inc)]


def test_one_commit_sees_its_own_registrations(store: LogStore) -> None:
    commit(store, lambda c: c.create_stream("s", 1, NOW, 24))
    ops = commit(store, *(register(n) for n in ("a", "b", "a", "c", "d")))
    assert [op.error is None for op in ops] == [True, True, False, True, False]
    assert isinstance(ops[2].error, ResourceInUseError)
    assert isinstance(ops[4].error, LimitExceededError)
    assert listed(store) == ["a", "b", "c"]


def test_removed_and_registered_again_in_one_commit(store: LogStore) -> None:
    commit(store, lambda c: c.create_stream("s", 1, NOW, 24))
    (first,) = commit(store, register("a"))
    remove, again, other = commit(
        store,
        lambda c: consumers.deregister(c, "s", "a", first.result.created_s),
        register("a"),
        register("b"),
    )
    assert remove.error is None and remove.result == first.result
    # The floor is the second after the removed one's creation, for every name.
    assert again.result.created_ms == other.result.created_ms == 1_700_000_001_000
    assert again.result.created_s != first.result.created_s
    (late,) = commit(store, register("c", NOW + 5_000))
    assert late.result.created_ms == NOW + 5_000  # past the floor, the clock again
    (stale,) = commit(store, lambda c: consumers.deregister(c, "s", "a", first.result.created_s))
    assert isinstance(stale.error, ResourceNotFoundError)


def test_delete_stream_and_create_again_in_one_commit(store: LogStore) -> None:
    commit(store, lambda c: c.create_stream("s", 1, NOW, 24))
    commit(store, register("a"))
    old = store.streams["s"].incarnation
    refused, enforced, created, registered = commit(
        store,
        lambda c: consumers.delete_stream(c, "s", enforce_consumer_deletion=False),
        lambda c: consumers.delete_stream(c, "s", enforce_consumer_deletion=True),
        lambda c: c.create_stream("s", 1, NOW, 24),
        register("a"),
    )
    assert isinstance(refused.error, ResourceInUseError)
    assert enforced.error is None and created.error is None
    assert registered.result.stream_incarnation != old
    assert registered.result.created_ms == 1_700_000_001_000
    assert listed(store) == ["a"]
    # Maintenance deletes the old incarnation's consumer with its other keys.
    while store.drops:
        store.commit([], NOW, maintain=True)
    env = store.environment
    with env.reading() as txn:
        assert consumers.list_consumers(txn, env.dbs["consumers"], old) == []
        assert txn.get(log_keys.consumer(old, "a"), db=env.dbs["consumers"]) is None


def test_the_floor_survives_a_restart(tmp_path: Path) -> None:
    config = LogConfig()
    store = LogStore(LogEnvironment(tmp_path), config)
    try:
        commit(store, lambda c: c.create_stream("s", 1, NOW, 24))
        (made,) = commit(store, register("a"))
        commit(store, lambda c: consumers.deregister(c, "s", "a"))
    finally:
        store.close()
    store = LogStore(LogEnvironment(tmp_path), config)
    try:
        (again,) = commit(store, register("a"))
        assert again.result.created_s == made.result.created_s + 1
    finally:
        store.close()


async def test_log_api(tmp_path: Path) -> None:
    """``Log``'s consumer methods, as the operations and SubscribeToShard use them."""
    async with open_log(tmp_path, clock=FakeClock(NOW)) as log:
        await log.create_stream("s", 1)
        made = await log.register_consumer("s", "b", max_consumers=5)
        assert made.created_ms == NOW and made.created_s == NOW // 1000
        await log.register_consumer("s", "a", max_consumers=5)
        assert log.get_consumer("s", "b") == made
        assert log.get_consumer("s", "zz") is None
        assert [c.name for c in log.list_consumers("s")] == ["a", "b"]
        assert [c.name for c in log.list_consumers("s", after="a")] == ["b"]
        assert [c.name for c in log.list_consumers("s", after="b")] == []
        assert [c.name for c in log.list_consumers("s", limit=1)] == ["a"]
        assert log.list_consumers("s", limit=0) == []
        with pytest.raises(ResourceNotFoundError):
            log.list_consumers("nope")
        with pytest.raises(ResourceNotFoundError):
            log.get_consumer("nope", "a")
        with pytest.raises(ResourceNotFoundError):
            await log.deregister_consumer("s", "b", created_s=made.created_s + 1)
        assert await log.deregister_consumer("s", "b", created_s=made.created_s) == made
        with pytest.raises(ResourceInUseError):
            await log.delete_stream("s")
        await log.delete_stream("s", enforce_consumer_deletion=True)
        with pytest.raises(ResourceNotFoundError):
            await log.register_consumer("s", "c", max_consumers=5)

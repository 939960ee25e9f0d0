"""The worker keeps its mappings running through transient failures, and skips nothing.

In-process workers against a real server (``serve``), with one broker call
made to fail once: the mapping restarts from its checkpoints, the worker's
other work goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.client import Client
from broker.client.transport import ConnectionLostError
from consumers.worker import Worker
from tests.e2e import worker_handlers
from tests.e2e.harness import serve

HANDLER = "python:tests.e2e.worker_handlers:record"
DEADLINE_S = 30


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    with trio.fail_after(DEADLINE_S):
        while not condition():
            await trio.sleep(0.05)
    assert condition(), what


def fail_once(monkeypatch: pytest.MonkeyPatch, method: str, spare: Client) -> list[Any]:
    """Make the worker's first ``Client.<method>`` raise ConnectionLostError (not ``spare``'s)."""
    original = getattr(Client, method)
    calls: list[Any] = []

    async def flaky(self: Client, *args: Any, **kwargs: Any) -> Any:
        if self is spare:
            return await original(self, *args, **kwargs)
        calls.append(args)
        if len(calls) == 1:
            raise ConnectionLostError("simulated: connection reset")
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Client, method, flaky)
    return calls


@pytest.mark.parametrize("method", ["set_checkpoint", "get_checkpoint"])
async def test_a_transient_broker_error_restarts_the_mapping_not_the_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    worker_handlers.SEEN.clear()
    async with serve(tmp_path / "data") as served, Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        created = await client.create_event_source_mapping(
            HANDLER, "s", starting_position="TRIM_HORIZON"
        )
        put = await client.put_records("s", [{"Data": b"x", "PartitionKey": "k"}])
        sequence = put.records[0].sequence_number
        calls = fail_once(monkeypatch, method, spare=client)
        worker = Worker(served.endpoint, poll_interval=0.2)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)

            async def checkpointed() -> bool:
                try:
                    cp = await client.get_checkpoint(
                        "s", f"mapping-{created.uuid}", put.records[0].shard_id
                    )
                except Exception:
                    return False
                return cp.sequence_number == sequence

            with trio.fail_after(DEADLINE_S):
                while not await checkpointed():
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert len(calls) >= 2  # the failure happened, and the mapping went on after it
        assert sequence in worker_handlers.SEEN


async def test_a_latest_mapping_reads_split_children_from_their_start(tmp_path: Path) -> None:
    worker_handlers.SEEN.clear()
    async with serve(tmp_path / "data") as served, Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        created = await client.create_event_source_mapping(HANDLER, "s", starting_position="LATEST")
        worker = Worker(served.endpoint, poll_interval=0.2)
        async with trio.open_nursery() as nursery:
            await nursery.start(worker.run)
            shard = (await client.list_shards("s")).shards[0].shard_id
            application = f"mapping-{created.uuid}"

            async def pinned() -> bool:  # the LATEST start is checkpointed once subscribed
                try:
                    await client.get_checkpoint("s", application, shard)
                except Exception:
                    return False
                return True

            with trio.fail_after(DEADLINE_S):
                while not await pinned():
                    await trio.sleep(0.05)
            await client.update_shard_count("s", 2)
            sent: list[str] = []
            for round_ in range(10):  # at once, before the children's readers subscribe
                put = await client.put_records(
                    "s", [{"Data": b"after", "PartitionKey": f"k{round_}-{i}"} for i in range(5)]
                )
                sent += [r.sequence_number for r in put.records]
            await wait_until(
                lambda: set(sent) <= set(worker_handlers.SEEN), "every record put after the split"
            )
            nursery.cancel_scope.cancel()

"""Fixtures for the operation tests: a real Broker over a real log, with a clock we move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from broker.config import BrokerConfig
from broker.log import LogConfig, open_log
from broker.operations import Broker, as_dict, dispatch
from tests.log.conformance.base import FakeClock

START_MS = 1_700_000_000_000


def make_config(tmp_path: Path, **overrides: Any) -> BrokerConfig:
    # No background retention during tests: the clock is ours to move.
    log = LogConfig(maintenance_interval=3600.0, max_shards_per_stream=64)
    return BrokerConfig(data=str(tmp_path / "data"), log=log, **overrides)


class Harness:
    """A broker, its clock, and shortcuts for calling operations."""

    def __init__(self, broker: Broker, clock: FakeClock) -> None:
        self.broker = broker
        self.clock = clock

    async def __call__(self, name: str, **request: Any) -> dict[str, Any]:
        return as_dict(await dispatch(self.broker, name, request))

    async def create(self, name: str = "s", shards: int = 2) -> None:
        await self("CreateStream", StreamName=name, ShardCount=shards)

    async def iterator(self, stream: str, shard: str, kind: str = "TRIM_HORIZON", **kw: Any) -> str:
        out = await self(
            "GetShardIterator", StreamName=stream, ShardId=shard, ShardIteratorType=kind, **kw
        )
        token: str = out["ShardIterator"]
        return token

    async def read_all(self, stream: str, shard: str) -> list[dict[str, Any]]:
        token: str | None = await self.iterator(stream, shard)
        records: list[dict[str, Any]] = []
        while token is not None:
            out = await self("GetRecords", ShardIterator=token)
            records.extend(out["Records"])
            if not out["Records"] and out["NextShardIterator"] is not None:
                break
            token = out["NextShardIterator"]
        return records


async def open_harness(tmp_path: Path, **overrides: Any) -> AsyncIterator[Harness]:
    config = make_config(tmp_path, **overrides)
    clock = FakeClock(START_MS)
    async with open_log(config.data, config.log, clock=clock) as log:
        yield Harness(Broker(log, config), clock)


@pytest.fixture
async def ops(tmp_path: Path) -> AsyncIterator[Harness]:
    async for harness in open_harness(tmp_path):
        yield harness

"""A real server with the real operation table on 127.0.0.1 port 0, for end-to-end tests.

``serve`` opens the log of a data directory (with an optional controllable
clock), starts ``Server`` on a free port and yields what tests need; leaving
the block cancels the server and closes the log.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from broker.client import Client, Record
from broker.config import BrokerConfig
from broker.log import open_log, wall_clock_ms
from broker.operations import Broker
from broker.protocol.codec import CONTENT_TYPE
from broker.server import Server


class ManualClock:
    """A log clock (milliseconds) that moves only when a test moves it."""

    def __init__(self) -> None:
        self.ms = wall_clock_ms()

    def __call__(self) -> int:
        return self.ms

    def advance(self, seconds: float) -> None:
        self.ms += int(seconds * 1000)


@dataclass
class Served:
    server: Server
    broker: Broker
    port: int
    stopped: trio.Event
    scheme: str = "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"


@asynccontextmanager
async def serve(
    data: Path,
    *,
    clock: ManualClock | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **settings: Any,
) -> AsyncIterator[Served]:
    config = BrokerConfig(data=str(data), port=0, **settings)
    async with (
        open_log(config.data, config.log, clock=clock or wall_clock_ms) as log,
        trio.open_nursery() as nursery,
    ):
        broker = Broker(log, config)
        server = Server(broker, ssl_context=ssl_context)
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await server.run("127.0.0.1", 0, task_status=task_status)
            finally:
                stopped.set()

        port = await nursery.start(run)
        yield Served(server, broker, port, stopped, "https" if ssl_context else "http")
        nursery.cancel_scope.cancel()


async def raw_post(
    client: Client, path: str, body: bytes, method: str = "POST"
) -> tuple[int, bytes]:
    """Send ``body`` as it is (no msgpack encoding) over the client's connection."""
    transport = client._transport
    assert transport is not None
    raw = await transport.request(path, body, CONTENT_TYPE, method)
    return raw.status, raw.body


async def read_all(client: Client, stream: str, shard: str) -> list[Record]:
    """Every record of one shard from its trim horizon until caught up or the shard's end."""
    iterator: str | None = (
        await client.get_shard_iterator(stream, shard, "TRIM_HORIZON")
    ).shard_iterator
    records: list[Record] = []
    while iterator is not None:
        page = await client.get_records(iterator)
        records += page.records
        iterator = page.next_shard_iterator
        if not page.records and page.millis_behind_latest == 0:
            break
    return records

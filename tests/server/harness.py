"""A real server on 127.0.0.1 port 0 with test-only operations, for server and client tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.config import BrokerConfig
from broker.errors import ResourceNotFoundError
from broker.operations import OPERATIONS, Broker, open_broker
from broker.server import Server


@dataclass
class SlowGate:
    """Lets a test hold ``TestSlow`` requests until it opens the gate."""

    entered: trio.Event = field(default_factory=trio.Event)
    release: trio.Event = field(default_factory=trio.Event)


@dataclass
class Running:
    server: Server
    port: int
    gate: SlowGate
    stopped: trio.Event

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def install_test_operations(monkeypatch: pytest.MonkeyPatch, gate: SlowGate) -> None:
    async def echo(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        return {"Echo": request}

    async def slow(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        gate.entered.set()
        await gate.release.wait()
        return {"Slow": True}

    async def boom(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("a bug in a handler")

    async def missing(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        raise ResourceNotFoundError("Stream nope not found")

    async def big(broker: Broker, request: dict[str, Any]) -> dict[str, Any]:
        return {"Data": b"\xab" * int(request.get("Size", 0))}

    for name, handler in {
        "TestEcho": echo,
        "TestSlow": slow,
        "TestBoom": boom,
        "TestMissing": missing,
        "TestBig": big,
    }.items():
        monkeypatch.setitem(OPERATIONS, name, handler)


@asynccontextmanager
async def running_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: Any
) -> AsyncIterator[Running]:
    gate = SlowGate()
    install_test_operations(monkeypatch, gate)
    config = BrokerConfig(data=str(tmp_path / "data"), port=0, **settings)
    async with open_broker(config) as broker, trio.open_nursery() as nursery:
        server = Server(broker)
        stopped = trio.Event()

        async def run(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await server.run("127.0.0.1", 0, task_status=task_status)
            finally:
                stopped.set()

        port = await nursery.start(run)
        yield Running(server, port, gate, stopped)
        gate.release.set()
        nursery.cancel_scope.cancel()

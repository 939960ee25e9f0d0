"""Streamed responses: a failing producer of events resets its stream, the connection goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h2.events
import pytest
import trio
from h2.errors import ErrorCodes

from broker.operations import OPERATIONS, Broker, Streamed
from broker.operations.base import BodySink

from .harness import RawH2, running_server


class Failing(Streamed):
    async def run(self, sink: BodySink) -> None:
        await sink.send(b"\x80")  # one event: an empty map
        raise RuntimeError("a bug in the producer of events")


async def test_a_failing_stream_is_reset_and_the_connection_serves_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(broker: Broker, request: dict[str, Any]) -> Streamed:
        return Failing()

    monkeypatch.setitem(OPERATIONS, "TestFailingStream", failing)
    async with running_server(tmp_path, monkeypatch) as server:
        connection = await RawH2.open(server.port)
        with trio.fail_after(10):
            stream_id = await connection.request(
                "POST",
                "/v1/TestFailingStream",
                body=b"\x80",
                extra_headers=[(b"content-type", b"application/msgpack")],
            )
            status, body = await connection.response(stream_id)
        assert status == 200 and body == b"\x80"
        resets = [
            e
            for e in connection.events
            if isinstance(e, h2.events.StreamReset) and e.stream_id == stream_id
        ]
        assert resets and resets[0].error_code == ErrorCodes.INTERNAL_ERROR
        with trio.fail_after(10):
            again = await connection.request("GET", "/healthz")
            assert (await connection.response(again))[0] == 200

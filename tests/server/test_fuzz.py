"""Random request bodies never produce a 500 or a dead server."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.client import Client
from broker.protocol.codec import CONTENT_TYPE

from .harness import Running, running_server


@pytest.fixture
def threaded_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """A server in its own thread and trio run: hypothesis runs each example in a new one."""
    started: queue.Queue[tuple[Running, trio.lowlevel.TrioToken, trio.CancelScope]] = queue.Queue()

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with running_server(tmp_path, monkeypatch) as running:
                started.put((running, trio.lowlevel.current_trio_token(), scope))
                await trio.sleep_forever()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    running, token, scope = started.get(timeout=10)
    yield running
    trio.from_thread.run_sync(scope.cancel, trio_token=token)
    thread.join(timeout=10)


bodies = st.one_of(
    st.binary(max_size=4096),
    st.builds(
        msgpack.packb,
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**64 - 1)
            | st.text(max_size=20)
            | st.binary(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=10), inner, max_size=4)
            ),
            max_leaves=20,
        ),
    ),
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, operation=st.sampled_from(["TestEcho", "PutRecords", "Nope", "CreateStream"]))
async def test_random_bodies_never_500(
    threaded_server: Running, body: bytes, operation: str
) -> None:
    async with Client(threaded_server.endpoint) as client:
        transport = client._transport
        assert transport is not None
        raw = await transport.request(f"/v1/{operation}", body, CONTENT_TYPE)
        assert raw.status != 500, raw.body
        answer = msgpack.unpackb(raw.body)
        assert isinstance(answer, dict)
        if raw.status != 200:
            assert isinstance(answer["__type"], str)
        health = await transport.request("/healthz", b"", CONTENT_TYPE, "GET")
        assert health.status == 200

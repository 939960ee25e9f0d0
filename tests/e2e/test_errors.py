"""Every error path answers its named error while the server keeps serving everyone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio

from broker.client import Client
from broker.errors import ShardlineError

from .harness import ManualClock, Served, raw_post, serve

S0, S1 = "shardId-000000000000", "shardId-000000000001"
MIB = 1 << 20


async def expect_error(
    failing: Client, other: Client, call: Callable[[Client], Awaitable[Any]], wire_name: str
) -> ShardlineError:
    """``call`` fails with ``wire_name``; both connections keep working afterwards."""
    with pytest.raises(ShardlineError) as caught:
        await call(failing)
    assert caught.value.wire_name == wire_name, caught.value
    put = await other.put_record("s", b"still here", "k")
    assert put.shard_id in (S0, S1)
    assert (await failing.describe_stream_summary("s")).stream_name == "s"
    return caught.value


async def test_named_errors_while_a_second_connection_works(served: Served) -> None:
    async with Client(served.endpoint) as one, Client(served.endpoint) as two:
        await one.create_stream("s", 2)
        first = await one.put_record("s", b"a", "k", explicit_hash_key="0")
        other_shard = await one.put_record("s", b"b", "k", explicit_hash_key=str(1 << 127))
        iterator = (await one.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator

        cases: list[tuple[Callable[[Client], Awaitable[Any]], str]] = [
            (lambda c: c.describe_stream("nope"), "ResourceNotFoundException"),
            (lambda c: c.put_record("nope", b"x", "k"), "ResourceNotFoundException"),
            (
                lambda c: c.get_shard_iterator("nope", S0, "LATEST"),
                "ResourceNotFoundException",
            ),
            (lambda c: raw(c, "/v1/PutRecords", b"\xc1\xc1 not msgpack"), "SerializationException"),
            (lambda c: raw(c, "/v1/PutRecords", msgpack.packb([1, 2])), "SerializationException"),
            (lambda c: c.call("NoSuchOperation", {}), "UnknownOperationException"),
            (lambda c: c.call("CreateStream", {"StreamName": 5}), "ValidationException"),
            (
                lambda c: c.call("CreateStream", {"StreamName": "t", "ShardCount": "2"}),
                "ValidationException",
            ),
            (
                lambda c: c.call(
                    "PutRecord", {"StreamName": "s", "Data": "str", "PartitionKey": "k"}
                ),
                "ValidationException",
            ),
            (lambda c: c.call("PutRecords", {"StreamName": "s"}), "ValidationException"),
            (lambda c: c.put_record("s", b"x" * (MIB + 1), "k"), "InvalidArgumentException"),
            (
                lambda c: c.put_records(
                    "s", [{"Data": b"x" * 1_000_000, "PartitionKey": "k"} for _ in range(6)]
                ),
                "InvalidArgumentException",
            ),
            (
                lambda c: c.put_records(
                    "s", [{"Data": b"x", "PartitionKey": "k"} for _ in range(501)]
                ),
                "InvalidArgumentException",
            ),
            (lambda c: c.put_records("s", []), "InvalidArgumentException"),
            (lambda c: c.get_records("garbage"), "InvalidArgumentException"),
            (
                lambda c: c.get_records(
                    iterator[:-4] + ("AAAA" if iterator[-4:] != "AAAA" else "BBBB")
                ),
                "InvalidArgumentException",
            ),
            (lambda c: c.get_records("x" * 513), "InvalidArgumentException"),
            (
                lambda c: c.get_shard_iterator("s", "shardId-000000000009", "LATEST"),
                "ResourceNotFoundException",
            ),
            (
                lambda c: c.get_shard_iterator("s", "shard-zero", "LATEST"),
                "InvalidArgumentException",
            ),
            (lambda c: c.get_shard_iterator("s", S0, "SOMEWHERE"), "InvalidArgumentException"),
            (
                lambda c: c.get_shard_iterator(
                    "s",
                    S1,
                    "AT_SEQUENCE_NUMBER",
                    starting_sequence_number=first.sequence_number,
                ),
                "InvalidArgumentException",
            ),
            (
                lambda c: c.get_shard_iterator(
                    "s",
                    S0,
                    "AFTER_SEQUENCE_NUMBER",
                    starting_sequence_number=other_shard.sequence_number,
                ),
                "InvalidArgumentException",
            ),
            (lambda c: c.create_stream("s", 1), "ResourceInUseException"),
        ]
        mismatches = []
        for index, (call, wire_name) in enumerate(cases):
            failing, other = (one, two) if index % 2 == 0 else (two, one)
            try:
                with trio.fail_after(5):
                    await expect_error(failing, other, call, wire_name)
            except (AssertionError, trio.TooSlowError) as exc:
                mismatches.append((index, repr(exc).split("\\n")[0]))
        assert not mismatches, "\n".join(f"case {i}: {m}" for i, m in mismatches)

        page = await two.get_records(iterator)
        assert page.records[0].data == b"a"


async def raw(client: Client, path: str, body: bytes) -> None:
    """POST ``body`` unencoded; raise the named error the server answers with."""
    status, answer = await raw_post(client, path, body)
    error = msgpack.unpackb(answer)
    assert status in (400, 413), (status, error)
    raised = type("Raised", (ShardlineError,), {"wire_name": error["__type"]})
    raise raised(error["message"])


async def test_oversized_body_while_a_second_connection_works(tmp_path: Path) -> None:
    async with (
        serve(tmp_path / "data", max_body_bytes=64 * 1024) as served,
        Client(served.endpoint) as one,
        Client(served.endpoint) as two,
    ):
        await one.create_stream("s", 2)
        body = msgpack.packb({"StreamName": "s", "Data": b"x" * 100_000, "PartitionKey": "k"})
        error = await expect_error(
            one, two, lambda c: raw(c, "/v1/PutRecord", body), "ValidationException"
        )
        assert "exceeds" in error.message


async def test_body_far_over_the_limit_is_answered(tmp_path: Path) -> None:
    async with (
        serve(tmp_path / "data", max_body_bytes=8 * MIB) as served,
        Client(served.endpoint) as one,
    ):
        await one.create_stream("s", 1)
        with trio.fail_after(3), pytest.raises(ShardlineError) as caught:
            await raw(one, "/v1/PutRecord", b"\x00" * (9 * MIB))
        assert caught.value.wire_name == "ValidationException"


async def test_expired_iterator(tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        serve(tmp_path / "data", clock=clock, iterator_lifetime_s=2.0) as served,
        Client(served.endpoint) as one,
        Client(served.endpoint) as two,
    ):
        await one.create_stream("s", 1)
        await one.put_record("s", b"a", "k")
        iterator = (await one.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        clock.advance(1.5)
        page = await one.get_records(iterator)
        assert [r.data for r in page.records] == [b"a"]
        fresh = page.next_shard_iterator
        assert fresh is not None
        clock.advance(1.0)
        await expect_error(one, two, lambda c: c.get_records(iterator), "ExpiredIteratorException")
        assert [r.data for r in (await one.get_records(fresh)).records] == [b"still here"]
        clock.advance(2.5)
        await expect_error(two, one, lambda c: c.get_records(fresh), "ExpiredIteratorException")

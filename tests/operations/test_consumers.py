"""RegisterStreamConsumer, DeregisterStreamConsumer, DescribeStreamConsumer, ListStreamConsumers.

Also what consumers change elsewhere: DeleteStream refuses a stream that has
them (unless ``EnforceConsumerDeletion``), DescribeStreamSummary counts them,
and they survive a restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from broker.errors import (
    ExpiredNextTokenError,
    InvalidArgumentError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
    ShardlineError,
    ValidationError,
)
from broker.log import keys as log_keys
from broker.log.consumers import check_consumer_name

from .conftest import START_MS, Harness, open_harness

STREAM_ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
S = STREAM_ARN + "s"


def consumer_arn(name: str, created_ms: int = START_MS, stream: str = "s") -> str:
    return f"{STREAM_ARN}{stream}/consumer/{name}:{created_ms // 1000}"


@asynccontextmanager
async def opened(tmp_path: Path, **overrides: Any) -> AsyncIterator[Harness]:
    """A harness over the data directory in ``tmp_path``, closed (log and all) on exit."""
    async for harness in open_harness(tmp_path, **overrides):
        yield harness


async def register(ops: Harness, name: str, stream_arn: str = S) -> dict[str, Any]:
    out = await ops("RegisterStreamConsumer", StreamARN=stream_arn, ConsumerName=name)
    consumer: dict[str, Any] = out["Consumer"]
    return consumer


async def names(ops: Harness, stream_arn: str = S) -> list[str]:
    out = await ops("ListStreamConsumers", StreamARN=stream_arn)
    return [c["ConsumerName"] for c in out["Consumers"]]


def stored_consumers(ops: Harness, incarnation: int) -> int:
    """Keys under an incarnation's prefix in the ``consumers`` database."""
    env = ops.broker.log.store.environment
    prefix = log_keys.incarnation(incarnation)
    count = 0
    with env.reading() as txn:
        cursor = txn.cursor(db=env.dbs["consumers"])
        found = cursor.set_range(prefix)
        while found and cursor.key().startswith(prefix):
            count += 1
            found = cursor.next()
    return count


# -- register, describe, list -------------------------------------------------------


async def test_register_describe_and_list(ops: Harness) -> None:
    await ops.create("s")
    consumer = await register(ops, "app-1")
    assert consumer == {
        "ConsumerName": "app-1",
        "ConsumerARN": f"{S}/consumer/app-1:{START_MS // 1000}",
        "ConsumerStatus": "ACTIVE",
        "ConsumerCreationTimestamp": START_MS,
    }
    by_arn = await ops("DescribeStreamConsumer", ConsumerARN=consumer["ConsumerARN"])
    assert by_arn == {"ConsumerDescription": {**consumer, "StreamARN": S}}
    by_name = await ops("DescribeStreamConsumer", StreamARN=S, ConsumerName="app-1")
    assert by_name == by_arn
    every = await ops(
        "DescribeStreamConsumer",
        ConsumerARN=consumer["ConsumerARN"],
        StreamARN=S,
        ConsumerName="app-1",
    )
    assert every == by_arn

    ops.clock.advance(5_000)
    await register(ops, "B.2")
    await register(ops, "a_3")
    listed = await ops("ListStreamConsumers", StreamARN=S)
    assert "NextToken" not in listed
    # Name order (byte order: upper case before lower case).
    assert [c["ConsumerName"] for c in listed["Consumers"]] == ["B.2", "a_3", "app-1"]
    assert listed["Consumers"][2] == consumer
    assert listed["Consumers"][0]["ConsumerCreationTimestamp"] == START_MS + 5_000
    summary = await ops("DescribeStreamSummary", StreamName="s")
    assert summary["StreamDescriptionSummary"]["ConsumerCount"] == 3


async def test_names_are_per_stream(ops: Harness) -> None:
    await ops.create("s")
    await ops.create("t")
    await register(ops, "c")
    with pytest.raises(ResourceInUseError, match="already exists"):
        await register(ops, "c")
    other = await register(ops, "c", STREAM_ARN + "t")
    assert other["ConsumerARN"] == consumer_arn("c", stream="t")
    assert await names(ops, STREAM_ARN + "t") == ["c"]
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStreamConsumer", ConsumerARN=consumer_arn("d"))
    await ops("DeregisterStreamConsumer", ConsumerARN=other["ConsumerARN"])
    assert await names(ops) == ["c"]
    assert await names(ops, STREAM_ARN + "t") == []


async def test_tags_are_kept_but_not_part_of_the_consumer_shape(ops: Harness) -> None:
    await ops.create("s")
    out = await ops("RegisterStreamConsumer", StreamARN=S, ConsumerName="c", Tags={"team": "x"})
    assert set(out["Consumer"]) == {
        "ConsumerName",
        "ConsumerARN",
        "ConsumerStatus",
        "ConsumerCreationTimestamp",
    }
    tags = await ops("ListTagsForResource", ResourceARN=out["Consumer"]["ConsumerARN"])
    assert tags["Tags"] == [{"Key": "team", "Value": "x"}]


def test_consumer_names_follow_kinesis_pattern() -> None:
    for good in ("a", "A-b_c.9", "x" * 128):
        assert check_consumer_name(good) == good
    for bad in ("", "x" * 129, "a b", "a/b", "a:b", "é", None, 7):
        with pytest.raises(InvalidArgumentError, match="ConsumerName"):
            check_consumer_name(bad)


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"ConsumerName": "c"}, ValidationError),
        ({"StreamName": "s", "ConsumerName": "c"}, ValidationError),
        ({"StreamARN": 7, "ConsumerName": "c"}, ValidationError),
        ({"StreamARN": "s", "ConsumerName": "c"}, InvalidArgumentError),
        ({"StreamARN": S + "/x", "ConsumerName": "c"}, InvalidArgumentError),
        (
            {"StreamARN": S.replace("us-east-1", "eu-west-1"), "ConsumerName": "c"},
            ResourceNotFoundError,
        ),
        ({"StreamARN": STREAM_ARN + "nope", "ConsumerName": "c"}, ResourceNotFoundError),
        ({"StreamARN": S}, ValidationError),
        ({"StreamARN": S, "ConsumerName": b"c"}, ValidationError),
        ({"StreamARN": S, "ConsumerName": ""}, InvalidArgumentError),
        ({"StreamARN": S, "ConsumerName": "x" * 129}, InvalidArgumentError),
        ({"StreamARN": S, "ConsumerName": "a b"}, InvalidArgumentError),
        ({"StreamARN": S, "ConsumerName": "c", "Tags": ["a"]}, ValidationError),
        ({"StreamARN": S, "ConsumerName": "c", "Tags": {"a": 1}}, ValidationError),
    ],
)
async def test_register_errors(
    ops: Harness, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s")
    with pytest.raises(error) as info:
        await ops("RegisterStreamConsumer", **request_)
    assert info.value.http_status == 400
    assert await names(ops) == []


# -- the limit --------------------------------------------------------------------------


async def test_default_limit_is_twenty_per_stream(ops: Harness) -> None:
    assert ops.broker.config.max_consumers_per_stream == 20
    await ops.create("s")
    await ops.create("t")
    for i in range(20):
        await register(ops, f"c{i:02d}")
    with pytest.raises(LimitExceededError, match="20") as info:
        await register(ops, "one-more")
    assert info.value.retriable
    await register(ops, "one-more", STREAM_ARN + "t")  # the limit is per stream
    await ops("DeregisterStreamConsumer", StreamARN=S, ConsumerName="c00")
    await register(ops, "one-more")
    assert len(await names(ops)) == 20


async def test_limit_holds_within_one_commit(tmp_path: Path) -> None:
    """Concurrent registrations (sharing group commits) never pass the limit together."""
    async with opened(tmp_path, max_consumers_per_stream=5) as ops:
        await ops.create("s")
        outcomes: list[str] = []

        async def attempt(name: str) -> None:
            try:
                await register(ops, name)
                outcomes.append("ok")
            except ShardlineError as exc:
                outcomes.append(exc.wire_name)

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(attempt, f"c{i}")
            nursery.start_soon(attempt, "c0")  # a duplicate in the same commit
        assert len(outcomes) == 9
        assert outcomes.count("ok") == 5
        assert len(await names(ops)) == 5
        assert set(outcomes) <= {"ok", "LimitExceededException", "ResourceInUseException"}


# -- addressing and unknown consumers -------------------------------------------------------


BAD_ADDRESSES: list[tuple[dict[str, Any], type[ShardlineError]]] = [
    ({}, ValidationError),
    ({"StreamARN": S}, ValidationError),
    ({"ConsumerName": "c"}, ValidationError),
    ({"ConsumerARN": 7}, ValidationError),
    ({"ConsumerARN": "c"}, InvalidArgumentError),
    ({"ConsumerARN": S}, InvalidArgumentError),
    ({"ConsumerARN": S + "/consumer/c"}, InvalidArgumentError),
    ({"ConsumerARN": S + "/consumer/c:"}, InvalidArgumentError),
    ({"ConsumerARN": S + "/consumer/c:12x"}, InvalidArgumentError),
    ({"ConsumerARN": S + "/consumer/a b:1"}, InvalidArgumentError),
    ({"ConsumerARN": S + "/consumers/c:1"}, InvalidArgumentError),
    ({"ConsumerARN": "x" * 3000}, InvalidArgumentError),
    (
        {"ConsumerARN": consumer_arn("c").replace("000000000000", "123456789012")},
        ResourceNotFoundError,
    ),
    ({"ConsumerARN": consumer_arn("c"), "StreamARN": STREAM_ARN + "t"}, InvalidArgumentError),
    ({"ConsumerARN": consumer_arn("c"), "ConsumerName": "d"}, InvalidArgumentError),
    ({"StreamARN": S, "ConsumerName": "a b"}, InvalidArgumentError),
    # Well formed, but no such consumer: another second, another name, another stream.
    ({"ConsumerARN": consumer_arn("c", START_MS + 1_000)}, ResourceNotFoundError),
    ({"ConsumerARN": consumer_arn("c", START_MS - 1_000)}, ResourceNotFoundError),
    ({"ConsumerARN": consumer_arn("d")}, ResourceNotFoundError),
    ({"ConsumerARN": consumer_arn("c", stream="t")}, ResourceNotFoundError),
    ({"ConsumerARN": consumer_arn("c", stream="nope")}, ResourceNotFoundError),
    ({"StreamARN": S, "ConsumerName": "d"}, ResourceNotFoundError),
    ({"StreamARN": STREAM_ARN + "t", "ConsumerName": "c"}, ResourceNotFoundError),
    ({"StreamARN": STREAM_ARN + "nope", "ConsumerName": "c"}, ResourceNotFoundError),
]


@pytest.mark.parametrize("operation", ["DescribeStreamConsumer", "DeregisterStreamConsumer"])
@pytest.mark.parametrize(("request_", "error"), BAD_ADDRESSES)
async def test_addressing_errors(
    ops: Harness, operation: str, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s")
    await ops.create("t")
    await register(ops, "c")
    with pytest.raises(error):
        await ops(operation, **request_)
    assert await names(ops) == ["c"]


async def test_deregister_by_arn_or_by_name(ops: Harness) -> None:
    await ops.create("s")
    first = await register(ops, "a")
    await register(ops, "b")
    assert await ops("DeregisterStreamConsumer", ConsumerARN=first["ConsumerARN"]) == {}
    assert await names(ops) == ["b"]
    assert await ops("DeregisterStreamConsumer", StreamARN=S, ConsumerName="b") == {}
    assert await names(ops) == []
    for request in ({"ConsumerARN": first["ConsumerARN"]}, {"StreamARN": S, "ConsumerName": "b"}):
        with pytest.raises(ResourceNotFoundError):
            await ops("DeregisterStreamConsumer", **request)
        with pytest.raises(ResourceNotFoundError):
            await ops("DescribeStreamConsumer", **request)


async def test_registered_again_gets_a_new_arn(ops: Harness) -> None:
    await ops.create("s")
    old = await register(ops, "c")
    await ops("DeregisterStreamConsumer", ConsumerARN=old["ConsumerARN"])
    # The same second of the clock: the creation time moves to the next second.
    new = await register(ops, "c")
    assert new["ConsumerCreationTimestamp"] == START_MS + 1_000
    assert new["ConsumerARN"] == consumer_arn("c", START_MS + 1_000)
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStreamConsumer", ConsumerARN=old["ConsumerARN"])
    with pytest.raises(ResourceNotFoundError):
        await ops("DeregisterStreamConsumer", ConsumerARN=old["ConsumerARN"])
    described = await ops("DescribeStreamConsumer", ConsumerARN=new["ConsumerARN"])
    assert described["ConsumerDescription"]["ConsumerCreationTimestamp"] == START_MS + 1_000
    # Other names are stamped past the floor too, but once the clock passes it, by the clock.
    ops.clock.advance(2_500)
    later = await register(ops, "d")
    assert later["ConsumerCreationTimestamp"] == START_MS + 2_500


# -- ListStreamConsumers pagination --------------------------------------------------------


async def test_list_pages(ops: Harness) -> None:
    await ops.create("s")
    for name in ("e", "d", "c", "b", "a"):
        await register(ops, name)
    first = await ops("ListStreamConsumers", StreamARN=S, MaxResults=2)
    assert [c["ConsumerName"] for c in first["Consumers"]] == ["a", "b"]
    second = await ops("ListStreamConsumers", StreamARN=S, NextToken=first["NextToken"])
    assert [c["ConsumerName"] for c in second["Consumers"]] == ["c", "d", "e"]
    assert "NextToken" not in second
    # MaxResults may change from page to page; a consumer removed meanwhile is skipped.
    await ops("DeregisterStreamConsumer", StreamARN=S, ConsumerName="c")
    smaller = await ops(
        "ListStreamConsumers", StreamARN=S, NextToken=first["NextToken"], MaxResults=1
    )
    assert [c["ConsumerName"] for c in smaller["Consumers"]] == ["d"]
    last = await ops("ListStreamConsumers", StreamARN=S, NextToken=smaller["NextToken"])
    assert [c["ConsumerName"] for c in last["Consumers"]] == ["e"]
    assert "NextToken" not in last
    exact = await ops("ListStreamConsumers", StreamARN=S, MaxResults=4)
    assert len(exact["Consumers"]) == 4 and "NextToken" not in exact


async def test_list_with_creation_timestamp(ops: Harness) -> None:
    await ops.create("s")
    await register(ops, "a")
    out = await ops("ListStreamConsumers", StreamARN=S, StreamCreationTimestamp=START_MS)
    assert [c["ConsumerName"] for c in out["Consumers"]] == ["a"]
    with pytest.raises(ResourceNotFoundError, match="created at"):
        await ops("ListStreamConsumers", StreamARN=S, StreamCreationTimestamp=START_MS - 1)


async def test_list_errors(ops: Harness) -> None:
    await ops.create("s")
    await ops.create("t")
    for name in ("a", "b", "c"):
        await register(ops, name)
    token = (await ops("ListStreamConsumers", StreamARN=S, MaxResults=1))["NextToken"]
    bad: list[tuple[dict[str, Any], type[ShardlineError], str]] = [
        ({}, ValidationError, "StreamARN"),
        ({"NextToken": token}, ValidationError, "StreamARN"),
        ({"StreamARN": S, "MaxResults": 0}, InvalidArgumentError, "MaxResults"),
        ({"StreamARN": S, "MaxResults": 10_001}, InvalidArgumentError, "MaxResults"),
        ({"StreamARN": S, "MaxResults": "2"}, ValidationError, "MaxResults"),
        ({"StreamARN": S, "NextToken": 5}, ValidationError, "NextToken"),
        ({"StreamARN": S, "NextToken": "garbage"}, InvalidArgumentError, "NextToken"),
        ({"StreamARN": S, "NextToken": token[:-2]}, InvalidArgumentError, "NextToken"),
        ({"StreamARN": STREAM_ARN + "t", "NextToken": token}, InvalidArgumentError, "stream s"),
        (
            {"StreamARN": S, "NextToken": token, "StreamCreationTimestamp": START_MS},
            InvalidArgumentError,
            "cannot be combined",
        ),
        ({"StreamARN": S, "StreamCreationTimestamp": "x"}, ValidationError, "Stream"),
        ({"StreamARN": STREAM_ARN + "nope"}, ResourceNotFoundError, "nope"),
    ]
    for request, error, message in bad:
        with pytest.raises(error, match=message):
            await ops("ListStreamConsumers", **request)
    # Tokens of other listings are not ListStreamConsumers tokens, nor the reverse.
    streams_token = (await ops("ListStreams", Limit=1))["NextToken"]
    with pytest.raises(InvalidArgumentError, match="ListStreamConsumers"):
        await ops("ListStreamConsumers", StreamARN=S, NextToken=streams_token)
    with pytest.raises(InvalidArgumentError, match="ListStreams"):
        await ops("ListStreams", NextToken=token)
    with pytest.raises(InvalidArgumentError, match="ListShards"):
        await ops("ListShards", NextToken=token)
    ops.clock.advance(300_001)
    with pytest.raises(ExpiredNextTokenError):
        await ops("ListStreamConsumers", StreamARN=S, NextToken=token)


async def test_list_token_of_a_deleted_stream(ops: Harness) -> None:
    await ops.create("s")
    await register(ops, "a")
    await register(ops, "b")
    token = (await ops("ListStreamConsumers", StreamARN=S, MaxResults=1))["NextToken"]
    await ops("DeleteStream", StreamName="s", EnforceConsumerDeletion=True)
    with pytest.raises(ResourceNotFoundError):
        await ops("ListStreamConsumers", StreamARN=S, NextToken=token)
    await ops.create("s")
    await register(ops, "b")
    with pytest.raises(ResourceNotFoundError, match="deleted"):
        await ops("ListStreamConsumers", StreamARN=S, NextToken=token)


# -- DeleteStream ------------------------------------------------------------------------


async def test_delete_stream_refused_while_consumers_are_registered(ops: Harness) -> None:
    await ops.create("s")
    await register(ops, "c")
    for request in ({}, {"EnforceConsumerDeletion": False}):
        with pytest.raises(ResourceInUseError, match="EnforceConsumerDeletion"):
            await ops("DeleteStream", StreamName="s", **request)
    assert await names(ops) == ["c"]
    await ops("DeregisterStreamConsumer", StreamARN=S, ConsumerName="c")
    assert await ops("DeleteStream", StreamName="s") == {}
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStream", StreamName="s")


async def test_enforced_deletion_takes_the_consumers_along(ops: Harness) -> None:
    await ops.create("s")
    old = [await register(ops, name) for name in ("a", "b", "c")]
    incarnation = ops.broker.log.describe("s").incarnation
    assert stored_consumers(ops, incarnation) == 3
    assert await ops("DeleteStream", StreamARN=S, EnforceConsumerDeletion=True) == {}
    with pytest.raises(ResourceNotFoundError):
        await ops("ListStreamConsumers", StreamARN=S)
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStreamConsumer", ConsumerARN=old[0]["ConsumerARN"])

    # The same name again: no old consumers, and old ARNs name nothing, even in the same second.
    await ops.create("s")
    assert await names(ops) == []
    summary = await ops("DescribeStreamSummary", StreamName="s")
    assert summary["StreamDescriptionSummary"]["ConsumerCount"] == 0
    again = await register(ops, "a")
    assert again["ConsumerARN"] != old[0]["ConsumerARN"]
    for consumer in old:
        with pytest.raises(ResourceNotFoundError):
            await ops("DescribeStreamConsumer", ConsumerARN=consumer["ConsumerARN"])
    # Maintenance deletes the old incarnation's consumer keys.
    for _ in range(10):
        if stored_consumers(ops, incarnation) == 0:
            break
        await ops.broker.log.maintain()
    assert stored_consumers(ops, incarnation) == 0
    assert await names(ops) == ["a"]


# -- persistence ---------------------------------------------------------------------------


async def test_consumers_survive_a_restart(tmp_path: Path) -> None:
    async with opened(tmp_path) as ops:
        await ops.create("s")
        await ops.create("t")
        kept = await register(ops, "kept")
        gone = await register(ops, "gone")
        await register(ops, "other", STREAM_ARN + "t")
        await ops("DeregisterStreamConsumer", ConsumerARN=gone["ConsumerARN"])
    async with opened(tmp_path) as ops:
        # The clock starts over at START_MS: the stored floor still gives "gone" a new ARN.
        assert await names(ops) == ["kept"]
        assert await names(ops, STREAM_ARN + "t") == ["other"]
        described = await ops("DescribeStreamConsumer", ConsumerARN=kept["ConsumerARN"])
        assert described["ConsumerDescription"]["ConsumerCreationTimestamp"] == START_MS
        again = await register(ops, "gone")
        assert again["ConsumerARN"] != gone["ConsumerARN"]
        with pytest.raises(ResourceInUseError):
            await ops("DeleteStream", StreamName="s")
        await ops("DeleteStream", StreamName="s", EnforceConsumerDeletion=True)
    async with opened(tmp_path) as ops:
        with pytest.raises(ResourceNotFoundError):
            await ops("ListStreamConsumers", StreamARN=S)
        await ops.create("s")
        assert await names(ops) == []
        assert await names(ops, STREAM_ARN + "t") == ["other"]

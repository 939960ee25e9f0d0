"""Tags: AddTagsToStream, RemoveTagsFromStream, ListTagsForStream, TagResource,
UntagResource, ListTagsForResource, and the ``Tags`` of CreateStream and
RegisterStreamConsumer.

Every operation against a real log: its limits and named errors, tags kept
across a restart, the 50-tag limit held under concurrent additions, a
consumer's tags by its ARN (gone with it, and absent from rows written before
consumers held tags), and a hypothesis test of add/remove sequences against a
dict model.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import (
    InvalidArgumentError,
    LimitExceededError,
    ResourceNotFoundError,
    ShardlineError,
    ValidationError,
)
from broker.log import keys as log_keys
from broker.log.catalog import MAX_TAGS_PER_STREAM
from broker.log.env import LogEnvironment
from broker.log.store import Commit, LogStore, Op

from .conftest import START_MS, Harness, make_config, open_harness

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"


async def tags_of(ops: Harness, stream: str = "s") -> dict[str, str]:
    """The stream's tags, read through ListTagsForStream in one page."""
    out = await ops("ListTagsForStream", StreamName=stream)
    assert out["HasMoreTags"] is False
    keys = [t["Key"] for t in out["Tags"]]
    assert keys == sorted(keys)
    return {t["Key"]: t["Value"] for t in out["Tags"]}


def many(count: int, prefix: str = "k") -> dict[str, str]:
    return {f"{prefix}{i:03d}": f"v{i}" for i in range(count)}


# -- CreateStream and the stream operations ---------------------------------------------


async def test_create_stream_keeps_its_tags(ops: Harness) -> None:
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"team": "a", "env": "prod"})
    assert await tags_of(ops) == {"env": "prod", "team": "a"}
    out = await ops("ListTagsForResource", ResourceARN=ARN + "s")
    assert out == {"Tags": [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "a"}]}


async def test_create_stream_without_tags_has_none(ops: Harness) -> None:
    await ops.create("s", 1)
    assert await ops("ListTagsForStream", StreamName="s") == {"Tags": [], "HasMoreTags": False}
    assert await ops("ListTagsForResource", ResourceARN=ARN + "s") == {"Tags": []}


async def test_create_stream_over_the_tag_limit_creates_nothing(ops: Harness) -> None:
    with pytest.raises(LimitExceededError, match="at most 50"):
        await ops("CreateStream", StreamName="s", ShardCount=1, Tags=many(51))
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStreamSummary", StreamName="s")
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags=many(50))
    assert len(await tags_of(ops)) == 50


async def test_create_stream_checks_its_tags(ops: Harness) -> None:
    with pytest.raises(InvalidArgumentError, match="not allowed"):
        await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"a#b": "x"})
    with pytest.raises(ResourceNotFoundError):
        await ops("DescribeStreamSummary", StreamName="s")


async def test_add_overwrites_and_adds(ops: Harness) -> None:
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"a": "1", "b": "2"})
    assert await ops("AddTagsToStream", StreamName="s", Tags={"b": "20", "c": ""}) == {}
    assert await tags_of(ops) == {"a": "1", "b": "20", "c": ""}
    # By ARN too, and by both when they agree.
    await ops("AddTagsToStream", StreamARN=ARN + "s", Tags={"d": "4"})
    await ops("AddTagsToStream", StreamName="s", StreamARN=ARN + "s", Tags={"e": "5"})
    assert set(await tags_of(ops)) == {"a", "b", "c", "d", "e"}


async def test_add_takes_at_most_ten_per_call(ops: Harness) -> None:
    await ops.create("s", 1)
    with pytest.raises(InvalidArgumentError, match="at most 10"):
        await ops("AddTagsToStream", StreamName="s", Tags=many(11))
    assert await tags_of(ops) == {}
    await ops("AddTagsToStream", StreamName="s", Tags=many(10))
    assert await tags_of(ops) == many(10)


async def test_fifty_tags_per_stream(ops: Harness) -> None:
    await ops.create("s", 1)
    tags = many(50)
    keys = sorted(tags)
    for i in range(0, len(keys), 10):
        await ops("AddTagsToStream", StreamName="s", Tags={k: tags[k] for k in keys[i : i + 10]})
    assert await tags_of(ops) == tags
    with pytest.raises(LimitExceededError, match="51 tags"):
        await ops("AddTagsToStream", StreamName="s", Tags={"new": "x", "k000": "changed"})
    # Refused whole: the overwrite in the same call did not happen either.
    assert await tags_of(ops) == tags
    with pytest.raises(LimitExceededError):
        await ops("TagResource", ResourceARN=ARN + "s", Tags={"new": "x"})
    # Overwriting at the limit is fine; so is adding after a removal.
    await ops("AddTagsToStream", StreamName="s", Tags={"k000": "changed"})
    await ops("RemoveTagsFromStream", StreamName="s", TagKeys=["k001"])
    await ops("AddTagsToStream", StreamName="s", Tags={"new": "x"})
    now = await tags_of(ops)
    assert len(now) == 50
    assert now["k000"] == "changed" and now["new"] == "x" and "k001" not in now


async def test_tag_resource_takes_up_to_the_stream_limit_in_one_call(ops: Harness) -> None:
    await ops.create("s", 1)
    with pytest.raises(LimitExceededError):
        await ops("TagResource", ResourceARN=ARN + "s", Tags=many(51))
    await ops("TagResource", ResourceARN=ARN + "s", Tags=many(50))
    assert await tags_of(ops) == many(50)


async def race_two_additions(ops: Harness, arn: str) -> str:
    """Two concurrent 30-tag TagResource calls on ``arn``: exactly one lands; its prefix."""
    outcomes: list[str] = []

    async def add(prefix: str) -> None:
        try:
            await ops("TagResource", ResourceARN=arn, Tags=many(30, prefix))
        except LimitExceededError:
            outcomes.append("refused")
        else:
            outcomes.append(prefix)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(add, "a")
            nursery.start_soon(add, "b")
    assert len(outcomes) == 2 and outcomes.count("refused") == 1
    return next(o for o in outcomes if o != "refused")


async def test_concurrent_additions_cannot_pass_the_limit_together(ops: Harness) -> None:
    """The count is checked in the commit: of two 30-tag additions, exactly one lands."""
    await ops.create("s", 1)
    winner = await race_two_additions(ops, ARN + "s")
    assert await tags_of(ops) == many(30, winner)


async def test_remove(ops: Harness) -> None:
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"a": "1", "b": "2", "c": "3"})
    # Keys the stream does not have are ignored.
    assert await ops("RemoveTagsFromStream", StreamName="s", TagKeys=["a", "zz"]) == {}
    assert await tags_of(ops) == {"b": "2", "c": "3"}
    assert await ops("UntagResource", ResourceARN=ARN + "s", TagKeys=["c"]) == {}
    assert await tags_of(ops) == {"b": "2"}


async def test_list_pages_in_key_order(ops: Harness) -> None:
    tags = {"d": "4", "a": "1", "c": "3", "b": "2", "e": "5"}
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags=tags)
    first = await ops("ListTagsForStream", StreamName="s", Limit=2)
    assert first == {
        "Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}],
        "HasMoreTags": True,
    }
    second = await ops("ListTagsForStream", StreamName="s", Limit=2, ExclusiveStartTagKey="b")
    assert [t["Key"] for t in second["Tags"]] == ["c", "d"] and second["HasMoreTags"] is True
    last = await ops("ListTagsForStream", StreamARN=ARN + "s", Limit=2, ExclusiveStartTagKey="d")
    assert last == {"Tags": [{"Key": "e", "Value": "5"}], "HasMoreTags": False}
    # The start key need not be a tag the stream has.
    out = await ops("ListTagsForStream", StreamName="s", ExclusiveStartTagKey="bb")
    assert [t["Key"] for t in out["Tags"]] == ["c", "d", "e"]
    exact = await ops("ListTagsForStream", StreamName="s", Limit=5)
    assert len(exact["Tags"]) == 5 and exact["HasMoreTags"] is False


async def test_a_stream_created_again_starts_without_tags(ops: Harness) -> None:
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"a": "1"})
    await ops("DeleteStream", StreamName="s")
    await ops.create("s", 1)
    assert await tags_of(ops) == {}


async def test_tags_survive_a_restart(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path):
        await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"team": "a"})
        await ops("AddTagsToStream", StreamName="s", Tags={"env": "prod", "x": "y"})
        await ops("RemoveTagsFromStream", StreamName="s", TagKeys=["x"])
    async for ops in open_harness(tmp_path):
        assert await tags_of(ops) == {"env": "prod", "team": "a"}
        # Still a working stream with working tags.
        await ops("AddTagsToStream", StreamName="s", Tags={"more": "1"})
        assert len(await tags_of(ops)) == 3


# -- what a tag may be ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "match"),
    [
        ({"": "v"}, "1 to 128"),
        ({"k" * 129: "v"}, "1 to 128"),
        ({"k": "v" * 257}, "at most 256"),
        ({"a%b": "v"}, "not allowed"),
        ({"a#b": "v"}, "not allowed"),
        ({"k": "a*b"}, "not allowed"),
        ({"k": "semi;colon"}, "not allowed"),
        ({"k": "tab\x00nul"}, "not allowed"),
        ({"aws:name": "v"}, "reserved"),
        ({"AWS:name": "v"}, "reserved"),
        ({}, "at least 1"),
    ],
)
async def test_bad_tags_are_refused(ops: Harness, tags: dict[str, str], match: str) -> None:
    await ops.create("s", 1)
    for name, request in (
        ("AddTagsToStream", {"StreamName": "s"}),
        ("TagResource", {"ResourceARN": ARN + "s"}),
    ):
        with pytest.raises(InvalidArgumentError, match=match):
            await ops(name, Tags=tags, **request)
    assert await tags_of(ops) == {}


@pytest.mark.parametrize(
    "tags",
    [
        {"k" * 128: "v" * 256},
        {"Größe": "日本語の値"},
        {"key with spaces": "value\twith\ttabs"},
        {"_./=+-@:": "_./=+-@:"},
        {"digits0123": "٣٤٥"},
        {"empty": ""},
    ],
)
async def test_good_tags_are_kept(ops: Harness, tags: dict[str, str]) -> None:
    await ops.create("s", 1)
    await ops("AddTagsToStream", StreamName="s", Tags=tags)
    assert await tags_of(ops) == tags


@pytest.mark.parametrize(
    ("name", "request_", "error"),
    [
        ("AddTagsToStream", {"StreamName": "s"}, ValidationError),
        ("AddTagsToStream", {"StreamName": "s", "Tags": ["a"]}, ValidationError),
        ("AddTagsToStream", {"StreamName": "s", "Tags": {"a": 1}}, ValidationError),
        ("AddTagsToStream", {"StreamName": "s", "Tags": {"a": None}}, ValidationError),
        ("AddTagsToStream", {"Tags": {"a": "1"}}, ValidationError),
        ("AddTagsToStream", {"StreamName": "bad name", "Tags": {"a": "1"}}, InvalidArgumentError),
        ("AddTagsToStream", {"StreamName": "nope", "Tags": {"a": "1"}}, ResourceNotFoundError),
        ("RemoveTagsFromStream", {"StreamName": "s"}, ValidationError),
        ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": "a"}, ValidationError),
        ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": [1]}, ValidationError),
        ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": []}, InvalidArgumentError),
        ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": ["k"] * 51}, InvalidArgumentError),
        ("RemoveTagsFromStream", {"StreamName": "s", "TagKeys": [""]}, InvalidArgumentError),
        ("RemoveTagsFromStream", {"StreamName": "nope", "TagKeys": ["a"]}, ResourceNotFoundError),
        ("ListTagsForStream", {}, ValidationError),
        ("ListTagsForStream", {"StreamName": "s", "Limit": 0}, InvalidArgumentError),
        ("ListTagsForStream", {"StreamName": "s", "Limit": 51}, InvalidArgumentError),
        ("ListTagsForStream", {"StreamName": "s", "Limit": "5"}, ValidationError),
        (
            "ListTagsForStream",
            {"StreamName": "s", "ExclusiveStartTagKey": ""},
            InvalidArgumentError,
        ),
        ("ListTagsForStream", {"StreamName": "nope"}, ResourceNotFoundError),
        ("TagResource", {"Tags": {"a": "1"}}, ValidationError),
        ("TagResource", {"ResourceARN": ARN + "s"}, ValidationError),
        ("TagResource", {"ResourceARN": "s", "Tags": {"a": "1"}}, InvalidArgumentError),
        ("TagResource", {"ResourceARN": ARN + "nope", "Tags": {"a": "1"}}, ResourceNotFoundError),
        ("UntagResource", {"ResourceARN": ARN + "s"}, ValidationError),
        ("UntagResource", {"ResourceARN": ARN + "s", "TagKeys": []}, InvalidArgumentError),
        ("UntagResource", {"ResourceARN": ARN + "nope", "TagKeys": ["a"]}, ResourceNotFoundError),
        ("ListTagsForResource", {}, ValidationError),
        ("ListTagsForResource", {"ResourceARN": 5}, ValidationError),
        ("ListTagsForResource", {"ResourceARN": "arn:aws:sqs:x"}, InvalidArgumentError),
        ("ListTagsForResource", {"ResourceARN": ARN + "nope"}, ResourceNotFoundError),
        (
            "ListTagsForResource",
            {"ResourceARN": "arn:aws:kinesis:eu-west-1:000000000000:stream/s"},
            ResourceNotFoundError,
        ),
        (
            "ListTagsForResource",
            {"ResourceARN": "arn:aws:kinesis:us-east-1:111111111111:stream/s"},
            ResourceNotFoundError,
        ),
    ],
)
async def test_named_errors(
    ops: Harness, name: str, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"keep": "me"})
    with pytest.raises(error):
        await ops(name, **request_)
    assert await tags_of(ops) == {"keep": "me"}


# -- consumer ARNs --------------------------------------------------------------------


CONSUMER = f"{ARN}s/consumer/c:{START_MS // 1000}"
BAD_TAGS = [
    ({"": "v"}, "1 to 128"),
    ({"k" * 129: "v"}, "1 to 128"),
    ({"k": "v" * 257}, "at most 256"),
    ({"a#b": "v"}, "not allowed"),
    ({"k": "a*b"}, "not allowed"),
    ({"aws:name": "v"}, "reserved"),
]


async def register(ops: Harness, name: str = "c", **request: Any) -> str:
    out = await ops("RegisterStreamConsumer", StreamARN=ARN + "s", ConsumerName=name, **request)
    arn: str = out["Consumer"]["ConsumerARN"]
    return arn


async def consumer_tags(ops: Harness, arn: str = CONSUMER) -> dict[str, str]:
    """A consumer's tags by its ARN, checked to come in key order."""
    out = await ops("ListTagsForResource", ResourceARN=arn)
    keys = [t["Key"] for t in out["Tags"]]
    assert keys == sorted(keys)
    return {t["Key"]: t["Value"] for t in out["Tags"]}


async def test_register_keeps_the_consumers_tags(ops: Harness) -> None:
    await ops("CreateStream", StreamName="s", ShardCount=1, Tags={"stream": "yes"})
    assert await register(ops, Tags={"team": "a", "env": "prod", "Größe": ""}) == CONSUMER
    other = await register(ops, "d")
    assert await consumer_tags(ops) == {"Größe": "", "env": "prod", "team": "a"}
    # Each resource has its own tags: the stream's and another consumer's are apart.
    assert await consumer_tags(ops, other) == {}
    assert await tags_of(ops) == {"stream": "yes"}
    # A consumer registered with no Tags, or an empty map, has none.
    assert await consumer_tags(ops, await register(ops, "e", Tags={})) == {}


async def test_tag_and_untag_a_consumer(ops: Harness) -> None:
    await ops.create("s", 1)
    await register(ops, Tags={"a": "1", "b": "2"})
    await ops("TagResource", ResourceARN=CONSUMER, Tags={"b": "two", "c": "3"})
    assert await consumer_tags(ops) == {"a": "1", "b": "two", "c": "3"}
    # Keys the consumer does not have are ignored, as for streams.
    await ops("UntagResource", ResourceARN=CONSUMER, TagKeys=["a", "absent"])
    assert await consumer_tags(ops) == {"b": "two", "c": "3"}
    await ops("UntagResource", ResourceARN=CONSUMER, TagKeys=["b", "c"])
    assert await consumer_tags(ops) == {}
    # None of it touched the stream, and the consumer is still what it was.
    assert await tags_of(ops) == {}
    out = await ops("DescribeStreamConsumer", ConsumerARN=CONSUMER)
    assert out["ConsumerDescription"]["ConsumerStatus"] == "ACTIVE"


async def test_fifty_tags_per_consumer(ops: Harness) -> None:
    await ops.create("s", 1)
    with pytest.raises(LimitExceededError, match="at most 50"):
        await register(ops, Tags=many(51))
    # Refused whole: no consumer was registered.
    assert (await ops("ListStreamConsumers", StreamARN=ARN + "s"))["Consumers"] == []
    await register(ops, Tags=many(50))
    assert await consumer_tags(ops) == many(50)
    with pytest.raises(LimitExceededError, match="51 tags"):
        await ops("TagResource", ResourceARN=CONSUMER, Tags={"new": "x", "k000": "changed"})
    assert await consumer_tags(ops) == many(50)
    # Overwriting at the limit is fine; so is adding after a removal.
    await ops("TagResource", ResourceARN=CONSUMER, Tags={"k000": "changed"})
    await ops("UntagResource", ResourceARN=CONSUMER, TagKeys=["k001"])
    await ops("TagResource", ResourceARN=CONSUMER, Tags={"new": "x"})
    now = await consumer_tags(ops)
    assert len(now) == 50
    assert now["k000"] == "changed" and now["new"] == "x" and "k001" not in now


async def test_concurrent_consumer_tagging_cannot_pass_the_limit_together(ops: Harness) -> None:
    """The count is checked in the commit: of two 30-tag additions, exactly one lands."""
    await ops.create("s", 1)
    await register(ops)
    winner = await race_two_additions(ops, CONSUMER)
    assert await consumer_tags(ops) == many(30, winner)


@pytest.mark.parametrize(("tags", "match"), BAD_TAGS)
async def test_bad_consumer_tags_are_refused(
    ops: Harness, tags: dict[str, str], match: str
) -> None:
    await ops.create("s", 1)
    with pytest.raises(InvalidArgumentError, match=match):
        await register(ops, Tags=tags)
    assert (await ops("ListStreamConsumers", StreamARN=ARN + "s"))["Consumers"] == []
    await register(ops, Tags={"keep": "me"})
    with pytest.raises(InvalidArgumentError, match=match):
        await ops("TagResource", ResourceARN=CONSUMER, Tags=tags)
    assert await consumer_tags(ops) == {"keep": "me"}


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"Tags": {"a": 1}}, ValidationError),
        ({"Tags": ["a"]}, ValidationError),
        ({"TagKeys": []}, InvalidArgumentError),
        ({"TagKeys": ["k"] * 51}, InvalidArgumentError),
        ({"TagKeys": [1]}, ValidationError),
        ({"TagKeys": ["a#b"]}, InvalidArgumentError),
        ({"TagKeys": ["aws:keep"]}, InvalidArgumentError),
    ],
)
async def test_malformed_consumer_tag_requests(
    ops: Harness, request_: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s", 1)
    await register(ops, Tags={"keep": "me"})
    name = "TagResource" if "Tags" in request_ else "UntagResource"
    with pytest.raises(error):
        await ops(name, ResourceARN=CONSUMER, **request_)
    assert await consumer_tags(ops) == {"keep": "me"}


async def test_deregistered_consumer_takes_its_tags(ops: Harness) -> None:
    await ops.create("s", 1)
    await register(ops, Tags={"a": "1"})
    await ops("DeregisterStreamConsumer", ConsumerARN=CONSUMER)
    for name, extra in (
        ("ListTagsForResource", {}),
        ("TagResource", {"Tags": {"b": "2"}}),
        ("UntagResource", {"TagKeys": ["a"]}),
    ):
        with pytest.raises(ResourceNotFoundError):
            await ops(name, ResourceARN=CONSUMER, **extra)
    # Registered again under the name: a new ARN and no tags; the old ARN stays gone.
    again = await register(ops)
    assert again != CONSUMER
    assert await consumer_tags(ops, again) == {}
    with pytest.raises(ResourceNotFoundError):
        await ops("TagResource", ResourceARN=CONSUMER, Tags={"b": "2"})
    assert await consumer_tags(ops, again) == {}


async def test_the_commit_checks_which_consumer_it_tags(ops: Harness) -> None:
    """A consumer replaced between the look-up and the commit is not tagged by the old ARN."""
    await ops.create("s", 1)
    await register(ops)
    await ops("DeregisterStreamConsumer", ConsumerARN=CONSUMER)
    again = await register(ops)
    log = ops.broker.log
    with pytest.raises(ResourceNotFoundError):
        await log.tag_consumer("s", "c", {"a": "1"}, created_s=START_MS // 1000)
    with pytest.raises(ResourceNotFoundError):
        await log.untag_consumer("s", "c", ["a"], created_s=START_MS // 1000)
    assert await consumer_tags(ops, again) == {}


async def test_consumer_tags_survive_a_restart(tmp_path: Path) -> None:
    async for ops in open_harness(tmp_path):
        await ops.create("s", 1)
        await register(ops, Tags={"team": "a", "x": "y"})
        await ops("TagResource", ResourceARN=CONSUMER, Tags={"env": "prod"})
        await ops("UntagResource", ResourceARN=CONSUMER, TagKeys=["x"])
    async for ops in open_harness(tmp_path):
        assert await consumer_tags(ops) == {"env": "prod", "team": "a"}
        await ops("TagResource", ResourceARN=CONSUMER, Tags={"more": "1"})
        assert len(await consumer_tags(ops)) == 3
        out = await ops("DescribeStreamConsumer", ConsumerARN=CONSUMER)
        assert out["ConsumerDescription"]["ConsumerCreationTimestamp"] == START_MS


async def test_a_consumer_row_from_before_tags_opens_with_none(tmp_path: Path) -> None:
    """A data directory whose consumer rows are ``[created_ms]`` (no tags) still opens."""
    config = make_config(tmp_path)
    store = LogStore(LogEnvironment(config.data, config.log.env), config.log)
    try:

        def old_layout(c: Commit) -> None:
            c.create_stream("s", 1, START_MS, 24)
            inc = c.stream("s").incarnation
            c.txn.put(log_keys.consumer(inc, "c"), msgpack.packb([START_MS]), db=c.dbs["consumers"])

        (op,) = [Op(old_layout)]
        store.commit([op])
        assert op.error is None
    finally:
        store.close()
    async for ops in open_harness(tmp_path):
        assert await consumer_tags(ops) == {}
        out = await ops("DescribeStreamConsumer", ConsumerARN=CONSUMER)
        assert out["ConsumerDescription"]["ConsumerName"] == "c"
        await ops("TagResource", ResourceARN=CONSUMER, Tags={"a": "1"})
        assert await consumer_tags(ops) == {"a": "1"}
        await ops("UntagResource", ResourceARN=CONSUMER, TagKeys=["a"])
        assert await consumer_tags(ops) == {}
        # Untagged again, the row is back in the old one-element form.
        env = ops.broker.log.store.environment
        inc = ops.broker.log.describe("s").incarnation
        with env.reading() as txn:
            raw = txn.get(log_keys.consumer(inc, "c"), db=env.dbs["consumers"])
        assert msgpack.unpackb(raw) == [START_MS]


@pytest.mark.parametrize(
    "arn",
    [
        f"{ARN}s/consumer/ghost:{START_MS // 1000}",
        f"{ARN}s/consumer/c:{START_MS // 1000 + 1}",
        f"{ARN}other/consumer/c:{START_MS // 1000}",
    ],
)
async def test_unknown_consumer_arns_are_not_found(ops: Harness, arn: str) -> None:
    await ops.create("s", 1)
    await ops("RegisterStreamConsumer", StreamARN=ARN + "s", ConsumerName="c")
    for name, extra in (
        ("ListTagsForResource", {}),
        ("UntagResource", {"TagKeys": ["a"]}),
        ("TagResource", {"Tags": {"a": "1"}}),
    ):
        with pytest.raises(ResourceNotFoundError):
            await ops(name, ResourceARN=arn, **extra)


async def test_malformed_consumer_arn_is_invalid(ops: Harness) -> None:
    await ops.create("s", 1)
    with pytest.raises(InvalidArgumentError, match="ResourceARN"):
        await ops("ListTagsForResource", ResourceARN=f"{ARN}s/consumer/c")


# -- against a dict model -------------------------------------------------------------

KEYS = [f"k{i:02d}" for i in range(60)] + ["Größe", "a b", "x:y"]
values = st.text(alphabet="abcXYZ019 _./=+-@:é", max_size=6)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("AddTagsToStream"),
            st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=10),
        ),
        st.tuples(
            st.just("TagResource"),
            st.dictionaries(st.sampled_from(KEYS), values, min_size=1, max_size=30),
        ),
        st.tuples(
            st.just("RemoveTagsFromStream"),
            st.lists(st.sampled_from(KEYS), min_size=1, max_size=20),
        ),
        st.tuples(
            st.just("UntagResource"), st.lists(st.sampled_from(KEYS), min_size=1, max_size=5)
        ),
    ),
    max_size=25,
)
_streams = itertools.count()


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None
)
@given(steps=steps, page=st.integers(1, 7))
async def test_tags_follow_a_dict_model(
    ops: Harness, steps: list[tuple[str, Any]], page: int
) -> None:
    name = f"m{next(_streams)}"
    await ops.create(name, 1)
    model: dict[str, str] = {}
    for op, arg in steps:
        if op in ("AddTagsToStream", "TagResource"):
            merged = {**model, **arg}
            target = (
                {"StreamName": name} if op == "AddTagsToStream" else {"ResourceARN": ARN + name}
            )
            if len(merged) > MAX_TAGS_PER_STREAM:
                with pytest.raises(LimitExceededError):
                    await ops(op, Tags=arg, **target)
            else:
                await ops(op, Tags=arg, **target)
                model = merged
        else:
            target = (
                {"StreamName": name}
                if op == "RemoveTagsFromStream"
                else {"ResourceARN": ARN + name}
            )
            await ops(op, TagKeys=arg, **target)
            model = {k: v for k, v in model.items() if k not in arg}
        assert await tags_of(ops, name) == model
    # Paging through with a small Limit sees the same tags, in key order, once each.
    seen: list[str] = []
    start: str | None = None
    while True:
        request: dict[str, Any] = {"StreamName": name, "Limit": page}
        if start is not None:
            request["ExclusiveStartTagKey"] = start
        out = await ops("ListTagsForStream", **request)
        seen.extend(t["Key"] for t in out["Tags"])
        if not out["HasMoreTags"]:
            break
        start = out["Tags"][-1]["Key"]
    assert seen == sorted(model)
    listed = await ops("ListTagsForResource", ResourceARN=ARN + name)
    assert listed["Tags"] == [{"Key": k, "Value": model[k]} for k in sorted(model)]
    await ops("DeleteStream", StreamName=name)

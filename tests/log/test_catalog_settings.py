"""The catalog's settings transitions (tags, mode, monitoring, record size) and their record."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import InvalidArgumentError, LimitExceededError
from broker.log import catalog
from broker.model import StreamDescription, StreamMode

NOW = 1_700_000_000_000


def stream(**settings: Any) -> StreamDescription:
    return catalog.new_stream("s", 1, 3, NOW, max_shards=16, **settings)


def round_trip(desc: StreamDescription) -> StreamDescription:
    return catalog.from_record(msgpack.unpackb(msgpack.packb(catalog.to_record(desc))))


tags = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=50)


@given(
    tags=tags,
    mode=st.sampled_from(StreamMode),
    metrics=st.lists(st.sampled_from(catalog.SHARD_LEVEL_METRICS)),
    kib=st.none() | st.integers(catalog.MIN_RECORD_KIB, catalog.MAX_RECORD_KIB),
)
def test_settings_round_trip(
    tags: dict[str, str], mode: StreamMode, metrics: list[str], kib: int | None
) -> None:
    desc = stream(mode=mode, tags=tags, max_record_kib=kib)
    desc = catalog.set_shard_level_metrics(desc, metrics, enable=True)
    back = round_trip(desc)
    assert back == desc
    assert dict(back.tags) == tags
    assert [k for k, _ in back.tags] == sorted(tags)
    assert back.mode is mode


def test_a_record_without_settings_reads_as_defaults() -> None:
    record = catalog.to_record(stream(mode=StreamMode.ON_DEMAND, tags={"a": "1"}))
    for name in ("mode", "tags", "metrics", "max_record_kib"):
        del record[name]
    desc = catalog.from_record(msgpack.unpackb(msgpack.packb(record)))
    assert desc.mode is StreamMode.PROVISIONED
    assert desc.tags == ()
    assert desc.shard_level_metrics == ()
    assert desc.max_record_kib is None
    assert len(desc.shards) == 3


def test_add_and_remove_tags() -> None:
    desc = catalog.add_tags(stream(), {"b": "2", "a": "1"})
    assert desc.tags == (("a", "1"), ("b", "2"))
    desc = catalog.add_tags(desc, {"a": "10"})
    assert desc.tags == (("a", "10"), ("b", "2"))
    assert catalog.remove_tags(desc, ["a", "missing"]).tags == (("b", "2"),)
    full = catalog.add_tags(stream(), {f"k{i}": "" for i in range(catalog.MAX_TAGS_PER_STREAM)})
    with pytest.raises(LimitExceededError):
        catalog.add_tags(full, {"one more": ""})
    assert catalog.add_tags(full, {"k0": "overwritten"}).tags[0] == ("k0", "overwritten")
    with pytest.raises(LimitExceededError):
        stream(tags={f"k{i}": "" for i in range(catalog.MAX_TAGS_PER_STREAM + 1)})


def test_shard_level_metrics_keep_the_model_order() -> None:
    desc = catalog.set_shard_level_metrics(
        stream(), ["IteratorAgeMilliseconds", "IncomingBytes"], enable=True
    )
    assert desc.shard_level_metrics == ("IncomingBytes", "IteratorAgeMilliseconds")
    desc = catalog.set_shard_level_metrics(desc, ["ALL"], enable=True)
    assert desc.shard_level_metrics == catalog.SHARD_LEVEL_METRICS
    desc = catalog.set_shard_level_metrics(desc, ["IncomingBytes"], enable=False)
    assert "IncomingBytes" not in desc.shard_level_metrics
    assert catalog.set_shard_level_metrics(desc, ["ALL"], enable=False).shard_level_metrics == ()
    with pytest.raises(InvalidArgumentError):
        catalog.set_shard_level_metrics(desc, ["Nope"], enable=True)


def test_mode_and_record_size_bounds() -> None:
    assert catalog.set_mode(stream(), "ON_DEMAND").mode is StreamMode.ON_DEMAND
    with pytest.raises(InvalidArgumentError):
        catalog.set_mode(stream(), "AUTO")
    for bad in (catalog.MIN_RECORD_KIB - 1, catalog.MAX_RECORD_KIB + 1, True, "1024"):
        with pytest.raises(InvalidArgumentError):
            catalog.set_max_record_size(stream(), bad)  # type: ignore[arg-type]
    assert catalog.set_max_record_size(stream(), 2048).max_record_kib == 2048

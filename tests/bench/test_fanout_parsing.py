"""The fanout scenario reads due times out of events in place: the same as decoding them."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from bench.scenarios.fanout_clients import STREAM, _group_body, _record, due_times
from broker.fanout.events import encode_heartbeat, encode_records

dues = st.lists(st.integers(-1, (1 << 62)), min_size=1, max_size=600)


def _event(records: list[list[object]]) -> bytes:
    payload = msgpack.packb(records)
    first = 79228162514264337593543950337
    return encode_records(first, payload, first + len(records) - 1, 0)


@given(dues)
def test_fixed_layout_read_in_place(due: list[int]) -> None:
    records = [[1_764_000_000_000, "k", _record(d)["Data"]] for d in due]
    assert due_times(_event(records)).tolist() == due  # type: ignore[union-attr]


@given(dues, st.text(min_size=2, max_size=5))
def test_other_layouts_are_decoded(due: list[int], key: str) -> None:
    records = [[5, key, _record(d)["Data"] + b"+"] for d in due]
    assert due_times(_event(records)).tolist() == due  # type: ignore[union-attr]


def test_other_events_have_no_due_times() -> None:
    assert due_times(encode_heartbeat("1", 0)) is None


@given(st.integers(1, 500), st.integers(-1, 1 << 62))
def test_group_bodies_are_msgpacks(count: int, due: int) -> None:
    expected = msgpack.packb({"StreamName": STREAM, "Records": [_record(due)] * count})
    assert _group_body(due, count) == expected

"""PutRecords responses packed by numpy are msgpack's bytes for the same map."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from broker.model import shard_id
from broker.protocol.packing import LOW_DIGITS, pack_put_records
from broker.sequence import base


def _dict_form(positions: list[int], ids: list[str], firsts: list[int | None]) -> bytes:
    following = list(firsts)
    records = []
    for p in positions:
        sequence = following[p]
        assert sequence is not None
        records.append({"SequenceNumber": str(sequence), "ShardId": ids[p]})
        following[p] = sequence + 1
    return msgpack.packb({"FailedRecordCount": 0, "Records": records, "EncryptionType": "NONE"})


# Offsets near the carry into the 13th digit, and anywhere else.
offsets = st.one_of(
    st.integers(1, 1 << 40),
    st.integers(10**LOW_DIGITS - 600, 10**LOW_DIGITS + 600),
    st.integers(1, (1 << 64) - 1000),
)


@given(
    shards=st.lists(st.integers(0, 1100), min_size=1, max_size=9, unique=True),
    incarnation=st.one_of(st.integers(1, 20), st.integers(1, (1 << 32) - 1)),
    data=st.data(),
)
def test_same_bytes_as_the_dict_form(
    shards: list[int], incarnation: int, data: st.DataObject
) -> None:
    positions = data.draw(st.lists(st.integers(0, len(shards) - 1), max_size=600))
    ids = [shard_id(index) for index in shards]
    firsts: list[int | None] = [
        base(incarnation, index) + data.draw(offsets) if p in positions else None
        for p, index in enumerate(shards)
    ]
    packed = pack_put_records(positions, ids, firsts)
    if packed is not None:
        assert packed == _dict_form(positions, ids, firsts)


def test_the_usual_case_is_packed_not_refused() -> None:
    ids = [shard_id(i) for i in range(8)]
    positions = [i % 8 for i in range(500)]
    firsts: list[int | None] = [base(3, i) + 1_000 for i in range(8)]
    packed = pack_put_records(positions, ids, firsts)
    assert packed == _dict_form(positions, ids, firsts)


def test_a_run_that_carries_past_the_low_digits_falls_back() -> None:
    high = base(1, 0) // 10**LOW_DIGITS
    ids = [shard_id(0)]
    firsts: list[int | None] = [high * 10**LOW_DIGITS + 10**LOW_DIGITS - 2]
    # Two records end exactly at the last 12-digit value: packed.
    assert pack_put_records([0, 0], ids, firsts) == _dict_form([0, 0], ids, firsts)
    # A third would carry into the high digits: the caller packs the map instead.
    assert pack_put_records([0, 0, 0], ids, firsts) is None

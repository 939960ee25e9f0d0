"""Sequence numbers: (incarnation << 96) | (shard index << 64) | offset, as a decimal string."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import InvalidArgumentError
from broker.sequence import MAX_INCARNATION, SequenceNumber, base, decode, encode

incarnations = st.integers(0, MAX_INCARNATION)
shard_indexes = st.integers(0, (1 << 32) - 1)
offsets = st.integers(0, (1 << 64) - 1)


@given(incarnations, shard_indexes, offsets)
def test_encode_decode_round_trip(incarnation: int, index: int, offset: int) -> None:
    text = encode(incarnation, index, offset)
    assert text == str(int(text))  # canonical decimal, no padding
    assert decode(text) == SequenceNumber(incarnation, index, offset)
    assert str(SequenceNumber(incarnation, index, offset)) == text
    assert int(decode(text)) == int(text) == base(incarnation, index) + offset
    assert len(text) <= 129


@given(incarnations, shard_indexes, offsets, offsets)
def test_order_within_a_shard_is_offset_order(incarnation: int, index: int, a: int, b: int) -> None:
    sa, sb = encode(incarnation, index, a), encode(incarnation, index, b)
    assert (int(sa) < int(sb)) == (a < b)
    assert (int(sa) == int(sb)) == (a == b)


@given(incarnations, shard_indexes, offsets, incarnations, shard_indexes, offsets)
def test_distinct_positions_have_distinct_numbers(
    i1: int, s1: int, o1: int, i2: int, s2: int, o2: int
) -> None:
    assert (encode(i1, s1, o1) == encode(i2, s2, o2)) == ((i1, s1, o1) == (i2, s2, o2))


def test_known_values() -> None:
    assert encode(0, 0, 0) == "0"
    assert encode(1, 0, 0) == str(1 << 96)
    assert encode(1, 2, 3) == str((1 << 96) + (2 << 64) + 3)
    assert decode(str((1 << 128) - 1)) == SequenceNumber(
        MAX_INCARNATION, (1 << 32) - 1, (1 << 64) - 1
    )
    # A shard's StartingSequenceNumber is its offset 0.
    assert decode(str(base(7, 3))) == SequenceNumber(7, 3, 0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-1",
        "+1",
        "01",
        "00",
        " 1",
        "1 ",
        "1\n",
        "1.0",
        "1e5",
        "0x10",
        "1_000",
        "\uff11\uff12",  # full-width digits: int() would accept them
        "\u0661",  # Arabic-Indic digit one
        "abc",
        "9" * 130,
    ],
)
def test_malformed_text_is_invalid_argument(text: str) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        decode(text)
    assert "SequenceNumber" in info.value.message
    assert info.value.wire_name == "InvalidArgumentException"


@pytest.mark.parametrize("value", [None, 5, 1.5, b"12", ["1"]])
def test_non_string_is_invalid_argument(value: object) -> None:
    with pytest.raises(InvalidArgumentError, match="SequenceNumber"):
        decode(value)


@pytest.mark.parametrize("value", [1 << 128, (1 << 129) - 1, 10**128])
def test_over_128_bits_is_invalid_argument(value: int) -> None:
    with pytest.raises(InvalidArgumentError, match="exceeds 128 bits"):
        decode(str(value))


@given(st.text(max_size=140))
def test_decode_accepts_exactly_canonical_decimals_below_2_128(text: str) -> None:
    canonical = text.isascii() and text.isdigit() and text == str(int(text))
    if canonical and int(text) < (1 << 128):
        assert int(decode(text)) == int(text)
    else:
        with pytest.raises(InvalidArgumentError):
            decode(text)

"""The iterator codec: round trips, tamper evidence, expiry, pagination tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import ExpiredIteratorError, ExpiredNextTokenError, InvalidArgumentError
from broker.operations.iterators import (
    MAX_TOKEN_CHARS,
    IteratorCodec,
    ShardIterator,
    broker_key,
    codec_for,
)

CODEC = IteratorCodec(b"k" * 32, 300_000)
NOW = 1_700_000_000_000

iterators = st.builds(
    ShardIterator,
    stream=st.from_regex(r"[a-zA-Z0-9_.-]{1,128}", fullmatch=True),
    incarnation=st.integers(0, 2**32 - 1),
    shard_index=st.integers(0, 2**32 - 1),
    offset=st.integers(0, 2**64 - 1),
    issued_ms=st.integers(0, 2**63),
)


@given(iterators)
def test_round_trip(iterator: ShardIterator) -> None:
    token = CODEC.encode(iterator)
    assert token.isascii() and len(token) <= MAX_TOKEN_CHARS
    assert CODEC.decode(token, iterator.issued_ms + 300_000) == iterator


@given(iterators, st.data())
def test_any_single_character_change_is_detected(
    iterator: ShardIterator, data: st.DataObject
) -> None:
    token = CODEC.encode(iterator)
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    tampered = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(InvalidArgumentError):
        CODEC.decode(tampered, iterator.issued_ms)


@given(iterators, st.integers(0, 50))
def test_truncation_and_extension_are_detected(iterator: ShardIterator, cut: int) -> None:
    token = CODEC.encode(iterator)
    with pytest.raises(InvalidArgumentError):
        CODEC.decode(token[: len(token) - 1 - cut], iterator.issued_ms)
    with pytest.raises(InvalidArgumentError):
        CODEC.decode(token + "A" * (cut + 1), iterator.issued_ms)


@given(st.one_of(st.text(max_size=600), st.binary(), st.integers(), st.none()))
def test_garbage_is_invalid_argument(value: object) -> None:
    with pytest.raises(InvalidArgumentError):
        CODEC.decode(value, NOW)


def test_another_key_is_refused() -> None:
    token = CODEC.encode(ShardIterator("s", 1, 0, 5, NOW))
    with pytest.raises(InvalidArgumentError):
        IteratorCodec(b"j" * 32, 300_000).decode(token, NOW)


def test_expiry_boundary() -> None:
    token = CODEC.encode(ShardIterator("s", 1, 0, 5, NOW))
    assert CODEC.decode(token, NOW + 300_000).offset == 5
    with pytest.raises(ExpiredIteratorError, match="tolerated delay of 300000 milliseconds"):
        CODEC.decode(token, NOW + 300_001)


def test_kinds_do_not_mix() -> None:
    page = CODEC.encode_page(["shards", "s"], NOW)
    with pytest.raises(InvalidArgumentError):
        CODEC.decode(page, NOW)
    iterator = CODEC.encode(ShardIterator("s", 1, 0, 5, NOW))
    with pytest.raises(InvalidArgumentError):
        CODEC.decode_page(iterator, NOW)


@given(st.lists(st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**63 - 1), st.none())))
def test_page_round_trip(state: list[object]) -> None:
    token = CODEC.encode_page(state, NOW)
    assert CODEC.decode_page(token, NOW + 300_000) == state
    with pytest.raises(ExpiredNextTokenError):
        CODEC.decode_page(token, NOW + 300_001)


def test_keys() -> None:
    extras: dict[str, object] = {}
    random_key = broker_key("", extras)
    assert len(random_key) == 32 and broker_key("", extras) == random_key
    assert broker_key("a", {}) == broker_key("a", {}) != broker_key("b", {})
    codec = codec_for("", 2.5, extras)
    assert codec.lifetime_ms == 2500 and codec_for("", 2.5, extras) is codec

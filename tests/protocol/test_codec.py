"""The native wire's body codec: exactly one msgpack value, or SerializationException."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import SerializationError
from broker.protocol.codec import decode_body, encode_body

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=300),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=20), inner, max_size=6)
    ),
    max_leaves=40,
)


@given(st.dictionaries(st.text(max_size=20), values, max_size=8))
def test_decodes_what_msgpack_encodes(request: dict[str, Any]) -> None:
    assert decode_body(msgpack.packb(request)) == request


@given(st.dictionaries(st.text(max_size=20), values, max_size=8))
def test_encodes_as_msgpack_does(response: dict[str, Any]) -> None:
    assert encode_body(response) == msgpack.packb(response)


@given(st.dictionaries(st.text(max_size=20), values, max_size=4), st.binary(min_size=1, max_size=9))
def test_trailing_bytes_are_refused(request: dict[str, Any], extra: bytes) -> None:
    with pytest.raises(SerializationError, match=r"after its msgpack value|not one valid"):
        decode_body(msgpack.packb(request) + extra)


@pytest.mark.parametrize(
    "body",
    [
        b"\xdd\xff\xff\xff\xff",  # an array declaring 2^32-1 items, then nothing
        b"\xdf\xff\xff\xff\xff",  # the same for a map
        b"\x91" * 100_000 + b"\xc0",  # nesting far deeper than any request
        msgpack.packb({1: 2}),  # a key that is not a field name
        b"\xa2\xff\xfe",  # a string that is not UTF-8
        msgpack.packb(msgpack.ExtType(5, b"xx")),
        b"\xc1",  # never used
    ],
)
def test_malformed_bodies_are_serialization_errors(body: bytes) -> None:
    with pytest.raises(SerializationError):
        decode_body(body)


def test_empty_body_is_an_empty_request() -> None:
    assert decode_body(b"") == {}

"""decimal_run: consecutive sequence numbers formatted in bulk, exactly as str() does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from broker.sequence import decimal_run

starts = st.one_of(
    st.integers(0, 20_000),
    st.integers(0, (1 << 128) - 1),
    st.integers(1, 10**6).map(lambda k: k * 10_000 - 3),  # runs that carry past four digits
)


@given(starts, st.integers(0, 12_000))
def test_same_as_str(first: int, count: int) -> None:
    assert decimal_run(first, count) == [str(v) for v in range(first, first + count)]

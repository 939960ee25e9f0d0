"""Sequence numbers: the wire form of a position in a shard.

A sequence number is one 128-bit integer::

    (stream incarnation << 96) | (shard index << 64) | offset

written as its decimal string. It compares correctly within a shard, tells
which shard and which incarnation of a stream it belongs to, and fits Kinesis'
format (decimal, up to 129 digits). A shard's ``StartingSequenceNumber`` is its
offset 0, where no record is ever stored.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .errors import InvalidArgumentError

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,128}")
_OFFSET_MASK = (1 << 64) - 1
_INDEX_MASK = (1 << 32) - 1
MAX_INCARNATION = (1 << 32) - 1


class SequenceNumber(NamedTuple):
    incarnation: int
    shard_index: int
    offset: int

    def __int__(self) -> int:
        return (self.incarnation << 96) | (self.shard_index << 64) | self.offset

    def __str__(self) -> str:
        return str(int(self))


def encode(incarnation: int, shard_index: int, offset: int) -> str:
    """The decimal wire form of a position."""
    return str((incarnation << 96) | (shard_index << 64) | offset)


def base(incarnation: int, shard_index: int) -> int:
    """The integer value of a shard's offset 0; add an offset to get a sequence number."""
    return (incarnation << 96) | (shard_index << 64)


def decode(text: object) -> SequenceNumber:
    """Parse a decimal sequence number; ``InvalidArgumentError`` if it is malformed."""
    if not isinstance(text, str) or _DECIMAL.fullmatch(text) is None:
        raise InvalidArgumentError(
            f"SequenceNumber {text!r} is not valid: expected a decimal integer"
        )
    value = int(text)
    if value >> 128:
        raise InvalidArgumentError(f"SequenceNumber {text} is not valid: it exceeds 128 bits")
    return SequenceNumber(value >> 96, (value >> 64) & _INDEX_MASK, value & _OFFSET_MASK)


#: "0000" .. "9999": the last four digits of consecutive numbers, formatted once.
_LAST_FOUR = [f"{i:04d}" for i in range(10_000)]


def decimal_run(first: int, count: int) -> list[str]:
    """``[str(first), str(first + 1), ...]``, ``count`` of them, for non-negative ``first``.

    A stored batch's sequence numbers are consecutive 30-digit integers, and
    ``str()`` of each costs ~150 ns (a big-integer division loop). Here each
    run that shares its digits above the last four is one prefix plus a
    preformatted four-digit suffix: ~40 ns a number.
    """
    out: list[str] = []
    value, end = first, first + count
    while value < end:
        high, low = divmod(value, 10_000)
        run = min(end - value, 10_000 - low)
        if high:
            prefix = str(high)
            out += [prefix + tail for tail in _LAST_FOUR[low : low + run]]
        else:
            out += map(str, range(value, value + run))
        value += run
    return out

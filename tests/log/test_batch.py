"""The stored batch format: header, CRC, one msgpack array, joining without re-encoding."""

from __future__ import annotations

import struct

import msgpack
import pytest
from crc32c import crc32c
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import CorruptBatchError
from broker.log import batch as fmt

WHERE = "stream orders shard shardId-000000000003"

keys = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=256)
records_st = st.lists(st.tuples(keys, st.binary(max_size=300)), min_size=1, max_size=40)
arrivals = st.integers(0, (1 << 63) - 1)
first_offsets = st.integers(1, (1 << 64) - 1 - 100_000)


def _value(records: list[tuple[str, bytes]], first: int, arrival: int) -> bytes:
    segment = fmt.pack_segment(records, arrival)
    count, payload = fmt.join_payload([segment])
    return fmt.build_value(first, count, arrival, arrival, payload)


def _unpack_whole(payload: bytes) -> list[object]:
    """Unpack exactly one msgpack value that must span the whole payload."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(payload)
    values = list(unpacker)
    assert len(values) == 1, "the payload is not exactly one msgpack value"
    assert isinstance(values[0], list)
    return values[0]


@given(records_st, first_offsets, arrivals)
def test_round_trip(records: list[tuple[str, bytes]], first: int, arrival: int) -> None:
    segment = fmt.pack_segment(records, arrival)
    assert segment.count == len(records)
    assert segment.nbytes == len(segment.packed)
    assert (segment.first_arrival_ms, segment.last_arrival_ms) == (arrival, arrival)
    count, payload = fmt.join_payload([segment])
    assert count == len(records)
    value = fmt.build_value(first, count, arrival, arrival, payload)

    header = fmt.verify(value, WHERE)
    assert header.version == fmt.FORMAT_VERSION == 1
    assert header.flags == 0
    assert header.count == len(records)
    assert header.first_offset == first
    assert header.end_offset == first + len(records)
    assert (header.first_arrival_ms, header.last_arrival_ms) == (arrival, arrival)
    assert header.checksum == crc32c(value[: fmt.HEADER_SIZE - 4] + value[fmt.HEADER_SIZE :])
    assert fmt.read_header(value) == header

    assert fmt.unpack_records(value, WHERE) == tuple((arrival, k, d) for k, d in records)
    assert bytes(fmt.payload_of(value)) == value[fmt.HEADER_SIZE :]
    assert len(value) == fmt.HEADER_SIZE + len(segment.packed)
    assert _unpack_whole(bytes(fmt.payload_of(value))) == [[arrival, k, d] for k, d in records]


def test_header_layout() -> None:
    records = [("k", b"abc"), ("é", b"")]
    value = fmt.build_value(
        0x0102030405060708, 2, 1111, 2222, fmt.pack_segment(records, 1111).packed
    )
    assert fmt.HEADER_SIZE == 36
    version, flags, reserved, count, first, t0, t1, crc = struct.unpack(">BBHIQQQI", value[:36])
    assert (version, flags, reserved, count) == (1, 0, 0, 2)
    assert (first, t0, t1) == (0x0102030405060708, 1111, 2222)
    assert value[8:16] == bytes.fromhex("0102030405060708")  # big-endian
    assert crc == crc32c(value[:32] + value[36:])  # CRC-32C, as the format says


@given(st.lists(st.tuples(records_st, st.integers(0, 1000)), min_size=1, max_size=6), first_offsets)
def test_joining_segments_equals_packing_all_at_once(
    parts: list[tuple[list[tuple[str, bytes]], int]], first: int
) -> None:
    arrival = 1_700_000_000_000
    segments, everything = [], []
    for records, step in parts:  # arrival times never decrease within a shard
        arrival += step
        segments.append(fmt.pack_segment(records, arrival))
        everything.extend((arrival, k, d) for k, d in records)
    count, payload = fmt.join_payload(segments)
    assert count == len(everything)
    joined = payload if isinstance(payload, bytes) else b"".join(payload)
    assert joined == msgpack.packb(everything)
    value = fmt.build_value(
        first, count, segments[0].first_arrival_ms, segments[-1].last_arrival_ms, payload
    )
    assert value == fmt.build_value(
        first, count, everything[0][0], everything[-1][0], msgpack.packb(everything)
    )
    header = fmt.verify(value, WHERE)
    assert (header.first_arrival_ms, header.last_arrival_ms) == (
        everything[0][0],
        everything[-1][0],
    )
    assert fmt.unpack_records(value, WHERE) == tuple(everything)


@pytest.mark.parametrize(
    "counts", [(15, 1), (8, 8), (1, 65534), (65535, 1), (40000, 40000), (1, 1, 70000)]
)
def test_joining_across_array_header_sizes(counts: tuple[int, ...]) -> None:
    # msgpack's array header is 1, 3 or 5 bytes (fixarray, array16, array32): joining
    # segments must write the header of the total count, whatever the segments used.
    segments = [fmt.pack_segment([("k", b"x")] * n, 7) for n in counts]
    count, payload = fmt.join_payload(segments)
    assert count == sum(counts)
    assert b"".join(payload) == msgpack.packb([(7, "k", b"x")] * count)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536, 100_000])
def test_array_header_matches_msgpack(count: int) -> None:
    header = fmt.array_header(count)
    assert len(header) == fmt.array_header_size(count)
    assert msgpack.packb([None] * count).startswith(header)


def test_array_header_largest_count() -> None:
    assert fmt.array_header((1 << 32) - 1) == b"\xdd\xff\xff\xff\xff"


def _small_value() -> tuple[bytes, int]:
    first = 4242
    value = _value(
        [("alpha", b"\x00\x01payload"), ("β", b"more data here")], first, 1_700_000_000_123
    )
    return value, first


def test_every_single_byte_corruption_is_detected() -> None:
    value, first = _small_value()
    for position in range(len(value)):
        for delta in (0x01, 0x80, 0xFF):
            corrupt = bytearray(value)
            corrupt[position] ^= delta
            with pytest.raises(CorruptBatchError) as info:
                fmt.verify(bytes(corrupt), WHERE)
            message = info.value.message
            assert WHERE in message, (position, message)
            assert "offset" in message, (position, message)
            if not 8 <= position < 16:  # unless the stored offset itself is what broke
                assert f"offset {first}" in message, (position, message)


@given(records_st, first_offsets, arrivals, st.data())
def test_any_single_byte_corruption_is_detected(
    records: list[tuple[str, bytes]], first: int, arrival: int, data: st.DataObject
) -> None:
    value = _value(records, first, arrival)
    position = data.draw(st.integers(0, len(value) - 1), label="position")
    delta = data.draw(st.integers(1, 255), label="xor")
    corrupt = bytearray(value)
    corrupt[position] ^= delta
    with pytest.raises(CorruptBatchError, match=WHERE):
        fmt.verify(bytes(corrupt), WHERE)
    # Also a memoryview, as reads hand out.
    with pytest.raises(CorruptBatchError):
        fmt.verify(memoryview(bytes(corrupt)), WHERE)


@given(records_st, first_offsets, arrivals, st.data())
def test_truncated_value_is_detected(
    records: list[tuple[str, bytes]], first: int, arrival: int, data: st.DataObject
) -> None:
    value = _value(records, first, arrival)
    cut = data.draw(st.integers(0, len(value) - 1))
    with pytest.raises(CorruptBatchError, match=r"shorter than its header|checksum mismatch"):
        fmt.verify(value[:cut], WHERE)


def test_short_value_is_corrupt() -> None:
    with pytest.raises(CorruptBatchError, match="shorter than its header"):
        fmt.read_header(b"\x01" * 35)


def _with_crc(prefix: bytes, payload: bytes) -> bytes:
    """A value with a correct checksum over an arbitrary header prefix."""
    crc = crc32c(payload, crc32c(prefix))
    return prefix + crc.to_bytes(4, "big") + payload


def test_unknown_version_is_refused_even_with_a_valid_checksum() -> None:
    payload = msgpack.packb([(1, "k", b"d")])
    value = _with_crc(struct.pack(">BBHIQQQ", 2, 0, 0, 1, 9, 1, 1), payload)
    with pytest.raises(CorruptBatchError, match="unknown batch format version 2") as info:
        fmt.verify(value, WHERE)
    assert WHERE in info.value.message
    assert "offset 9" in info.value.message


def test_compression_flag_is_refused_until_supported() -> None:
    payload = msgpack.packb([(1, "k", b"d")])
    value = _with_crc(struct.pack(">BBHIQQQ", 1, 0x03, 0, 1, 9, 1, 1), payload)
    with pytest.raises(CorruptBatchError, match="unsupported compression 3") as info:
        fmt.verify(value, WHERE)
    assert "offset 9" in info.value.message


@pytest.mark.parametrize("payload", [b"\xc1", b"\x92\x93\x01", b"\xdc\x00"])
def test_undecodable_payload_is_corrupt(payload: bytes) -> None:
    value = _with_crc(struct.pack(">BBHIQQQ", 1, 0, 0, 1, 9, 1, 1), payload)
    fmt.verify(value, WHERE)  # the checksum is right: only decoding finds the problem
    with pytest.raises(CorruptBatchError, match="undecodable payload") as info:
        fmt.unpack_records(value, WHERE)
    assert WHERE in info.value.message
    assert "offset 9" in info.value.message


@given(records_st, arrivals)
def test_segment_bytes_are_msgpacks(records: list[tuple[str, bytes]], arrival: int) -> None:
    """ormsgpack packs a segment exactly as msgpack does: one format, whoever wrote it."""
    packed = fmt.pack_segment(records, arrival).packed
    assert packed == msgpack.packb([[arrival, k, d] for k, d in records])

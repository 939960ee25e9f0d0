"""Pre-built benchmark inputs: record lists and stored batch values.

Everything here runs before timing starts, so that the timed loops do no
per-record work beyond what the code under test does itself.
"""

from __future__ import annotations

import random

import trio

from broker.client import Client
from broker.log import batch as fmt
from broker.protocol.codec import encode_body

#: The arrival time stamped into pre-built values (any fixed value will do).
ARRIVAL_MS = 1_700_000_000_000


def make_records(count: int, size: int, *, seed: int) -> list[tuple[str, bytes]]:
    """``count`` records of ``size`` random bytes, with short distinct partition keys."""
    rng = random.Random(seed)
    blob = rng.randbytes(count * size)
    return [(f"pk-{seed}-{i}", blob[i * size : (i + 1) * size]) for i in range(count)]


def make_value(records: list[tuple[str, bytes]], first_offset: int = 1) -> bytes:
    """The stored value the log writes for one append of ``records`` (``broker.log.batch``)."""
    segment = fmt.pack_segment(records, ARRIVAL_MS)
    return fmt.build_value(first_offset, segment.count, ARRIVAL_MS, ARRIVAL_MS, segment.packed)


async def fill_stream(
    endpoint: str,
    stream: str,
    shards: int,
    records: int,
    *,
    record_bytes: int = 100,
    keys: int | None = None,
    seed: int = 9,
) -> dict[str, list[int]]:
    """Create ``stream`` and fill it before timing; each shard's sequence numbers, in order.

    PutRecords of 500 random records, 8 in flight; partition keys random, or
    drawn from ``keys`` distinct ones. ``records`` is rounded up to 500s.
    """
    rng = random.Random(seed)
    stored: dict[str, list[int]] = {}
    async with Client(endpoint) as client:
        await client.create_stream(stream, shards)
        bodies = []
        for _ in range(16):
            blob = rng.randbytes(500 * record_bytes)
            entries = [
                {
                    "Data": blob[i * record_bytes : (i + 1) * record_bytes],
                    "PartitionKey": (
                        f"key-{rng.randrange(keys)}" if keys else f"{rng.getrandbits(48):x}"
                    ),
                }
                for i in range(500)
            ]
            bodies.append(encode_body({"StreamName": stream, "Records": entries}))
        pending = list(range((records + 499) // 500))

        async def put() -> None:
            while pending:
                n = pending.pop()
                answer = await client.call_encoded("PutRecords", bodies[n % len(bodies)])
                for entry in answer["Records"]:
                    stored.setdefault(entry["ShardId"], []).append(int(entry["SequenceNumber"]))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(put)
    for numbers in stored.values():
        numbers.sort()
    return stored

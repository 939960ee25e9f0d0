"""The stream catalog's transitions: create, reshard, retention, settings. Pure functions.

Each transition takes a ``StreamDescription`` and returns a new one; the store
persists the result in the same transaction as everything else of its commit.
Closing a shard needs the offset of its last record, which the caller passes in
as ``ending_offset(index)``.

Resharding follows Kinesis: a split closes the parent and opens two children
that cover its range (the lower half gets the first new index); a merge closes
two adjacent open shards and opens one child with both as parents; uniform
scaling is a sequence of splits at the target's even boundaries followed by
merges, so every child has at most two parents, as the Kinesis lineage model
requires. Child indexes continue the stream's counter.

Settings that only describe a stream (tags, capacity mode, enhanced
monitoring, the record size limit) change through transitions here too, so
that a limit that depends on the stream's state (at most 50 tags) is checked
against the staged catalog inside the commit: two concurrent
``AddTagsToStream`` cannot both pass the check and end with 51.

A stream's stored record (``to_record``) is a msgpack map; fields added
after the first release (``mode``, ``tags``, ``metrics``, ``max_record_kib``)
are read with their defaults when absent, so a data directory written before
them opens unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import InvalidArgumentError, LimitExceededError, ResourceInUseError
from ..hashing import even_ranges
from ..model import HashKeyRange, Shard, StreamDescription, StreamMode, StreamStatus

MIN_RETENTION_HOURS = 24
MAX_RETENTION_HOURS = 8760
#: Tags a stream may carry (Kinesis: 50).
MAX_TAGS_PER_STREAM = 50
#: Kinesis' shard-level metric names, in the order the model lists them (``ALL`` is all of them).
SHARD_LEVEL_METRICS = (
    "IncomingBytes",
    "IncomingRecords",
    "OutgoingBytes",
    "OutgoingRecords",
    "WriteProvisionedThroughputExceeded",
    "ReadProvisionedThroughputExceeded",
    "IteratorAgeMilliseconds",
)
#: Bounds of a stream's ``MaxRecordSizeInKiB`` (Kinesis: 1 MiB to 10 MiB).
MIN_RECORD_KIB = 1024
MAX_RECORD_KIB = 10240

EndingOffset = Callable[[int], int]


def new_stream(
    name: str,
    incarnation: int,
    shard_count: int,
    now_ms: int,
    *,
    max_shards: int,
    retention_hours: int = MIN_RETENTION_HOURS,
    mode: StreamMode = StreamMode.PROVISIONED,
    tags: Mapping[str, str] | None = None,
    max_record_kib: int | None = None,
) -> StreamDescription:
    if not isinstance(shard_count, int) or isinstance(shard_count, bool):
        raise InvalidArgumentError(f"ShardCount must be an integer, got {shard_count!r}")
    if not 1 <= shard_count <= max_shards:
        raise InvalidArgumentError(
            f"ShardCount {shard_count} is out of range: it must be between 1 and {max_shards}"
        )
    check_retention(retention_hours)
    shards = tuple(Shard(i, r, now_ms) for i, r in enumerate(even_ranges(shard_count)))
    desc = StreamDescription(
        name=name,
        incarnation=incarnation,
        created_ms=now_ms,
        shards=shards,
        retention_hours=retention_hours,
        status=StreamStatus.ACTIVE,
        next_shard_index=shard_count,
        mode=StreamMode(mode),
    )
    if tags:
        desc = add_tags(desc, tags)
    if max_record_kib is not None:
        desc = set_max_record_size(desc, max_record_kib)
    return desc


def check_retention(hours: object) -> int:
    if not isinstance(hours, int) or isinstance(hours, bool):
        raise InvalidArgumentError(f"RetentionPeriodHours must be an integer, got {hours!r}")
    if not MIN_RETENTION_HOURS <= hours <= MAX_RETENTION_HOURS:
        raise InvalidArgumentError(
            f"RetentionPeriodHours {hours} is out of range: it must be between "
            f"{MIN_RETENTION_HOURS} and {MAX_RETENTION_HOURS}"
        )
    return hours


def set_retention(desc: StreamDescription, hours: int, *, increase: bool) -> StreamDescription:
    """Kinesis' Increase/DecreaseStreamRetentionPeriod: the direction is checked."""
    check_retention(hours)
    if increase and hours < desc.retention_hours:
        raise InvalidArgumentError(
            f"RetentionPeriodHours {hours} is lower than the stream's current retention "
            f"period of {desc.retention_hours} hours: use DecreaseStreamRetentionPeriod"
        )
    if not increase and hours > desc.retention_hours:
        raise InvalidArgumentError(
            f"RetentionPeriodHours {hours} is higher than the stream's current retention "
            f"period of {desc.retention_hours} hours: use IncreaseStreamRetentionPeriod"
        )
    return dataclasses.replace(desc, retention_hours=hours)


# -- settings -------------------------------------------------------------------


def add_tags(
    desc: StreamDescription, tags: Mapping[str, str], *, max_tags: int = MAX_TAGS_PER_STREAM
) -> StreamDescription:
    """Add or overwrite tags; the stream may end with at most ``max_tags``.

    The caller has checked each key and value (``broker.operations.tags``);
    the count depends on the stream's tags, so it is checked here.
    """
    merged = dict(desc.tags)
    merged.update(tags)
    if len(merged) > max_tags:
        raise LimitExceededError(
            f"Stream {desc.name} would have {len(merged)} tags: a stream can have at most "
            f"{max_tags} (it has {len(desc.tags)})"
        )
    return dataclasses.replace(desc, tags=tuple(sorted(merged.items())))


def remove_tags(desc: StreamDescription, keys: Iterable[str]) -> StreamDescription:
    """Remove tags by key; keys the stream does not have are ignored, as in Kinesis."""
    gone = set(keys)
    return dataclasses.replace(desc, tags=tuple(kv for kv in desc.tags if kv[0] not in gone))


def set_mode(desc: StreamDescription, mode: StreamMode | str) -> StreamDescription:
    """Record the capacity mode. Nothing else changes: shardline scales no stream by itself."""
    try:
        value = StreamMode(mode)
    except ValueError:
        raise InvalidArgumentError(
            f"StreamMode {mode!r} is not valid: expected PROVISIONED or ON_DEMAND"
        ) from None
    return dataclasses.replace(desc, mode=value)


def set_shard_level_metrics(
    desc: StreamDescription, metrics: Iterable[str], *, enable: bool
) -> StreamDescription:
    """Enable or disable enhanced-monitoring metrics by name (``ALL``: every one)."""
    names = set(metrics)
    if "ALL" in names:
        names = set(SHARD_LEVEL_METRICS)
    unknown = sorted(names.difference(SHARD_LEVEL_METRICS))
    if unknown:
        raise InvalidArgumentError(
            f"ShardLevelMetrics {unknown[0]!r} is not valid: expected ALL or one of "
            f"{', '.join(SHARD_LEVEL_METRICS)}"
        )
    current = set(desc.shard_level_metrics)
    wanted = current | names if enable else current - names
    return dataclasses.replace(
        desc, shard_level_metrics=tuple(m for m in SHARD_LEVEL_METRICS if m in wanted)
    )


def set_max_record_size(desc: StreamDescription, kib: int) -> StreamDescription:
    if not isinstance(kib, int) or isinstance(kib, bool):
        raise InvalidArgumentError(f"MaxRecordSizeInKiB must be an integer, got {kib!r}")
    if not MIN_RECORD_KIB <= kib <= MAX_RECORD_KIB:
        raise InvalidArgumentError(
            f"MaxRecordSizeInKiB {kib} is out of range: it must be between {MIN_RECORD_KIB} "
            f"and {MAX_RECORD_KIB}"
        )
    return dataclasses.replace(desc, max_record_kib=kib)


# -- resharding -------------------------------------------------------------------


def _open_shard(desc: StreamDescription, index: int) -> Shard:
    shard = desc.shard(index)
    if not shard.is_open:
        raise ResourceInUseError(
            f"Shard {shard.shard_id} in stream {desc.name} is closed and cannot be resharded"
        )
    return shard


def _replace_shard(desc: StreamDescription, shard: Shard) -> tuple[Shard, ...]:
    return tuple(shard if s.index == shard.index else s for s in desc.shards)


def _check_room(desc: StreamDescription, added: int, max_shards: int) -> None:
    if len(desc.open_shards) + added > max_shards:
        raise LimitExceededError(
            f"Stream {desc.name} would have more than {max_shards} open shards"
        )


def split(
    desc: StreamDescription,
    index: int,
    new_starting_hash_key: int,
    now_ms: int,
    ending_offset: EndingOffset,
    *,
    max_shards: int,
    strict: bool = True,
) -> StreamDescription:
    """Split an open shard at a hash key: children ``[start, key-1]`` and ``[key, end]``.

    ``strict`` applies Kinesis' rule ``start + 1 < key < end``; uniform scaling
    only needs both children non-empty (``start < key <= end``).
    """
    parent = _open_shard(desc, index)
    low, high = parent.hash_range.start, parent.hash_range.end
    ok = low + 1 < new_starting_hash_key < high if strict else low < new_starting_hash_key <= high
    if not ok:
        raise InvalidArgumentError(
            f"NewStartingHashKey {new_starting_hash_key} is not valid for shard "
            f"{parent.shard_id}: it must be greater than {low + 1} and less than {high}"
        )
    _check_room(desc, 1, max_shards)
    n = desc.next_shard_index
    closed = dataclasses.replace(parent, ending_offset=ending_offset(index))
    lower = Shard(n, HashKeyRange(low, new_starting_hash_key - 1), now_ms, parent=index)
    upper = Shard(n + 1, HashKeyRange(new_starting_hash_key, high), now_ms, parent=index)
    return dataclasses.replace(
        desc, shards=(*_replace_shard(desc, closed), lower, upper), next_shard_index=n + 2
    )


def merge(
    desc: StreamDescription,
    index: int,
    adjacent_index: int,
    now_ms: int,
    ending_offset: EndingOffset,
) -> StreamDescription:
    """Merge two adjacent open shards into one child with both as parents."""
    if index == adjacent_index:
        raise InvalidArgumentError("ShardToMerge and AdjacentShardToMerge must differ")
    a = _open_shard(desc, index)
    b = _open_shard(desc, adjacent_index)
    if a.hash_range.end + 1 == b.hash_range.start:
        merged = HashKeyRange(a.hash_range.start, b.hash_range.end)
    elif b.hash_range.end + 1 == a.hash_range.start:
        merged = HashKeyRange(b.hash_range.start, a.hash_range.end)
    else:
        raise InvalidArgumentError(
            f"Shards {a.shard_id} and {b.shard_id} in stream {desc.name} are not adjacent: "
            "their hash key ranges must be contiguous"
        )
    n = desc.next_shard_index
    shards = _replace_shard(desc, dataclasses.replace(a, ending_offset=ending_offset(index)))
    desc = dataclasses.replace(desc, shards=shards)
    shards = _replace_shard(
        desc, dataclasses.replace(b, ending_offset=ending_offset(adjacent_index))
    )
    child = Shard(n, merged, now_ms, parent=index, adjacent_parent=adjacent_index)
    return dataclasses.replace(desc, shards=(*shards, child), next_shard_index=n + 1)


def scale_uniformly(
    desc: StreamDescription,
    target: int,
    now_ms: int,
    ending_offset: EndingOffset,
    *,
    max_shards: int,
) -> StreamDescription:
    """UpdateShardCount with UNIFORM_SCALING: reach ``target`` even shards by splits and merges.

    As Kinesis: the target must be between half and double the open shard count.
    """
    current = len(desc.open_shards)
    if not isinstance(target, int) or isinstance(target, bool) or target < 1:
        raise InvalidArgumentError(f"TargetShardCount must be a positive integer, got {target!r}")
    if target > max_shards:
        raise LimitExceededError(
            f"TargetShardCount {target} exceeds the limit of {max_shards} shards per stream"
        )
    if target > 2 * current or 2 * target < current:
        raise InvalidArgumentError(
            f"TargetShardCount {target} is not valid: it must be between half "
            f"({(current + 1) // 2}) and double ({2 * current}) the open shard count of {current}"
        )
    targets = even_ranges(target)
    # Splits: make every target boundary a boundary of the open shards.
    for wanted in targets[1:]:
        holder = next(s for s in desc.open_shards if wanted.start in s.hash_range)
        if holder.hash_range.start != wanted.start:
            desc = split(
                desc,
                holder.index,
                wanted.start,
                now_ms,
                ending_offset,
                max_shards=2 * max_shards,
                strict=False,
            )
    # Merges: fold the open shards inside each target range into one.
    for wanted in targets:
        while True:
            inside = sorted(
                (
                    s
                    for s in desc.open_shards
                    if wanted.start <= s.hash_range.start and s.hash_range.end <= wanted.end
                ),
                key=lambda s: s.hash_range.start,
            )
            if len(inside) <= 1:
                break
            desc = merge(desc, inside[0].index, inside[1].index, now_ms, ending_offset)
    return desc


def to_record(desc: StreamDescription) -> dict[str, Any]:
    """The stream as stored (msgpack has no 128-bit integers: hash keys are decimal strings)."""
    return {
        "name": desc.name,
        "incarnation": desc.incarnation,
        "created_ms": desc.created_ms,
        "retention_hours": desc.retention_hours,
        "status": str(desc.status),
        "next_shard_index": desc.next_shard_index,
        "mode": str(desc.mode),
        "tags": [list(kv) for kv in desc.tags],
        "metrics": list(desc.shard_level_metrics),
        "max_record_kib": desc.max_record_kib,
        "shards": [
            [
                s.index,
                str(s.hash_range.start),
                str(s.hash_range.end),
                s.created_ms,
                s.parent,
                s.adjacent_parent,
                s.ending_offset,
            ]
            for s in desc.shards
        ],
    }


def from_record(record: dict[str, Any]) -> StreamDescription:
    shards = tuple(
        Shard(index, HashKeyRange(int(start), int(end)), created, parent, adjacent, ending)
        for index, start, end, created, parent, adjacent, ending in record["shards"]
    )
    return StreamDescription(
        name=record["name"],
        incarnation=record["incarnation"],
        created_ms=record["created_ms"],
        shards=shards,
        retention_hours=record["retention_hours"],
        status=StreamStatus(record["status"]),
        next_shard_index=record["next_shard_index"],
        # Absent from records written before these settings existed: the defaults.
        mode=StreamMode(record.get("mode", StreamMode.PROVISIONED)),
        tags=tuple((key, value) for key, value in record.get("tags", ())),
        shard_level_metrics=tuple(record.get("metrics", ())),
        max_record_kib=record.get("max_record_kib"),
    )

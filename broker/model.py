"""The broker's data model: frozen dataclasses for streams, shards, leases and checkpoints.

These objects are what the log publishes and what operations return. They are
immutable: a change to a stream (a reshard, a retention change) produces a new
``StreamDescription``. Positions inside a shard are *offsets* (contiguous
integers from 1; offset 0 is the shard's start); the wire form of a position is
a sequence number (``broker.sequence``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from .errors import InvalidArgumentError

#: The largest 128-bit hash key.
MAX_HASH_KEY = (1 << 128) - 1

STREAM_NAME_RE = re.compile(r"[a-zA-Z0-9_.-]{1,128}")
SHARD_ID_RE = re.compile(r"shardId-(\d{12})")

#: Checkpoint value meaning "the shard was processed to its end" (as KCL).
SHARD_END = "SHARD_END"


class StreamStatus(enum.StrEnum):
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    UPDATING = "UPDATING"
    DELETING = "DELETING"


class StreamMode(enum.StrEnum):
    """Kinesis' capacity modes. shardline stores and reports the mode; it scales neither."""

    PROVISIONED = "PROVISIONED"
    ON_DEMAND = "ON_DEMAND"


class ShardState(enum.StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class PositionType(enum.StrEnum):
    """Where a read starts: the five Kinesis iterator types."""

    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"
    AT_SEQUENCE_NUMBER = "AT_SEQUENCE_NUMBER"
    AFTER_SEQUENCE_NUMBER = "AFTER_SEQUENCE_NUMBER"
    AT_TIMESTAMP = "AT_TIMESTAMP"


def shard_id(index: int) -> str:
    """The Kinesis-style id of shard ``index``: ``shardId-000000000007``."""
    return f"shardId-{index:012d}"


def parse_shard_id(value: str) -> int:
    """The index of a shard id, or ``InvalidArgumentError`` naming what is wrong."""
    match = SHARD_ID_RE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidArgumentError(
            f"ShardId {value!r} is not valid: expected 'shardId-' followed by 12 digits"
        )
    return int(match.group(1))


def validate_stream_name(name: object) -> str:
    if not isinstance(name, str) or STREAM_NAME_RE.fullmatch(name) is None:
        raise InvalidArgumentError(
            f"StreamName {name!r} is not valid: it must match [a-zA-Z0-9_.-]{{1,128}}"
        )
    return name


@dataclass(frozen=True, slots=True)
class HashKeyRange:
    """An inclusive range of 128-bit hash keys."""

    start: int
    end: int

    def __contains__(self, key: object) -> bool:
        return isinstance(key, int) and self.start <= key <= self.end


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard of a stream.

    ``ending_offset`` is set when the shard is closed by a reshard: the offset
    of its last record (0 if it never had one). A closed shard takes no writes
    and stays readable until retention removes its data.
    """

    index: int
    hash_range: HashKeyRange
    created_ms: int
    parent: int | None = None
    adjacent_parent: int | None = None
    ending_offset: int | None = None

    @property
    def shard_id(self) -> str:
        return shard_id(self.index)

    @property
    def state(self) -> ShardState:
        return ShardState.OPEN if self.ending_offset is None else ShardState.CLOSED

    @property
    def is_open(self) -> bool:
        return self.ending_offset is None

    @property
    def parents(self) -> tuple[int, ...]:
        return tuple(p for p in (self.parent, self.adjacent_parent) if p is not None)


@dataclass(frozen=True, slots=True)
class StreamDescription:
    """A stream as the catalog holds it: name, incarnation, settings and every shard.

    The settings that only describe the stream (``broker.log.catalog`` has the
    rules): ``mode``; ``tags`` as (key, value) pairs sorted by key;
    ``shard_level_metrics``, the enhanced-monitoring metric names enabled, in
    Kinesis' order; ``max_record_kib``, the stream's own record size limit
    (None: the broker's ``max_record_bytes``).
    """

    name: str
    incarnation: int
    created_ms: int
    shards: tuple[Shard, ...]
    retention_hours: int = 24
    status: StreamStatus = StreamStatus.ACTIVE
    next_shard_index: int = 0
    mode: StreamMode = StreamMode.PROVISIONED
    tags: tuple[tuple[str, str], ...] = ()
    shard_level_metrics: tuple[str, ...] = ()
    max_record_kib: int | None = None

    def shard(self, index: int) -> Shard:
        """The shard with this index, or ``ResourceNotFoundError``."""
        for shard in self.shards:
            if shard.index == index:
                return shard
        from .errors import ResourceNotFoundError

        raise ResourceNotFoundError(f"Shard {shard_id(index)} in stream {self.name} does not exist")

    @property
    def open_shards(self) -> tuple[Shard, ...]:
        return tuple(s for s in self.shards if s.is_open)

    def children_of(self, index: int) -> tuple[Shard, ...]:
        return tuple(s for s in self.shards if index in s.parents)


@dataclass(frozen=True, slots=True)
class ShardTail:
    """Where a shard's log stands: what can be read and what comes next.

    ``horizon`` is the offset of the oldest record still stored (equal to
    ``next_offset`` when the shard holds none); ``next_offset`` is the offset the
    next appended record gets; ``last_arrival_ms`` the arrival time of the newest
    record (0 if none).
    """

    horizon: int = 1
    next_offset: int = 1
    last_arrival_ms: int = 0

    @property
    def newest_offset(self) -> int:
        return self.next_offset - 1


@dataclass(frozen=True, slots=True)
class Lease:
    """Who may process a shard for an application, until when, and under which counter.

    ``counter`` grows at every change of owner; a checkpoint carries the counter
    its writer was granted, so a writer whose lease was taken over is refused.
    """

    stream_incarnation: int
    application: str
    shard_index: int
    owner: str
    expires_ms: int
    counter: int

    def is_expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_ms


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last fully processed position of a shard for an application.

    ``offset`` is the offset of the last processed record (resume AFTER it), or
    None with ``shard_end`` True once the shard was processed to its end.
    """

    stream_incarnation: int
    application: str
    shard_index: int
    offset: int | None
    lease_counter: int | None
    shard_end: bool = False
    updated_ms: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class Consumer:
    """A consumer registered on a stream incarnation for enhanced fan-out.

    Registration is synchronous, so a consumer that exists is ``ACTIVE``. Its
    ARN ends in ``created_s``: a consumer registered again under the same name
    is created in a later second (the log sees to it), so it gets a new ARN.
    """

    stream_incarnation: int
    name: str
    created_ms: int

    @property
    def created_s(self) -> int:
        """The creation time in whole seconds since the epoch, as its ARN carries it."""
        return self.created_ms // 1000

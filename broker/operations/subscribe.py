"""SubscribeToShard: a registered consumer's push stream of one shard.

The request names a registered consumer by ARN, a shard, and a
``StartingPosition`` (the five iterator types). Everything that can be refused
is refused before the body starts, as a plain error map with its status: an
unknown or stale consumer ARN or stream (``ResourceNotFoundException``), a
bad shard or position (``InvalidArgumentException``), a second subscription
for the same consumer and shard within the takeover window
(``ResourceInUseException``). Then the answer is a ``Subscription``
(``broker.fanout.hub``): HTTP 200 and a body of push events until the
subscription's lifetime ends, the shard's end is reached, or an error event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidArgumentError
from ..model import PositionType
from . import fields as f
from .base import Broker, Request, Result, operation
from .consumers import find_consumer, parse_consumer_arn

if TYPE_CHECKING:
    from ..fanout.hub import FanoutHub

POSITION_TYPES = tuple(t.value for t in PositionType)


def hub_for(broker: Broker) -> FanoutHub:
    """The broker's fan-out hub, made with the broker's settings on first use."""
    # Imported here: the hub builds on broker.operations (Streamed, shapes).
    from ..fanout.hub import FanoutHub, HubConfig

    hub = broker.extras.get("fanout")
    if not isinstance(hub, FanoutHub):
        config = broker.config
        hub = broker.extras["fanout"] = FanoutHub(
            broker.log,
            HubConfig(
                tail_bytes=config.fanout_tail_bytes,
                heartbeat_s=config.subscription_heartbeat_s,
                lifetime_s=config.subscription_lifetime_s,
                takeover_window_s=config.subscription_takeover_window_s,
                budget_bytes=config.fanout_budget_bytes,
                rate_bytes_per_s=config.subscription_rate_bytes_per_s or None,
            ),
        )
    return hub


@operation("SubscribeToShard")
async def subscribe_to_shard(broker: Broker, request: Request) -> Result:
    arn = f.required_str(request, "ConsumerARN", max_len=f.MAX_ARN_CHARS)
    address = parse_consumer_arn(broker.config, arn)
    find_consumer(broker, address)
    index = f.required_shard(request, "ShardId")
    start = f.optional_map(request, "StartingPosition")
    if start is None:
        raise InvalidArgumentError("StartingPosition is required")
    kind = f.required_choice(start, "Type", POSITION_TYPES)
    sequence = f.optional_str(start, "SequenceNumber")
    timestamp = f.optional_int(start, "Timestamp", low=0)
    if kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER") and sequence is None:
        raise InvalidArgumentError(f"StartingPosition {kind} needs a SequenceNumber")
    if kind == "AT_TIMESTAMP" and timestamp is None:
        raise InvalidArgumentError("StartingPosition AT_TIMESTAMP needs a Timestamp")
    desc = broker.log.describe(address.stream)
    offset = broker.log.resolve(
        desc.name, index, kind, sequence_number=sequence, timestamp_ms=timestamp
    )
    return hub_for(broker).subscribe(arn, desc, index, offset)

"""Stream consumers (enhanced fan-out): register, deregister, describe, list.

A consumer is registered on a stream (``StreamARN``) under a name unique per
stream, and is named afterwards by its ARN, in AWS' form::

    arn:aws:kinesis:<region>:<account>:stream/<stream>/consumer/<name>:<created, epoch s>

or by ``StreamARN`` + ``ConsumerName`` (both: they must agree). The creation
second in the ARN tells a consumer from an earlier one of the same name: an
ARN whose stream, name or second is not a registered consumer's is
``ResourceNotFoundException``, and a name registered again gets a new ARN
(``broker.log.consumers``).

Registration is synchronous: the consumer is ``ACTIVE`` when the response
arrives (Kinesis: ``CREATING`` for a few seconds), and deregistration removes
it at once (Kinesis: ``DELETING``). At most ``max_consumers_per_stream``
(default 20, as Kinesis) per stream: ``LimitExceededException``.

``RegisterStreamConsumer`` takes ``Tags`` under the stream tag rules
(``broker.operations.tags``), stored in the consumer's row and gone with it;
they are read and changed afterwards by the consumer's ARN
(``ListTagsForResource``, ``TagResource``, ``UntagResource``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..config import BrokerConfig
from ..errors import InvalidArgumentError, ResourceNotFoundError, ValidationError
from ..log.consumers import check_consumer_name
from ..model import Consumer
from . import fields as f
from . import tags as tag_rules  # a module import: tags.py imports this module too
from .base import Broker, Request, Response, operation
from .shapes import codec

#: What a registered consumer reports: registration is synchronous (docs/design.md).
CONSUMER_STATUS = "ACTIVE"

_CONSUMER_ARN_RE = re.compile(
    r"(arn:aws:kinesis:[a-z0-9-]{1,64}:[0-9]{12}:stream/[a-zA-Z0-9_.-]{1,128})"
    r"/consumer/([a-zA-Z0-9_.-]{1,128}):([0-9]{1,20})"
)


# -- ARNs and addressing ------------------------------------------------------------


def consumer_arn(config: BrokerConfig, stream: str, consumer: Consumer) -> str:
    return f"{config.stream_arn(stream)}/consumer/{consumer.name}:{consumer.created_s}"


@dataclass(frozen=True, slots=True)
class ConsumerAddress:
    """A consumer as a request names it: by ARN (with its creation second) or by name."""

    stream: str
    name: str
    #: The creation second of a ``ConsumerARN``; None when named by StreamARN + ConsumerName.
    created_s: int | None = None


def parse_consumer_arn(config: BrokerConfig, arn: str) -> ConsumerAddress:
    """The consumer an ARN names on this broker (not yet looked up)."""
    match = _CONSUMER_ARN_RE.fullmatch(arn) if len(arn) <= f.MAX_ARN_CHARS else None
    if match is None:
        raise InvalidArgumentError(
            f"ConsumerARN {arn[:200]!r} is not valid: expected arn:aws:kinesis:<region>:"
            "<account>:stream/<stream name>/consumer/<consumer name>:<creation epoch seconds>"
        )
    stream_arn, name, created_s = match.groups()
    return ConsumerAddress(f.parse_stream_arn(config, stream_arn), name, int(created_s))


def _stream_arn(config: BrokerConfig, request: Request) -> str:
    """The stream named by the required ``StreamARN`` (consumer operations take no name)."""
    return f.parse_stream_arn(config, f.required_str(request, "StreamARN", max_len=f.MAX_ARN_CHARS))


def consumer_address(config: BrokerConfig, request: Request) -> ConsumerAddress:
    """``ConsumerARN``, or ``StreamARN`` + ``ConsumerName`` (all three: they must agree)."""
    arn = f.optional_str(request, "ConsumerARN", max_len=f.MAX_ARN_CHARS)
    stream_arn = f.optional_str(request, "StreamARN", max_len=f.MAX_ARN_CHARS)
    name = f.optional_str(request, "ConsumerName", max_len=128)
    if name is not None:
        check_consumer_name(name)
    stream = None if stream_arn is None else f.parse_stream_arn(config, stream_arn)
    if arn is not None:
        address = parse_consumer_arn(config, arn)
        if stream is not None and stream != address.stream:
            raise InvalidArgumentError(
                f"ConsumerARN {arn} and StreamARN {stream_arn} name different streams"
            )
        if name is not None and name != address.name:
            raise InvalidArgumentError(
                f"ConsumerARN {arn} and ConsumerName {name} name different consumers"
            )
        return address
    if stream is None or name is None:
        raise ValidationError(
            "1 validation error detected: either ConsumerARN, or StreamARN and ConsumerName, "
            "must be given"
        )
    return ConsumerAddress(stream, name)


def _not_found(config: BrokerConfig, address: ConsumerAddress) -> ResourceNotFoundError:
    what = f"{config.stream_arn(address.stream)}/consumer/{address.name}"
    if address.created_s is not None:
        what += f":{address.created_s}"
    return ResourceNotFoundError(f"Consumer {what} not found")


def find_consumer(broker: Broker, address: ConsumerAddress) -> Consumer:
    """The registered consumer ``address`` names, else ``ResourceNotFoundError``.

    For SubscribeToShard too: ``find_consumer(broker, parse_consumer_arn(config, arn))``.
    """
    consumer = broker.log.get_consumer(address.stream, address.name)
    if consumer is None or (
        address.created_s is not None and consumer.created_s != address.created_s
    ):
        raise _not_found(broker.config, address)
    return consumer


def find_tagged_consumer(
    broker: Broker, address: ConsumerAddress
) -> tuple[Consumer, tuple[tuple[str, str], ...]]:
    """As ``find_consumer``, with the consumer's tags (key order), read in one transaction."""
    found = broker.log.get_tagged_consumer(address.stream, address.name)
    if found is None or (address.created_s is not None and found[0].created_s != address.created_s):
        raise _not_found(broker.config, address)
    return found


# -- shapes ---------------------------------------------------------------------------


def consumer_view(config: BrokerConfig, stream: str, consumer: Consumer) -> dict[str, Any]:
    """Kinesis' ``Consumer``: name, ARN, status and creation time (ms)."""
    return {
        "ConsumerName": consumer.name,
        "ConsumerARN": consumer_arn(config, stream, consumer),
        "ConsumerStatus": CONSUMER_STATUS,
        "ConsumerCreationTimestamp": consumer.created_ms,
    }


# -- operations -------------------------------------------------------------------------


@operation("RegisterStreamConsumer")
async def register_stream_consumer(broker: Broker, request: Request) -> Response:
    stream = _stream_arn(broker.config, request)
    name = check_consumer_name(f.required_str(request, "ConsumerName", max_len=128))
    # As CreateStream's: each tag checked here, at most 50 in the log's commit.
    tags = tag_rules.tag_map(request, required=False)
    consumer = await broker.log.register_consumer(
        stream, name, max_consumers=broker.config.max_consumers_per_stream, tags=tags
    )
    return {"Consumer": consumer_view(broker.config, stream, consumer)}


@operation("DeregisterStreamConsumer")
async def deregister_stream_consumer(broker: Broker, request: Request) -> Response:
    address = consumer_address(broker.config, request)
    await broker.log.deregister_consumer(address.stream, address.name, created_s=address.created_s)
    return {}


@operation("DescribeStreamConsumer")
async def describe_stream_consumer(broker: Broker, request: Request) -> Response:
    address = consumer_address(broker.config, request)
    consumer = find_consumer(broker, address)
    description = consumer_view(broker.config, address.stream, consumer)
    description["StreamARN"] = broker.config.stream_arn(address.stream)
    return {"ConsumerDescription": description}


@operation("ListStreamConsumers")
async def list_stream_consumers(broker: Broker, request: Request) -> Response:
    stream = _stream_arn(broker.config, request)
    limit = f.optional_int(request, "MaxResults", default=100, low=1, high=10_000)
    assert limit is not None
    token = f.optional_str(request, "NextToken")
    created = f.optional_int(request, "StreamCreationTimestamp")
    now = broker.log.now_ms()
    desc = broker.log.describe(stream)
    after: str | None = None
    if token is not None:
        if created is not None:
            raise InvalidArgumentError("NextToken and StreamCreationTimestamp cannot be combined")
        state = codec(broker).decode_page(token, now)
        if len(state) != 4 or state[0] != "consumers" or not isinstance(state[3], str):
            raise InvalidArgumentError(
                "NextToken is not valid: it is not a ListStreamConsumers token"
            )
        _, token_stream, incarnation, after = state
        if token_stream != stream:
            raise InvalidArgumentError(
                f"NextToken is not valid: it continues a listing of stream {token_stream}, "
                f"not {stream}"
            )
        if incarnation != desc.incarnation:
            raise ResourceNotFoundError(
                f"Stream {stream} was deleted since the NextToken was issued"
            )
    elif created is not None and created != desc.created_ms:
        raise ResourceNotFoundError(
            f"Stream {stream} created at {created} not found (it was created at {desc.created_ms})"
        )
    page = broker.log.list_consumers(stream, after=after, limit=limit + 1)
    more = len(page) > limit
    page = page[:limit]
    response: Response = {"Consumers": [consumer_view(broker.config, stream, c) for c in page]}
    if more:
        response["NextToken"] = codec(broker).encode_page(
            ["consumers", stream, desc.incarnation, page[-1].name], now
        )
    return response

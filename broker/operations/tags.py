"""Tags: key-value labels on a stream, by stream (``*TagsToStream``) or by ARN (``*Resource``).

Tags live in the stream's catalog record (``StreamDescription.tags``), so they
are written in the same durable commit as any other change of the stream,
survive a restart, and go with the stream: a stream deleted and created again
under the same name starts with none. The rules that depend only on the
request are checked here; the one that depends on the stream, at most
``MAX_TAGS_PER_STREAM`` (50, as Kinesis) after the change, is checked by the
catalog transition inside the commit (``broker.log.catalog.add_tags``), so two
concurrent additions cannot together pass it. Over it: ``LimitExceededException``
and nothing is changed.

What a tag may be (Kinesis' documented rules, as AWS enforces them):

- a key of 1 to 128 characters, a value of 0 to 256;
- only Unicode letters, digits, white space and ``_ . / = + - @ :`` (the
  ``%`` that some AWS pages list is refused by AWS itself, so here too);
- no key beginning with ``aws:`` (reserved by AWS for its own tags);
- ``AddTagsToStream`` takes at most 10 tags per call (its documentation;
  the model allows bigger maps, and ``TagResource`` and ``CreateStream`` take
  up to the stream's limit).

A bad key or value is ``InvalidArgumentException`` naming it; a value that is
not a string, or a ``TagKeys`` entry that is not one, is ``ValidationException``
(the house split, ``fields.py``). Adding a key the stream has overwrites its
value; removing a key it does not have is not an error (as Kinesis).

``ListTagsForStream`` pages in key order: ``Limit`` (1 to 50, default 50, so
an unpaged call sees every tag) and ``ExclusiveStartTagKey``; ``HasMoreTags``
says whether more follow. ``ListTagsForResource`` answers all of them.

The ARN-based operations take a stream ARN, or an enhanced fan-out consumer's
ARN. A consumer's tags (given at ``RegisterStreamConsumer`` or by
``TagResource``) follow the same rules and the same limit of 50, checked in
the commit against the consumer's stored row (``broker.log.consumers``); they
go with the consumer when it is deregistered. A consumer ARN that names no
registered consumer, or one registered again since (its creation second
differs), is ``ResourceNotFoundException``; the commit checks that again, so
a consumer deregistered between the look-up and the write is not tagged.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..config import BrokerConfig
from ..errors import InvalidArgumentError, ValidationError
from ..log import catalog
from . import consumers
from . import fields as f
from .base import Broker, Request, Response, operation

MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256
#: Tags per ``AddTagsToStream`` call (Kinesis' documentation: "a set of up to 10").
MAX_TAGS_PER_ADD = 10
#: Keys per ``RemoveTagsFromStream`` / ``UntagResource`` call (Kinesis' model).
MAX_KEYS_PER_REMOVE = 50
#: ``ListTagsForStream``'s ``Limit`` bound and default: a stream's whole set.
MAX_LIST_LIMIT = catalog.MAX_TAGS_PER_STREAM
RESERVED_PREFIX = "aws:"
_SYMBOLS = frozenset("_./=+-@:")
_ALLOWED = "Unicode letters, digits, white space, _ . / = + - @ :"


def _allowed(text: str) -> bool:
    return all(ch.isalpha() or ch.isdigit() or ch.isspace() or ch in _SYMBOLS for ch in text)


def check_key(key: str, where: str = "Tags") -> str:
    """A tag key by Kinesis' rules, or ``InvalidArgumentError`` naming it."""
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidArgumentError(
            f"{where}: tag key {key[:MAX_KEY_CHARS]!r} is not valid: a key must be 1 to "
            f"{MAX_KEY_CHARS} characters long, got {len(key)}"
        )
    if not _allowed(key):
        raise InvalidArgumentError(
            f"{where}: tag key {key!r} contains characters that are not allowed: "
            f"valid characters are {_ALLOWED}"
        )
    if key.lower().startswith(RESERVED_PREFIX):
        raise InvalidArgumentError(
            f"{where}: tag key {key!r} is not valid: the prefix {RESERVED_PREFIX!r} is reserved "
            "for AWS"
        )
    return key


def check_value(key: str, value: str) -> str:
    if len(value) > MAX_VALUE_CHARS:
        raise InvalidArgumentError(
            f"Tags: the value of tag {key!r} is not valid: a value must be at most "
            f"{MAX_VALUE_CHARS} characters long, got {len(value)}"
        )
    if not _allowed(value):
        raise InvalidArgumentError(
            f"Tags: the value of tag {key!r} contains characters that are not allowed: "
            f"valid characters are {_ALLOWED}"
        )
    return value


def tag_map(
    request: Request, name: str = "Tags", *, required: bool = True, max_tags: int | None = None
) -> dict[str, str] | None:
    """A ``Tags`` map, every key and value checked; None if optional and absent.

    ``max_tags`` bounds the tags of one call (``AddTagsToStream``); the bound
    on the stream's tags is the catalog's. A required map must not be empty.
    """
    tags = f.optional_map(request, name)
    if tags is None:
        if required:
            raise ValidationError(
                f"1 validation error detected: Value null at '{name}' failed to satisfy "
                "constraint: Member must not be null"
            )
        return None
    if required and not tags:
        raise InvalidArgumentError(f"{name} must hold at least 1 tag")
    if max_tags is not None and len(tags) > max_tags:
        raise InvalidArgumentError(
            f"{name} holds {len(tags)} tags: at most {max_tags} can be added in one call"
        )
    for key, value in tags.items():
        if not isinstance(value, str):
            raise ValidationError(
                f"1 validation error detected: Value at '{name}.{key}' failed to satisfy "
                f"constraint: Member must be a string, got {type(value).__name__}"
            )
        check_key(key, name)
        check_value(key, value)
    return dict(tags)


def tag_keys(request: Request, name: str = "TagKeys") -> list[str]:
    """A ``TagKeys`` list: 1 to 50 strings, each a well-formed key."""
    keys = f.required_list(request, name, min_len=1, max_len=MAX_KEYS_PER_REMOVE)
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise ValidationError(
                f"1 validation error detected: Value at '{name}[{i}]' failed to satisfy "
                f"constraint: Member must be a string, got {type(key).__name__}"
            )
        check_key(key, name)
    return keys


def tag_list(tags: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    """Kinesis' ``Tags`` list shape: ``[{Key, Value}]`` in key order."""
    return [{"Key": key, "Value": value} for key, value in tags]


# -- resources by ARN ------------------------------------------------------------------


def resource(broker: Broker, request: Request) -> str | consumers.ConsumerAddress:
    """The stream name, or the registered consumer, that ``ResourceARN`` names."""
    config: BrokerConfig = broker.config
    arn = f.required_str(request, "ResourceARN", max_len=f.MAX_ARN_CHARS)
    try:
        if "/consumer/" in arn:
            address = consumers.parse_consumer_arn(config, arn)
            consumers.find_consumer(broker, address)
            return address
        return f.parse_stream_arn(config, arn)
    except InvalidArgumentError:
        raise InvalidArgumentError(
            f"ResourceARN {arn[:200]!r} is not valid: expected a stream ARN "
            "(arn:aws:kinesis:<region>:<account>:stream/<name>) or a consumer ARN "
            "(<stream ARN>/consumer/<name>:<creation epoch seconds>)"
        ) from None


async def _add(
    broker: Broker, target: str | consumers.ConsumerAddress, tags: Mapping[str, str]
) -> None:
    if isinstance(target, consumers.ConsumerAddress):
        await broker.log.tag_consumer(target.stream, target.name, tags, created_s=target.created_s)
    else:
        await broker.log.change_settings(target, lambda d: catalog.add_tags(d, tags))


async def _remove(broker: Broker, target: str | consumers.ConsumerAddress, keys: list[str]) -> None:
    if isinstance(target, consumers.ConsumerAddress):
        await broker.log.untag_consumer(
            target.stream, target.name, keys, created_s=target.created_s
        )
    else:
        await broker.log.change_settings(target, lambda d: catalog.remove_tags(d, keys))


# -- operations --------------------------------------------------------------------------


@operation("AddTagsToStream")
async def add_tags_to_stream(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    tags = tag_map(request, max_tags=MAX_TAGS_PER_ADD)
    assert tags is not None
    await _add(broker, name, tags)
    return {}


@operation("RemoveTagsFromStream")
async def remove_tags_from_stream(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    await _remove(broker, name, tag_keys(request))
    return {}


@operation("ListTagsForStream")
async def list_tags_for_stream(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    limit = f.optional_int(request, "Limit", default=MAX_LIST_LIMIT, low=1, high=MAX_LIST_LIMIT)
    assert limit is not None
    start = f.optional_str(request, "ExclusiveStartTagKey", max_len=MAX_KEY_CHARS)
    tags = [kv for kv in broker.log.describe(name).tags if start is None or kv[0] > start]
    return {"Tags": tag_list(tuple(tags[:limit])), "HasMoreTags": len(tags) > limit}


@operation("TagResource")
async def tag_resource(broker: Broker, request: Request) -> Response:
    target = resource(broker, request)
    tags = tag_map(request)
    assert tags is not None
    await _add(broker, target, tags)
    return {}


@operation("UntagResource")
async def untag_resource(broker: Broker, request: Request) -> Response:
    target = resource(broker, request)
    await _remove(broker, target, tag_keys(request))
    return {}


@operation("ListTagsForResource")
async def list_tags_for_resource(broker: Broker, request: Request) -> Response:
    target = resource(broker, request)
    if isinstance(target, consumers.ConsumerAddress):
        return {"Tags": tag_list(consumers.find_tagged_consumer(broker, target)[1])}
    return {"Tags": tag_list(broker.log.describe(target).tags)}

"""The broker state that handlers work on, the registry, and ``dispatch``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import BrokerConfig
from ..errors import InvalidArgumentError, SerializationError, UnknownOperationError
from ..log import Log, open_log

Request = dict[str, Any]
Response = dict[str, Any]


class Prepared:
    """A response that has a cheaper wire form than its map.

    A handler on a hot path may return one instead of a dict: a codec asks for
    its own encoding (``native_body`` for the msgpack wire) and falls back to
    encoding ``to_dict()``; both give the same bytes. ``record_count`` is what
    the metrics count as records in or out; ``record_bytes`` what read limits
    charge for the records it carries.
    """

    __slots__ = ()

    record_count: int = 0
    record_bytes: int = 0

    def to_dict(self) -> Response:
        raise NotImplementedError

    def native_body(self) -> bytes | None:
        """The msgpack body, or None to have ``to_dict()`` packed."""
        return None


class BodySink(Protocol):
    """Where a streamed response's body goes; the transport behind it is not the handler's business.

    ``send`` returns once the transport took the chunk (its flow control and
    the socket allowed it), so a reader that stops reading stops its sender
    and nobody else. It raises ``trio.BrokenResourceError`` when the peer is gone.
    """

    async def send(self, chunk: bytes) -> None: ...

    def send_nowait(self, chunk: bytes) -> bool:
        """Queue ``chunk`` at once if flow control has room for all of it; else False.

        The transport writes it soon after, from its own task; nothing waits.
        """
        ...


class Streamed:
    """A response whose body is produced over time (SubscribeToShard's events).

    The transport sends the success status and ``content_type`` first, then
    calls ``run`` with a sink, and ends the body when ``run`` returns. Errors
    found before anything is streamed are raised by the handler as usual;
    after that they are events of the body.
    """

    content_type = "application/msgpack"

    async def run(self, sink: BodySink) -> None:
        raise NotImplementedError


Result = Response | Prepared | Streamed
Handler = Callable[["Broker", Request], Awaitable[Result]]


def as_dict(result: Result) -> Response:
    """The map form of a handler's result (not for a ``Streamed`` one)."""
    if isinstance(result, Streamed):
        raise TypeError("a streamed response has no map form")
    return result.to_dict() if isinstance(result, Prepared) else result


#: Every operation by its Kinesis name; filled by ``@operation``.
OPERATIONS: dict[str, Handler] = {}


def operation(name: str) -> Callable[[Handler], Handler]:
    """Register a handler under its Kinesis operation name."""

    def register(handler: Handler) -> Handler:
        if name in OPERATIONS:
            raise ValueError(f"operation {name} registered twice")
        OPERATIONS[name] = handler
        return handler

    return register


@dataclass
class Broker:
    """What handlers work on: the log and the settings, plus per-broker helpers.

    ``extras`` is for state later parts attach (iterator codec, throughput
    limiters, metrics) without a dependency from this module on them.
    """

    log: Log
    config: BrokerConfig
    extras: dict[str, Any] = field(default_factory=dict)


async def dispatch(broker: Broker, name: str, request: object) -> Result:
    """Run operation ``name`` on a decoded request; raises ``ShardlineError`` on failure."""
    handler = OPERATIONS.get(name)
    if handler is None:
        raise UnknownOperationError(f"Operation {name!r} is not supported")
    if not isinstance(request, dict):
        raise SerializationError(
            f"the request body must be a map of field names to values, got {type(request).__name__}"
        )
    if request.get("DryRun") is True:
        # AWS checks the request and answers DryRunOperationException; doing the request
        # instead would write what the caller meant only to check. Refused, not performed.
        raise InvalidArgumentError(
            f"DryRun is not supported by shardline: the {name} request was not performed"
        )
    return await handler(broker, request)


@asynccontextmanager
async def open_broker(config: BrokerConfig) -> AsyncIterator[Broker]:
    """Open the log of ``config.data`` and the broker state over it."""
    async with open_log(config.data, config.log) as log:
        yield Broker(log, config)

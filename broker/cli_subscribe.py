"""``shardline subscribe STREAM --consumer NAME``: records pushed to a consumer, as JSON lines.

The consumer (registered with ``shardline consumers register``) is looked up
by name (``DescribeStreamConsumer``), then its shards are followed with push
subscriptions (``consumers.subscriber``): one shard with ``--shard`` (until
its end, if it is closed), else every shard of the stream, child shards after
their parents. Each record is one JSON line on stdout with the fields ``get``
prints (``ShardId``, ``SequenceNumber``, ``PartitionKey``, ``Data`` in base64,
``ApproximateArrivalTimestamp`` in seconds), flushed as it comes.

``--from`` is where to start (default ``latest``: only records that arrive
from now on). ``--count N`` exits 0 after N records; ``--timeout S`` exits 1,
with a message on stderr, if S seconds pass first. Without either the command
runs until interrupted, or until every shard it follows has ended.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
from typing import Any, TextIO

import trio

from consumers.subscriber import ShardSubscriber, StreamSubscriber

from .cli_client import _starting_position
from .client import Client, RecordsEvent
from .errors import InvalidArgumentError


def add_parser(commands: Any) -> None:
    """The ``subscribe`` subcommand's arguments (``commands``: the CLI's subparsers)."""
    subscribe = commands.add_parser(
        "subscribe", help="follow records pushed to a registered consumer, as JSON lines"
    )
    subscribe.add_argument("stream")
    subscribe.add_argument("--consumer", required=True, help="the registered consumer's name")
    subscribe.add_argument(
        "--shard", help="one shard (default: every shard, children after parents)"
    )
    subscribe.add_argument(
        "--from",
        dest="start",
        default="latest",
        help="latest (default) | trim-horizon | at-sequence:N | after-sequence:N "
        "| at-timestamp:ISO8601",
    )
    subscribe.add_argument("--count", type=int, help="exit 0 after this many records")
    subscribe.add_argument(
        "--timeout", type=float, help="exit 1 if this many seconds pass before --count records"
    )


def starting_position(spec: str) -> dict[str, Any]:
    """``--from`` as a SubscribeToShard ``StartingPosition``."""
    kwargs = _starting_position(spec)
    position: dict[str, Any] = {"Type": kwargs["shard_iterator_type"]}
    if "starting_sequence_number" in kwargs:
        position["SequenceNumber"] = kwargs["starting_sequence_number"]
    if "timestamp" in kwargs:
        position["Timestamp"] = kwargs["timestamp"]
    return position


async def run(args: argparse.Namespace) -> int:
    async with Client(args.endpoint) as client:
        try:
            return await subscribe(client, args, sys.stdout, sys.stderr)
        except BrokenPipeError:
            # The reader went away (``| head``): that is how a pipe ends, not an error.
            sys.stdout = open(  # noqa: SIM115 - kept open for the interpreter's final flush
                "/dev/null", "w"
            )
            return 0


class _Printer:
    """Writes records as JSON lines until ``count`` of them (if any) were written."""

    def __init__(self, out: TextIO, count: int | None) -> None:
        self.out = out
        self.count = count
        self.printed = 0

    @property
    def done(self) -> bool:
        return self.count is not None and self.printed >= self.count

    def write(self, shard_id: str, event: RecordsEvent) -> None:
        lines = []
        sequences = event.sequence_numbers()
        for sequence, (arrival, key, data) in zip(sequences, event.records, strict=True):
            if self.done:
                break
            record = {
                "ShardId": shard_id,
                "SequenceNumber": sequence,
                "PartitionKey": key,
                "Data": base64.b64encode(data).decode(),
                "ApproximateArrivalTimestamp": arrival / 1000,
            }
            lines.append(json.dumps(record) + "\n")
            self.printed += 1
        self.out.write("".join(lines))
        self.out.flush()


async def subscribe(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    position = starting_position(args.start)
    if not args.shard and "SequenceNumber" in position:
        raise InvalidArgumentError(
            f"--from {args.start} needs --shard: a sequence number belongs to one shard"
        )
    stream_arn = (await client.describe_stream_summary(args.stream)).stream_arn
    consumer = await client.describe_stream_consumer(stream_arn, args.consumer)
    consumer_arn = consumer.consumer_arn
    printer = _Printer(out, args.count)
    limit = args.timeout if args.timeout is not None else math.inf
    with trio.move_on_after(limit) as scope:
        if args.shard:
            await _follow_shard(client, consumer_arn, args.shard, position, printer)
        else:
            await _follow_stream(client, args.stream, consumer_arn, position, printer)
    if scope.cancelled_caught:
        wanted = f" of {args.count}" if args.count is not None else ""
        print(
            f"shardline: timed out after {args.timeout:g} s with {printer.printed}{wanted} "
            "record(s)",
            file=err,
        )
        return 1
    return 0


async def _follow_shard(
    client: Client,
    consumer_arn: str,
    shard_id: str,
    position: dict[str, Any],
    printer: _Printer,
) -> None:
    async with ShardSubscriber(client, consumer_arn, shard_id, position) as events:
        async for event in events:
            if isinstance(event, RecordsEvent):
                printer.write(shard_id, event)
                if printer.done:
                    return


async def _follow_stream(
    client: Client,
    stream: str,
    consumer_arn: str,
    position: dict[str, Any],
    printer: _Printer,
) -> None:
    async with StreamSubscriber(client, stream, consumer_arn, position) as events:
        async for shard_id, event in events:
            if isinstance(event, RecordsEvent):
                printer.write(shard_id, event)
                if printer.done:
                    return

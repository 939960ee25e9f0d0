"""``shardline consume STREAM --group G``: one member of a consumer group, records as JSON lines.

Runs one worker of ``consumers.group.ConsumerGroup``: the group's fan-out
consumer is registered if missing, the worker shares the stream's shards with
every other ``consume`` (or ``ConsumerGroup``) of the same group, and each
record it is given is one JSON line on stdout with the fields ``get`` prints
(``ShardId``, ``SequenceNumber``, ``PartitionKey``, ``Data`` in base64,
``ApproximateArrivalTimestamp`` in seconds; ``cli_subscribe``'s printer). A
batch is checkpointed once its lines are written and flushed, so a worker
that is killed makes its successor print again at most the batch it was
printing: at-least-once, nothing skipped.

``--from`` is where shards without a checkpoint start (``trim-horizon``, the
default, or ``latest``); ``--worker`` names this worker in the lease table
(default: host, process id and a random suffix); ``--lease-duration`` is the
lease timeout in seconds (default 10): a worker that dies is replaced after
about that long.

SIGINT or SIGTERM stops the worker cleanly: the subscriptions end and every
lease is released, so the other workers take the shards over at once. The
exit status is then 130 after SIGINT (as the other commands) and 0 after
SIGTERM (the ordinary way to stop a service).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any, TextIO

import trio

from consumers.group import DEFAULT_LEASE_DURATION_S, ConsumerGroup, StartingPosition

from .cli_subscribe import _Printer
from .errors import InvalidArgumentError, ShardlineError

_POSITIONS: dict[str, StartingPosition] = {"trim-horizon": "TRIM_HORIZON", "latest": "LATEST"}
_STATUS_AFTER = {signal.SIGINT: 130, signal.SIGTERM: 0}


def add_parser(commands: Any) -> None:
    """The ``consume`` subcommand's arguments (``commands``: the CLI's subparsers)."""
    consume = commands.add_parser(
        "consume", help="run one member of a consumer group, printing records as JSON lines"
    )
    consume.add_argument("stream")
    consume.add_argument(
        "--group", required=True, help="the group (application) name; also its consumer's name"
    )
    consume.add_argument("--worker", help="this worker's id (default: host-pid-random)")
    consume.add_argument(
        "--from",
        dest="start",
        default="trim-horizon",
        help="where shards without a checkpoint start: trim-horizon (default) | latest",
    )
    consume.add_argument(
        "--lease-duration",
        type=float,
        default=DEFAULT_LEASE_DURATION_S,
        help="lease timeout in seconds (default %(default)g)",
    )


async def run(args: argparse.Namespace) -> int:
    try:
        return await consume(args, sys.stdout)
    except BrokenPipeError:
        # The reader went away (``| head``): that is how a pipe ends, not an error.
        sys.stdout = open(  # noqa: SIM115 - kept open for the interpreter's final flush
            "/dev/null", "w"
        )
        return 0


async def consume(args: argparse.Namespace, out: TextIO) -> int:
    position = _POSITIONS.get(args.start)
    if position is None:
        raise InvalidArgumentError(
            f"--from {args.start!r} is not valid for a group: use trim-horizon or latest"
        )
    printer = _Printer(out, None)
    stopped_by: list[int] = []
    failure: ShardlineError | None = None
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            ConsumerGroup(
                args.endpoint,
                args.stream,
                args.group,
                worker_id=args.worker,
                starting_position=position,
                lease_duration=args.lease_duration,
            ) as group,
            trio.open_nursery() as nursery,
        ):

            async def stop_on_signal() -> None:
                async for signum in signals:
                    stopped_by.append(signum)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            try:
                async for batch in group:
                    if batch.event is not None:
                        printer.write(batch.shard_id, batch.event)
                    await batch.checkpoint()
            except ShardlineError as exc:
                # Raised out of the nursery it would come wrapped in an exception group.
                failure = exc
            nursery.cancel_scope.cancel()
        # Leaving the group's block released its leases.
    if failure is not None:
        raise failure
    return _STATUS_AFTER[signal.Signals(stopped_by[0])] if stopped_by else 0

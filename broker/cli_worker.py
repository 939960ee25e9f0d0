"""``shardline worker``: run every enabled event source mapping (``consumers.worker``).

Several workers (on one machine or many) share the mappings' shards through
the broker's leases; a worker that dies is replaced after the lease timeout,
from the checkpoints. ``--id`` names the worker in the lease tables (default:
host, process id and a random suffix). ``--metrics-port`` serves the worker's
own ``GET /metrics`` over HTTP/1.1 (invocations, errors, retries, records,
batch sizes, IteratorAge, durations; off unless given; 0 picks a free port,
printed at start-up). ``python:`` targets are imported with the worker's
current directory on ``sys.path``. SIGINT or SIGTERM stop it cleanly: leases
are released so another worker continues at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

import trio

_STATUS_AFTER = {signal.SIGINT: 130, signal.SIGTERM: 0}


def add_parser(commands: Any) -> None:
    """The ``worker`` subcommand's arguments (``commands``: the CLI's subparsers)."""
    worker = commands.add_parser("worker", help="run the event source mappings' functions")
    worker.add_argument(
        "--id", dest="worker_id", help="this worker's id (default: host-pid-random)"
    )
    worker.add_argument("--metrics-host", default="127.0.0.1", help="where /metrics listens")
    worker.add_argument("--metrics-port", type=int, help="serve GET /metrics on this port")
    worker.add_argument(
        "--poll-interval", type=float, help="seconds between looks at the mappings (default 2)"
    )


async def run(args: argparse.Namespace) -> int:
    # Imported here: every other command's start-up stays free of the worker's modules.
    from consumers.worker import Worker
    from consumers.worker_metrics import serve_metrics

    # python: targets import from where the worker was started, as uvicorn or
    # ``python -m`` would (the console script's own directory is the venv's bin).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    # Handler threads waking from I/O wait for the GIL up to the switch interval
    # (5 ms by default) while the event loop runs: with ten batches of a shard in
    # flight, those waits were a third of each cycle.
    sys.setswitchinterval(0.0005)
    options = {} if args.poll_interval is None else {"poll_interval": args.poll_interval}
    worker = Worker(args.endpoint, worker_id=args.worker_id, **options)
    stopped_by: list[int] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for signum in signals:
                    stopped_by.append(signum)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            if args.metrics_port is not None:
                port = await nursery.start(
                    serve_metrics, worker.metrics, args.metrics_host, args.metrics_port
                )
                print(f"metrics on http://{args.metrics_host}:{port}/metrics", flush=True)
            await nursery.start(worker.run)
            print(f"worker {worker.worker_id} running the mappings of {args.endpoint}", flush=True)
    return _STATUS_AFTER[signal.Signals(stopped_by[0])] if stopped_by else 0

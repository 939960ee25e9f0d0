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

``--processes N`` runs N worker processes from one command, one per core
being the usual choice: a worker's event loop is one thread, and Lambda's
event costs Python per record. This process runs the first; it starts the
others as ``shardline worker`` children (ids ``<id>-2`` ... when ``--id`` is
given, metrics on the following ports when ``--metrics-port`` is), restarts
one that dies (after a second, under a new id), and stops them all on SIGINT
or SIGTERM.
They share the mappings' shards through the leases like any other workers.

The garbage collector is tuned as ``serve``'s is (``broker.gc_tuning``): a
worker holds tens of thousands of records in flight as lists, tuples and
dicts, and with CPython's default thresholds its collections, which keep
scanning them, took about 40 % of the process (docs/performance-notes.md,
"functions").
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import signal
import sys
from typing import Any

import trio

from .gc_tuning import tune_gc

_STATUS_AFTER = {signal.SIGINT: 130, signal.SIGTERM: 0}
#: A dead child worker is started again after this long.
RESTART_DELAY_S = 1.0
#: After SIGINT/SIGTERM, how long the leases and the children may take to stop cleanly.
STOP_TIMEOUT_S = 15.0

log = logging.getLogger(__name__)


def child_command(args: argparse.Namespace, number: int, start: int = 1) -> list[str]:
    """The command line of child worker ``number`` (2, 3, ...) of ``--processes``.

    With ``--id``, the child is ``<id>-<number>``, and ``<id>-<number>.<start>``
    when started again: a dead worker's leases must expire and be balanced
    like anyone's, not pass for the new process's own.
    """
    command = [sys.executable, "-m", "broker.cli", "--endpoint", args.endpoint, "worker"]
    if args.worker_id:
        suffix = f"{number}" if start == 1 else f"{number}.{start}"
        command += ["--id", f"{args.worker_id}-{suffix}"]
    if args.metrics_port is not None:
        port = args.metrics_port + number - 1 if args.metrics_port else 0
        command += ["--metrics-host", args.metrics_host, "--metrics-port", str(port)]
    if args.poll_interval is not None:
        command += ["--poll-interval", str(args.poll_interval)]
    return command


async def supervise(args: argparse.Namespace, number: int) -> None:
    """Run child worker ``number`` until cancelled (then SIGTERM); restart it if it dies."""
    for start in itertools.count(1):
        process = await trio.run_process(child_command(args, number, start), check=False)
        log.warning(
            "child worker exited with status %s; starting it again in %g s",
            process.returncode,
            RESTART_DELAY_S,
        )
        await trio.sleep(RESTART_DELAY_S)


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
    worker.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes to run, sharing the shards (default 1; one per core is usual)",
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
    if args.processes < 1:
        print("shardline worker: --processes must be at least 1", file=sys.stderr)
        return 2
    options = {} if args.poll_interval is None else {"poll_interval": args.poll_interval}
    worker = Worker(args.endpoint, worker_id=args.worker_id, **options)
    stopped_by: list[int] = []
    children = trio.CancelScope()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                stopped_by.append(await signals.__anext__())
                # Cleanly: this process's leases go back while its connection is open,
                # and the children get SIGTERM and do the same. A second signal, or a
                # stop that takes longer than STOP_TIMEOUT_S, cancels everything.
                worker.stop()
                children.cancel()
                with trio.move_on_after(STOP_TIMEOUT_S):
                    await signals.__anext__()
                nursery.cancel_scope.cancel()

            async def run_children() -> None:
                with children:
                    async with trio.open_nursery() as supervisors:
                        for number in range(2, args.processes + 1):
                            supervisors.start_soon(supervise, args, number)

            async def run_workers() -> None:
                async with trio.open_nursery() as workers:
                    # The children first: they take a moment to start, and until they
                    # run this process holds every shard (they take their share from it).
                    workers.start_soon(run_children)
                    await workers.start(worker.run)
                    print(
                        f"worker {worker.worker_id} running the mappings of {args.endpoint}",
                        flush=True,
                    )
                    tune_gc()  # as ``serve`` does: the records in flight are rescanned for nothing
                # Only a stop ends both: the clean stop is over.
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            if args.metrics_port is not None:
                port = await nursery.start(
                    serve_metrics, worker.metrics, args.metrics_host, args.metrics_port
                )
                print(f"metrics on http://{args.metrics_host}:{port}/metrics", flush=True)
            nursery.start_soon(run_workers)
    return _STATUS_AFTER[signal.Signals(stopped_by[0])] if stopped_by else 0

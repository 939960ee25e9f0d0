"""``shardline serve``: run the broker until SIGINT or SIGTERM.

Settings come from the defaults, then ``--config FILE`` (TOML, same names as
``BrokerConfig``), then the command line. One line is logged at start (the
address, the data directory, the streams found). On SIGINT or SIGTERM the
server stops accepting, lets in-flight requests finish (bounded by
``shutdown_timeout_s``), the log finishes its pending commit and LMDB is
closed. A second server on the same data directory is refused with a clear
message (exit status 1).

The cyclic garbage collector is tuned for a server once start-up is done:
everything built so far (modules, the catalog) is frozen out of collections,
and the young generation is collected every ``GC_YOUNG_THRESHOLD`` container
allocations instead of 700. A PutRecords request allocates about 1,500 such
objects, all freed by reference counting when it is answered; the default
threshold ran two or three collections per request for nothing. Cycles are
still collected, only less often.

The interpreter's switch interval is lowered to ``SWITCH_INTERVAL_S`` (from
5 ms): the log's writer thread, back from a durable commit, needs the GIL to
hand the commit to the event loop, and while the event loop runs Python it
waited up to the whole interval, which every acknowledgement and pushed event
of that commit waited with it (docs/performance-notes.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
from functools import partial

import trio

from .config import BrokerConfig
from .errors import InvalidArgumentError, ShardlineError
from .gc_tuning import tune_gc
from .operations import open_broker
from .server import Server, server_ssl_context

#: How long a thread holds the GIL while another waits for it (module docstring).
SWITCH_INTERVAL_S = 0.0002


async def _serve(config: BrokerConfig) -> None:
    ssl_context = None
    if config.tls_cert or config.tls_key:
        if not (config.tls_cert and config.tls_key):
            raise InvalidArgumentError("--tls-cert and --tls-key go together")
        ssl_context = server_ssl_context(config.tls_cert, config.tls_key)
    async with open_broker(config) as broker, trio.open_nursery() as nursery:
        server = Server(broker, ssl_context=ssl_context)
        port = await nursery.start(partial(server.run, config.host, config.port))
        scheme = "https" if ssl_context else "http"
        streams = broker.log.list_streams()
        tune_gc()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        print(
            f"shardline: serving on {scheme}://{config.host}:{port} (HTTP/2), data "
            f"{config.data}, {len(streams)} stream(s)",
            flush=True,
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                print(f"shardline: {signal.Signals(signum).name}: shutting down", flush=True)
                break
        # Stop accepting, GOAWAY, let in-flight requests finish (bounded); then the
        # log finishes its pending commit and closes as open_broker exits.
        server.shutdown()
    print("shardline: stopped", flush=True)


def run_server(args: argparse.Namespace) -> int:
    try:
        config = BrokerConfig.load(
            args.config,
            data=args.data,
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    except (OSError, ValueError) as exc:
        print(f"shardline: bad settings: {exc}", file=sys.stderr)
        return 2
    try:
        trio.run(partial(_serve, config))
    except ShardlineError as exc:
        print(f"shardline: {exc.message}", file=sys.stderr)
        return 1
    return 0

"""The ``shardline`` command.

This is the one module that sees every package (``broker``, ``consumers``,
``bench``); ``broker`` imports nothing of ``consumers`` anywhere else.

- ``shardline serve``: run the broker (``broker.server``) on a data directory.
- ``shardline streams create|list|describe|delete|split|merge|scale|retention``.
- ``shardline consumers register|list|describe|deregister``: enhanced fan-out consumers.
- ``shardline put STREAM``: one record per line of stdin, or ``--data``.
- ``shardline get STREAM``: records as JSON lines, until caught up.
- ``shardline subscribe STREAM --consumer NAME``: records pushed to a consumer, as JSON lines.
- ``shardline consume STREAM --group G``: one member of a consumer group, as JSON lines.
- ``shardline mappings create|update|delete|get|list``: event source mappings (Lambda's options).
- ``shardline worker``: runs the event source mappings' functions.
- ``shardline bench SCENARIO|all``: benchmarks (``bench/``).

Client commands talk to ``--endpoint`` (default ``http://127.0.0.1:4567``, or
``SHARDLINE_ENDPOINT``). Errors print the error's name and message to stderr
and exit with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import trio

from .errors import ShardlineError

DEFAULT_ENDPOINT = "http://127.0.0.1:4567"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shardline", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("SHARDLINE_ENDPOINT", DEFAULT_ENDPOINT),
        help="the broker to talk to (default %(default)s; env SHARDLINE_ENDPOINT)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the broker")
    serve.add_argument("--data", help="data directory (default ./data)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 4567)")
    serve.add_argument("--config", help="a TOML file of settings (same names)")
    serve.add_argument("--tls-cert", help="serve HTTP/2 over TLS with this certificate (PEM)")
    serve.add_argument("--tls-key", help="the certificate's private key (PEM)")

    streams = commands.add_parser("streams", help="create, list, describe, change streams")
    verbs = streams.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="create a stream")
    create.add_argument("name")
    create.add_argument("--shards", type=int, required=True)
    listing = verbs.add_parser("list", help="list streams")
    listing.add_argument("--json", action="store_true")
    describe = verbs.add_parser("describe", help="describe a stream and its shards")
    describe.add_argument("name")
    describe.add_argument("--json", action="store_true")
    delete = verbs.add_parser("delete", help="delete a stream and its data")
    delete.add_argument("name")
    delete.add_argument("--force", action="store_true", help="also if consumers are registered")
    split = verbs.add_parser("split", help="split a shard at a hash key")
    split.add_argument("name")
    split.add_argument("--shard", required=True)
    split.add_argument("--hash-key", required=True)
    merge = verbs.add_parser("merge", help="merge two adjacent shards")
    merge.add_argument("name")
    merge.add_argument("--shard", required=True)
    merge.add_argument("--adjacent", required=True)
    scale = verbs.add_parser("scale", help="scale uniformly to a shard count")
    scale.add_argument("name")
    scale.add_argument("--shards", type=int, required=True)
    retention = verbs.add_parser("retention", help="set the retention period")
    retention.add_argument("name")
    retention.add_argument("--hours", type=int, required=True)

    consumers = commands.add_parser("consumers", help="register, list, describe stream consumers")
    consumer_verbs = consumers.add_subparsers(dest="verb", required=True)
    for verb, text in (
        ("register", "register a consumer on a stream (enhanced fan-out)"),
        ("list", "list a stream's consumers"),
        ("describe", "describe a consumer"),
        ("deregister", "deregister a consumer"),
    ):
        command = consumer_verbs.add_parser(verb, help=text)
        command.add_argument("stream", help="the stream's name or ARN")
        if verb != "list":
            command.add_argument("name", help="the consumer's name")
        command.add_argument("--json", action="store_true")

    put = commands.add_parser("put", help="put records: one per line of stdin, or --data")
    put.add_argument("stream")
    keys = put.add_mutually_exclusive_group()
    keys.add_argument("--partition-key", help="the partition key of every record")
    keys.add_argument("--key-field", help="read JSON lines; the key is this field's value")
    put.add_argument("--explicit-hash-key", help="route every record by this hash key")
    put.add_argument("--data", help="put one record with this text instead of reading stdin")
    put.add_argument("--json", action="store_true", help="one JSON result line per record")

    get = commands.add_parser("get", help="get records as JSON lines, until caught up")
    get.add_argument("stream")
    get.add_argument("--shard", help="one shard (default: every shard, each in order)")
    get.add_argument(
        "--from",
        dest="start",
        default="trim-horizon",
        help="trim-horizon | latest | at-sequence:N | after-sequence:N | at-timestamp:ISO8601",
    )
    get.add_argument("--limit", type=int, help="stop after this many records")

    from .cli_subscribe import add_parser as add_subscribe

    add_subscribe(commands)

    from .cli_consume import add_parser as add_consume

    add_consume(commands)

    from .cli_mappings import add_parser as add_mappings

    add_mappings(commands)

    from .cli_worker import add_parser as add_worker

    add_worker(commands)

    bench = commands.add_parser("bench", help="run a benchmark scenario, or all of them")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from bench.runner import main as bench_main

        return bench_main(args.args)
    try:
        if args.command == "serve":
            from consumers.filters import compile_filter_criteria

            from .cli_serve import run_server
            from .operations.mappings import install_filter_validator

            # Mappings' filter patterns are checked by the worker's compiler when they
            # are created, not only when a worker first runs them.
            install_filter_validator(compile_filter_criteria)

            return run_server(args)
        if args.command == "subscribe":
            from . import cli_subscribe

            return trio.run(cli_subscribe.run, args)
        if args.command == "consume":
            from . import cli_consume

            return trio.run(cli_consume.run, args)
        if args.command == "mappings":
            from . import cli_mappings

            return trio.run(cli_mappings.run, args)
        if args.command == "worker":
            from . import cli_worker

            return trio.run(cli_worker.run, args)
        from . import cli_client

        return trio.run(cli_client.run, args)
    except ShardlineError as exc:
        print(f"shardline: {exc.wire_name}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

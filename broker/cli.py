"""The ``shardline`` command.

This is the one module that sees every package (``broker``, ``consumers``,
``bench``); ``broker`` imports nothing of ``consumers`` anywhere else.

Commands:

- ``shardline serve [--data DIR]``: open the data directory and report what it
  holds. The network server comes with issue 3; until then ``serve`` opens the
  log (creating it if needed), prints its streams and exits.
- ``shardline bench SCENARIO|all [options]``: run benchmarks (``bench/``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import trio

from .errors import ShardlineError
from .log import open_log


async def _report(data: str) -> None:
    async with open_log(data) as log:
        names = log.list_streams()
        print(f"shardline: data directory {data} opened; {len(names)} stream(s)")
        for name in names:
            desc = log.describe(name)
            records = sum(
                log.tail(name, s.index).next_offset - log.tail(name, s.index).horizon
                for s in desc.shards
            )
            print(
                f"  {name}: {len(desc.open_shards)} open / {len(desc.shards)} shards, "
                f"{records} records retained, retention {desc.retention_hours} h"
            )
        print("shardline: the network server is not built yet (issue 3); exiting")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shardline", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="open the data directory (the server: issue 3)")
    serve.add_argument("--data", default="./data", help="data directory (default ./data)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4567)
    bench = commands.add_parser("bench", help="run a benchmark scenario, or all of them")
    bench.add_argument("args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            trio.run(_report, args.data)
        except ShardlineError as exc:
            print(f"shardline: {exc.message}", file=sys.stderr)
            return 1
        return 0
    if args.command == "bench":
        from bench.runner import main as bench_main

        return bench_main(args.args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

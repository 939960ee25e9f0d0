"""``shardline mappings create|update|delete|get|list``: event source mappings, as the AWS CLI.

The options are Lambda's parameters in kebab-case, as ``aws lambda
create-event-source-mapping`` spells them (``--function-name``,
``--event-source-arn``, ``--starting-position``, ``--batch-size``,
``--maximum-batching-window-in-seconds``, ...); booleans have a ``--no-``
form, ``--destination-config`` and ``--filter-criteria`` take JSON, and
``update``, ``delete`` and ``get`` name the mapping with ``--uuid``. An option
left out is not sent: the broker's defaults (Lambda's) apply on create, and
the mapping keeps its value on update.

Each command prints the broker's answer as JSON (Lambda's field names, the
wire map as it came). ``list`` pages through every mapping that matches; with
``--max-items`` or ``--marker`` it prints one page, with ``NextMarker`` when
there are more.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any

from .client import Client
from .errors import InvalidParameterValueError

#: The integer options of create and update, with their ranges (Lambda's).
_INTEGERS = {
    "batch_size": "1-10000 (default 100)",
    "maximum_batching_window_in_seconds": "0-300 (default 0)",
    "parallelization_factor": "1-10 (default 1)",
    "maximum_retry_attempts": "-1 (unlimited, the default) to 10000",
    "maximum_record_age_in_seconds": "-1 (unlimited, the default) or 60-604800",
    "tumbling_window_in_seconds": "0 (off, the default) to 900; needs parallelization factor 1",
}
_BOOLEANS = ("bisect_batch_on_function_error", "enabled")
_JSON = ("destination_config", "filter_criteria")


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _wire(dest: str) -> str:
    return "".join(part.capitalize() for part in dest.split("_"))


def add_parser(commands: Any) -> None:
    """The ``mappings`` subcommands' arguments (``commands``: the CLI's subparsers)."""
    mappings = commands.add_parser(
        "mappings", help="create, update, delete, get, list event source mappings"
    )
    verbs = mappings.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="attach a function to a stream or consumer")
    create.add_argument(
        "--function-name",
        required=True,
        help="the target: python:pkg.mod:fn, ray:pkg.mod:fn, exec:command args, http(s)://...",
    )
    create.add_argument(
        "--event-source-arn", required=True, help="a stream ARN or name, or a consumer ARN"
    )
    create.add_argument(
        "--starting-position", required=True, choices=("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
    )
    create.add_argument(
        "--starting-position-timestamp",
        help="with AT_TIMESTAMP: epoch seconds, or an ISO 8601 time with its zone",
    )
    _settings(create)
    update = verbs.add_parser("update", help="change a mapping's settings")
    update.add_argument("--uuid", required=True)
    update.add_argument("--function-name", help="another target for the mapping")
    _settings(update)
    for verb, text in (("delete", "delete a mapping"), ("get", "show a mapping")):
        verbs.add_parser(verb, help=text).add_argument("--uuid", required=True)
    listing = verbs.add_parser("list", help="list mappings, all or those that match")
    listing.add_argument("--event-source-arn", help="only mappings on this stream or consumer")
    listing.add_argument("--function-name", help="only mappings of this target")
    listing.add_argument("--marker", help="continue after a page's NextMarker")
    listing.add_argument("--max-items", type=int, help="print one page of at most this many")


def _settings(parser: argparse.ArgumentParser) -> None:
    for dest, text in _INTEGERS.items():
        parser.add_argument(_option(dest), type=int, metavar="N", help=text)
    for dest in _BOOLEANS:
        parser.add_argument(_option(dest), action=argparse.BooleanOptionalAction)
    parser.add_argument(
        "--function-response-types",
        nargs="*",
        metavar="TYPE",
        help="ReportBatchItemFailures, or nothing to turn it off",
    )
    parser.add_argument(
        _option("destination_config"),
        metavar="JSON",
        help='{"OnFailure": {"Destination": "<stream ARN or name>"}}',
    )
    parser.add_argument(
        _option("filter_criteria"),
        metavar="JSON",
        help='{"Filters": [{"Pattern": "<JSON pattern>"}]}, at most 5 filters',
    )


def _timestamp(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidParameterValueError(
            f"--starting-position-timestamp: {value!r} is neither epoch seconds nor an ISO 8601 "
            "time with its zone"
        )
    return moment.timestamp()


def _request(args: argparse.Namespace) -> dict[str, Any]:
    """The Lambda request map of the options given."""
    request: dict[str, Any] = {}
    for dest in (*_INTEGERS, *_BOOLEANS, "function_response_types", "function_name"):
        value = getattr(args, dest, None)
        if value is not None:
            request[_wire(dest)] = value
    for dest in _JSON:
        text = getattr(args, dest, None)
        if text is not None:
            try:
                request[_wire(dest)] = json.loads(text)
            except ValueError as exc:
                raise InvalidParameterValueError(
                    f"{_option(dest)}: not valid JSON: {exc}"
                ) from None
    for dest in ("event_source_arn", "starting_position"):
        if getattr(args, dest, None) is not None:
            request[_wire(dest)] = getattr(args, dest)
    if getattr(args, "starting_position_timestamp", None) is not None:
        request["StartingPositionTimestamp"] = _timestamp(args.starting_position_timestamp)
    if getattr(args, "uuid", None) is not None:
        request["UUID"] = args.uuid
    return request


async def _list(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    request: dict[str, Any] = {}
    for dest in ("event_source_arn", "function_name", "marker", "max_items"):
        if getattr(args, dest) is not None:
            request[_wire(dest)] = getattr(args, dest)
    if args.marker is not None or args.max_items is not None:
        return await client.call("ListEventSourceMappings", request)
    found: list[dict[str, Any]] = []
    while True:
        page = await client.call("ListEventSourceMappings", request)
        found += page["EventSourceMappings"]
        if not page.get("NextMarker"):
            return {"EventSourceMappings": found}
        request["Marker"] = page["NextMarker"]


_OPERATIONS = {
    "create": "CreateEventSourceMapping",
    "update": "UpdateEventSourceMapping",
    "delete": "DeleteEventSourceMapping",
    "get": "GetEventSourceMapping",
}


async def run(args: argparse.Namespace) -> int:
    async with Client(args.endpoint) as client:
        if args.verb == "list":
            body = await _list(client, args)
        else:
            body = await client.call(_OPERATIONS[args.verb], _request(args))
    try:
        print(json.dumps(body, indent=2), flush=True)
    except BrokenPipeError:
        # The reader went away (``| head``): how a pipe ends, not an error.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the interpreter's final flush
    return 0

"""The client commands of ``shardline``: ``streams ...``, ``consumers ...``, ``put`` and ``get``.

Each command is one async function over a ``Client`` and its typed results;
output is a table for people, or JSON lines with ``--json`` (``put`` and
``get`` always speak JSON lines on stdout; summaries go to stderr). The JSON
keeps Kinesis' field names; ``streams describe --json`` prints the wire maps
as the broker sent them, so it reads them with ``Client.call``.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TextIO

import trio

from .client import Client, Consumer, ConsumerDescription, Producer, RecordHandle, Shard
from .errors import InvalidArgumentError, ShardlineError


async def run(args: argparse.Namespace) -> int:
    async with Client(args.endpoint) as client:
        if args.command == "streams":
            return await STREAM_VERBS[args.verb](client, args)
        if args.command == "consumers":
            return await CONSUMER_VERBS[args.verb](client, args)
        if args.command == "put":
            return await put(client, args, sys.stdin, sys.stdout)
        if args.command == "get":
            return await get(client, args, sys.stdout)
    raise InvalidArgumentError(f"unknown command {args.command!r}")


# -- streams ------------------------------------------------------------------


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


async def _create(client: Client, args: argparse.Namespace) -> int:
    await client.create_stream(args.name, args.shards)
    print(f"created {args.name} with {args.shards} shard(s)")
    return 0


async def _list(client: Client, args: argparse.Namespace) -> int:
    names: list[str] = []
    while True:
        page = await client.list_streams(exclusive_start_stream_name=names[-1] if names else None)
        names.extend(page.stream_names)
        if not page.has_more_streams or not names:
            break
    if args.json:
        print(json.dumps({"StreamNames": names}))
    else:
        print("\n".join(names) if names else "(no streams)")
    return 0


async def _all_shards(client: Client, stream: str) -> list[Shard]:
    page = await client.list_shards(stream)
    shards = list(page.shards)
    while page.next_token:
        page = await client.list_shards(next_token=page.next_token)
        shards.extend(page.shards)
    return shards


async def _all_shard_maps(client: Client, stream: str) -> list[dict[str, Any]]:
    """Like ``_all_shards``, as the wire maps."""
    shards: list[dict[str, Any]] = []
    request: dict[str, Any] = {"StreamName": stream}
    while True:
        page = await client.call("ListShards", request)
        shards.extend(page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            return shards
        request = {"NextToken": token}


async def _describe(client: Client, args: argparse.Namespace) -> int:
    if args.json:
        summary = await client.call("DescribeStreamSummary", {"StreamName": args.name})
        print(json.dumps({**summary, "Shards": await _all_shard_maps(client, args.name)}))
        return 0
    desc = await client.describe_stream_summary(args.name)
    shards = await _all_shards(client, args.name)
    print(
        f"{desc.stream_name}  {desc.stream_status}  "
        f"retention {desc.retention_period_hours} h  {desc.stream_arn}"
    )
    rows = []
    for shard in shards:
        parents = ",".join(p for p in (shard.parent_shard_id, shard.adjacent_parent_shard_id) if p)
        rows.append(
            [
                shard.shard_id,
                "open" if shard.is_open else "closed",
                shard.hash_key_range.starting_hash_key,
                shard.hash_key_range.ending_hash_key,
                parents or "-",
            ]
        )
    print(_table(rows, ["shard", "state", "starting hash key", "ending hash key", "parents"]))
    return 0


async def _delete(client: Client, args: argparse.Namespace) -> int:
    await client.delete_stream(args.name, enforce_consumer_deletion=args.force)
    print(f"deleted {args.name}")
    return 0


async def _split(client: Client, args: argparse.Namespace) -> int:
    await client.split_shard(args.name, args.shard, args.hash_key)
    print(f"split {args.shard} of {args.name} at {args.hash_key}")
    return 0


async def _merge(client: Client, args: argparse.Namespace) -> int:
    await client.merge_shards(args.name, args.shard, args.adjacent)
    print(f"merged {args.shard} and {args.adjacent} of {args.name}")
    return 0


async def _scale(client: Client, args: argparse.Namespace) -> int:
    await client.update_shard_count(args.name, args.shards)
    print(f"scaled {args.name} to {args.shards} open shard(s)")
    return 0


async def _retention(client: Client, args: argparse.Namespace) -> int:
    current = (await client.describe_stream_summary(args.name)).retention_period_hours
    if args.hours > current:
        await client.increase_stream_retention_period(args.name, args.hours)
    elif args.hours < current:
        await client.decrease_stream_retention_period(args.name, args.hours)
    print(f"retention of {args.name}: {args.hours} h")
    return 0


STREAM_VERBS = {
    "create": _create,
    "list": _list,
    "describe": _describe,
    "delete": _delete,
    "split": _split,
    "merge": _merge,
    "scale": _scale,
    "retention": _retention,
}


# -- consumers ------------------------------------------------------------------


async def _stream_arn(client: Client, stream: str) -> str:
    """A stream given by name or ARN, as its ARN (consumer operations take only ARNs)."""
    if stream.startswith("arn:"):
        return stream
    return (await client.describe_stream_summary(stream)).stream_arn


def _consumer_json(consumer: Consumer | ConsumerDescription) -> dict[str, Any]:
    """A consumer with Kinesis' field names, times in milliseconds as on the wire."""
    out: dict[str, Any] = {
        "ConsumerName": consumer.consumer_name,
        "ConsumerARN": consumer.consumer_arn,
        "ConsumerStatus": consumer.consumer_status,
        "ConsumerCreationTimestamp": consumer.consumer_creation_timestamp,
    }
    if isinstance(consumer, ConsumerDescription):
        out["StreamARN"] = consumer.stream_arn
    return out


def _created(consumer: Consumer | ConsumerDescription) -> str:
    return consumer.created.isoformat(timespec="seconds")


async def _register_consumer(client: Client, args: argparse.Namespace) -> int:
    consumer = await client.register_stream_consumer(
        await _stream_arn(client, args.stream), args.name
    )
    if args.json:
        print(json.dumps({"Consumer": _consumer_json(consumer)}))
    else:
        print(f"registered {consumer.consumer_name} on {args.stream}: {consumer.consumer_arn}")
    return 0


async def _list_consumers(client: Client, args: argparse.Namespace) -> int:
    stream_arn = await _stream_arn(client, args.stream)
    page = await client.list_stream_consumers(stream_arn)
    consumers = list(page.consumers)
    while page.next_token:
        page = await client.list_stream_consumers(stream_arn, next_token=page.next_token)
        consumers.extend(page.consumers)
    if args.json:
        print(json.dumps({"Consumers": [_consumer_json(c) for c in consumers]}))
    elif not consumers:
        print("(no consumers)")
    else:
        rows = [
            [c.consumer_name, c.consumer_status, _created(c), c.consumer_arn] for c in consumers
        ]
        print(_table(rows, ["consumer", "status", "created", "ARN"]))
    return 0


async def _describe_consumer(client: Client, args: argparse.Namespace) -> int:
    stream_arn = await _stream_arn(client, args.stream)
    consumer = await client.describe_stream_consumer(stream_arn, args.name)
    if args.json:
        print(json.dumps({"ConsumerDescription": _consumer_json(consumer)}))
    else:
        print(f"{consumer.consumer_name}  {consumer.consumer_status}  created {_created(consumer)}")
        print(f"ARN     {consumer.consumer_arn}")
        print(f"stream  {consumer.stream_arn}")
    return 0


async def _deregister_consumer(client: Client, args: argparse.Namespace) -> int:
    await client.deregister_stream_consumer(await _stream_arn(client, args.stream), args.name)
    if args.json:
        print(json.dumps({}))
    else:
        print(f"deregistered {args.name} from {args.stream}")
    return 0


CONSUMER_VERBS = {
    "register": _register_consumer,
    "list": _list_consumers,
    "describe": _describe_consumer,
    "deregister": _deregister_consumer,
}


# -- put ------------------------------------------------------------------------

#: Bytes of stdin read per hand-over to the reading thread.
READ_CHUNK = 1 << 16


async def _lines(args: argparse.Namespace, lines: TextIO) -> AsyncIterator[str]:
    """The input's lines (or ``--data``), read on a thread so that sending goes on meanwhile.

    A slow pipe (``tail -f log | shardline put``) must not hold records back:
    while the reading thread waits for the next line, the producer's linger
    sends what is buffered.
    """
    if args.data is not None:
        yield args.data
        return
    rest = ""
    while True:
        chunk = await trio.to_thread.run_sync(lines.read, READ_CHUNK, abandon_on_cancel=True)
        if not chunk:
            break
        parts = (rest + chunk).split("\n")
        rest = parts.pop()
        for part in parts:
            yield part
    if rest:
        yield rest


def _key(args: argparse.Namespace, text: str, number: int) -> str:
    if not args.key_field:
        return args.partition_key or uuid.uuid4().hex
    try:
        key = json.loads(text)[args.key_field]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgumentError(
            f"line {number}: no field {args.key_field!r} in a JSON object ({exc})"
        ) from None
    return key if isinstance(key, str) else json.dumps(key)


def _outcome(handle: RecordHandle) -> dict[str, str | None]:
    """A settled record's JSON line: where it landed, or why it failed."""
    try:
        shard_id, sequence_number = handle.result_nowait()
    except ShardlineError as exc:
        return {"ErrorCode": exc.wire_name, "ErrorMessage": str(exc)}
    return {"ShardId": shard_id, "SequenceNumber": sequence_number}


async def put(client: Client, args: argparse.Namespace, lines: TextIO, out: TextIO) -> int:
    """Send every line through a ``Producer``: batched, retried, never duplicated.

    With ``--json`` each record's result is printed in input order as soon as
    it and every record before it are settled, so a long input streams its
    results and keeps only the unsettled handles in memory.
    """
    pending: deque[RecordHandle] = deque()
    put_count = failed = 0

    def settle(wait_all: bool) -> None:
        nonlocal put_count, failed
        while pending and (wait_all or pending[0].done()):
            result = _outcome(pending.popleft())
            if "ErrorCode" in result:
                failed += 1
            else:
                put_count += 1
            if args.json:
                out.write(json.dumps(result) + "\n")

    async with Producer(args.endpoint, args.stream, client=client) as producer:
        number = 0
        async for text in _lines(args, lines):
            number += 1
            key = _key(args, text, number)
            pending.append(await producer.send(text.encode(), key, args.explicit_hash_key))
            settle(False)
        await producer.flush()
    settle(True)
    out.flush()
    print(f"put {put_count} record(s), {failed} failed", file=sys.stderr)
    return 1 if failed else 0


# -- get ------------------------------------------------------------------------


def _starting_position(spec: str) -> dict[str, Any]:
    """``--from`` as keyword arguments of ``Client.get_shard_iterator``."""
    kind, _, value = spec.partition(":")
    simple = {"trim-horizon": "TRIM_HORIZON", "latest": "LATEST"}
    if kind in simple and not value:
        return {"shard_iterator_type": simple[kind]}
    if kind == "at-sequence" and value:
        return {"shard_iterator_type": "AT_SEQUENCE_NUMBER", "starting_sequence_number": value}
    if kind == "after-sequence" and value:
        return {"shard_iterator_type": "AFTER_SEQUENCE_NUMBER", "starting_sequence_number": value}
    if kind == "at-timestamp" and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidArgumentError(f"--from {spec!r}: not an ISO 8601 time") from None
        return {"shard_iterator_type": "AT_TIMESTAMP", "timestamp": int(moment.timestamp() * 1000)}
    raise InvalidArgumentError(
        f"--from {spec!r} is not valid: use trim-horizon, latest, at-sequence:N, "
        "after-sequence:N or at-timestamp:ISO8601"
    )


async def get(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    position = _starting_position(args.start)
    if args.shard:
        shard_ids = [args.shard]
    else:
        shard_ids = [s.shard_id for s in await _all_shards(client, args.stream)]
    remaining = args.limit if args.limit is not None else -1
    for shard_id in shard_ids:
        if remaining == 0:
            break
        answer = await client.get_shard_iterator(args.stream, shard_id, **position)
        iterator: str | None = answer.shard_iterator
        while iterator and remaining != 0:
            page = await client.get_records(
                iterator, limit=min(remaining, 10_000) if remaining > 0 else None
            )
            for record in page.records:
                out.write(
                    json.dumps(
                        {
                            "ShardId": shard_id,
                            "SequenceNumber": record.sequence_number,
                            "PartitionKey": record.partition_key,
                            "Data": base64.b64encode(record.data).decode(),
                            "ApproximateArrivalTimestamp": record.approximate_arrival_timestamp
                            / 1000,
                        }
                    )
                    + "\n"
                )
            remaining -= len(page.records) if remaining > 0 else 0
            iterator = page.next_shard_iterator
            if not page.records and page.millis_behind_latest == 0:
                break  # caught up
    out.flush()
    return 0

"""The client commands of ``shardline``: ``streams ...``, ``put`` and ``get``.

Each command is one async function over a ``Client``; output is a table for
people, or JSON lines with ``--json`` (``put`` and ``get`` always speak JSON
lines on stdout; summaries go to stderr).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from .client import Client
from .errors import InvalidArgumentError

#: PutRecords limits: records per request, and bytes of data plus keys per request.
MAX_RECORDS_PER_REQUEST = 500
MAX_BYTES_PER_REQUEST = 5 << 20


async def run(args: argparse.Namespace) -> int:
    async with Client(args.endpoint) as client:
        if args.command == "streams":
            return await STREAM_VERBS[args.verb](client, args)
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
    await client.call("CreateStream", {"StreamName": args.name, "ShardCount": args.shards})
    print(f"created {args.name} with {args.shards} shard(s)")
    return 0


async def _list(client: Client, args: argparse.Namespace) -> int:
    names: list[str] = []
    request: dict[str, Any] = {}
    while True:
        page = await client.call("ListStreams", request)
        names.extend(page.get("StreamNames", []))
        if not page.get("HasMoreStreams") or not names:
            break
        request = {"ExclusiveStartStreamName": names[-1]}
    if args.json:
        print(json.dumps({"StreamNames": names}))
    else:
        print("\n".join(names) if names else "(no streams)")
    return 0


async def _all_shards(client: Client, stream: str) -> list[dict[str, Any]]:
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
    summary = await client.call("DescribeStreamSummary", {"StreamName": args.name})
    shards = await _all_shards(client, args.name)
    if args.json:
        print(json.dumps({**summary, "Shards": shards}))
        return 0
    desc = summary.get("StreamDescriptionSummary", {})
    print(
        f"{desc.get('StreamName')}  {desc.get('StreamStatus')}  "
        f"retention {desc.get('RetentionPeriodHours')} h  {desc.get('StreamARN')}"
    )
    rows = []
    for shard in shards:
        span = shard.get("SequenceNumberRange", {})
        parents = ",".join(
            p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p
        )
        rows.append(
            [
                shard["ShardId"],
                "closed" if span.get("EndingSequenceNumber") else "open",
                shard["HashKeyRange"]["StartingHashKey"],
                shard["HashKeyRange"]["EndingHashKey"],
                parents or "-",
            ]
        )
    print(_table(rows, ["shard", "state", "starting hash key", "ending hash key", "parents"]))
    return 0


async def _delete(client: Client, args: argparse.Namespace) -> int:
    await client.call(
        "DeleteStream", {"StreamName": args.name, "EnforceConsumerDeletion": args.force}
    )
    print(f"deleted {args.name}")
    return 0


async def _split(client: Client, args: argparse.Namespace) -> int:
    await client.call(
        "SplitShard",
        {
            "StreamName": args.name,
            "ShardToSplit": args.shard,
            "NewStartingHashKey": args.hash_key,
        },
    )
    print(f"split {args.shard} of {args.name} at {args.hash_key}")
    return 0


async def _merge(client: Client, args: argparse.Namespace) -> int:
    await client.call(
        "MergeShards",
        {
            "StreamName": args.name,
            "ShardToMerge": args.shard,
            "AdjacentShardToMerge": args.adjacent,
        },
    )
    print(f"merged {args.shard} and {args.adjacent} of {args.name}")
    return 0


async def _scale(client: Client, args: argparse.Namespace) -> int:
    await client.call(
        "UpdateShardCount",
        {
            "StreamName": args.name,
            "TargetShardCount": args.shards,
            "ScalingType": "UNIFORM_SCALING",
        },
    )
    print(f"scaled {args.name} to {args.shards} open shard(s)")
    return 0


async def _retention(client: Client, args: argparse.Namespace) -> int:
    summary = await client.call("DescribeStreamSummary", {"StreamName": args.name})
    current = summary["StreamDescriptionSummary"]["RetentionPeriodHours"]
    if args.hours != current:
        operation = (
            "IncreaseStreamRetentionPeriod"
            if args.hours > current
            else "DecreaseStreamRetentionPeriod"
        )
        await client.call(operation, {"StreamName": args.name, "RetentionPeriodHours": args.hours})
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


# -- put ------------------------------------------------------------------------


def _records(args: argparse.Namespace, lines: TextIO) -> Iterator[dict[str, Any]]:
    """The records to put, one per input line (or ``--data``), with their keys."""
    texts: Iterator[str] = (
        iter([args.data])
        if args.data is not None
        else (line[:-1] if line.endswith("\n") else line for line in lines)
    )
    for number, text in enumerate(texts, 1):
        if args.key_field:
            try:
                key = json.loads(text)[args.key_field]
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidArgumentError(
                    f"line {number}: no field {args.key_field!r} in a JSON object ({exc})"
                ) from None
            key = key if isinstance(key, str) else json.dumps(key)
        else:
            key = args.partition_key or uuid.uuid4().hex
        record: dict[str, Any] = {"Data": text.encode(), "PartitionKey": key}
        if args.explicit_hash_key:
            record["ExplicitHashKey"] = args.explicit_hash_key
        yield record


def _batches(records: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    size = 0
    for record in records:
        cost = len(record["Data"]) + len(record["PartitionKey"].encode())
        if batch and (len(batch) == MAX_RECORDS_PER_REQUEST or size + cost > MAX_BYTES_PER_REQUEST):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += cost
    if batch:
        yield batch


async def put(client: Client, args: argparse.Namespace, lines: TextIO, out: TextIO) -> int:
    put_count = failed = 0
    for batch in _batches(_records(args, lines)):
        response = await client.call("PutRecords", {"StreamName": args.stream, "Records": batch})
        for entry in response["Records"]:
            if "ErrorCode" in entry:
                failed += 1
                result = {"ErrorCode": entry["ErrorCode"], "ErrorMessage": entry["ErrorMessage"]}
            else:
                put_count += 1
                result = {"ShardId": entry["ShardId"], "SequenceNumber": entry["SequenceNumber"]}
            if args.json:
                out.write(json.dumps(result) + "\n")
    out.flush()
    print(f"put {put_count} record(s), {failed} failed", file=sys.stderr)
    return 1 if failed else 0


# -- get ------------------------------------------------------------------------


def _starting_position(spec: str) -> dict[str, Any]:
    """``--from`` as GetShardIterator fields."""
    kind, _, value = spec.partition(":")
    simple = {"trim-horizon": "TRIM_HORIZON", "latest": "LATEST"}
    if kind in simple and not value:
        return {"ShardIteratorType": simple[kind]}
    if kind == "at-sequence" and value:
        return {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": value}
    if kind == "after-sequence" and value:
        return {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": value}
    if kind == "at-timestamp" and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidArgumentError(f"--from {spec!r}: not an ISO 8601 time") from None
        return {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": int(moment.timestamp() * 1000)}
    raise InvalidArgumentError(
        f"--from {spec!r} is not valid: use trim-horizon, latest, at-sequence:N, "
        "after-sequence:N or at-timestamp:ISO8601"
    )


async def get(client: Client, args: argparse.Namespace, out: TextIO) -> int:
    position = _starting_position(args.start)
    if args.shard:
        shard_ids = [args.shard]
    else:
        shard_ids = [s["ShardId"] for s in await _all_shards(client, args.stream)]
    remaining = args.limit if args.limit is not None else -1
    for shard_id in shard_ids:
        if remaining == 0:
            break
        answer = await client.call(
            "GetShardIterator", {"StreamName": args.stream, "ShardId": shard_id, **position}
        )
        iterator = answer.get("ShardIterator")
        while iterator and remaining != 0:
            request: dict[str, Any] = {"ShardIterator": iterator}
            if remaining > 0:
                request["Limit"] = min(remaining, 10_000)
            page = await client.call("GetRecords", request)
            for record in page["Records"]:
                out.write(
                    json.dumps(
                        {
                            "ShardId": shard_id,
                            "SequenceNumber": record["SequenceNumber"],
                            "PartitionKey": record["PartitionKey"],
                            "Data": base64.b64encode(record["Data"]).decode(),
                            "ApproximateArrivalTimestamp": record["ApproximateArrivalTimestamp"]
                            / 1000,
                        }
                    )
                    + "\n"
                )
            remaining -= len(page["Records"]) if remaining > 0 else 0
            iterator = page.get("NextShardIterator")
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break  # caught up
    out.flush()
    return 0

"""Handlers the worker tests attach to streams (``python:tests.e2e.worker_handlers:NAME``).

They run inside ``shardline worker`` processes and report through files named
by environment variables, so the tests (another process) can see what ran.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from typing import Any

_lock = threading.Lock()


def _note(line: dict[str, Any]) -> None:
    with _lock, open(os.environ["WORKER_TEST_OUT"], "a") as out:
        out.write(json.dumps(line) + "\n")
        out.flush()
        os.fsync(out.fileno())


def lambda_style(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An unmodified Lambda handler for Kinesis: decodes each record's base64 data."""
    for record in event["Records"]:
        payload = base64.b64decode(record["kinesis"]["data"]).decode()
        _note(
            {
                "data": payload,
                "seq": record["kinesis"]["sequenceNumber"],
                "key": record["kinesis"]["partitionKey"],
                "shard": record["eventID"].split(":")[0],
                "source": record["eventSource"],
                "request": context.aws_request_id,
                "remaining_ms": context.get_remaining_time_in_millis(),
            }
        )
    return {"batchItemFailures": []}


def poison(event: dict[str, Any], context: Any) -> None:
    """Fails every batch holding a record whose data is ``poison``; notes the others."""
    datas = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    if "poison" in datas:
        raise ValueError("poison record")
    for record, data in zip(event["Records"], datas, strict=True):
        _note({"data": data, "seq": record["kinesis"]["sequenceNumber"]})


def slow(event: dict[str, Any], context: Any) -> None:
    """Notes each record, then takes 50 ms per record: a worker killed mid-batch."""
    for record in event["Records"]:
        _note({"seq": record["kinesis"]["sequenceNumber"], "pid": os.getpid()})
    time.sleep(0.05 * len(event["Records"]))


#: Sequence numbers ``record`` saw, for workers run in the test's own process.
SEEN: list[str] = []


def record(event: dict[str, Any], context: Any) -> None:
    """Notes each record's sequence number in ``SEEN`` (in-process workers only)."""
    SEEN.extend(r["kinesis"]["sequenceNumber"] for r in event["Records"])

"""The AWS CLI (``aws kinesis ...``, the ``awscli`` package) against a real shardline process."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .conftest import Broker

AWS = [sys.executable, "-m", "awscli"]


def aws(broker: Broker, home: Path, *args: str) -> Any:
    """Run ``aws kinesis ARGS --endpoint-url ...``; its JSON output (None if it printed none)."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        # No user's files or profiles: the endpoint flag is the only thing that differs from AWS.
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "HOME": str(home),
    }
    done = subprocess.run(
        [*AWS, "kinesis", *args, "--endpoint-url", broker.endpoint, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_create_put_get_with_the_aws_cli(broker: Broker, tmp_path: Path) -> None:
    aws(broker, tmp_path, "create-stream", "--stream-name", "cli", "--shard-count", "1")
    aws(broker, tmp_path, "wait", "stream-exists", "--stream-name", "cli")
    summary = aws(broker, tmp_path, "describe-stream-summary", "--stream-name", "cli")
    assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    # AWS CLI v1 takes --data as text and sends it base64-encoded.
    put = aws(
        broker, tmp_path, "put-record", "--stream-name", "cli", "--partition-key", "k",
        "--data", "hello from the cli",
    )  # fmt: skip
    assert put["ShardId"] == "shardId-000000000000"
    iterator = aws(
        broker, tmp_path, "get-shard-iterator", "--stream-name", "cli",
        "--shard-id", "shardId-000000000000", "--shard-iterator-type", "TRIM_HORIZON",
    )["ShardIterator"]  # fmt: skip
    page = aws(broker, tmp_path, "get-records", "--shard-iterator", iterator)
    (record,) = page["Records"]
    assert record["SequenceNumber"] == put["SequenceNumber"]
    assert record["PartitionKey"] == "k"
    assert base64.b64decode(record["Data"]) == b"hello from the cli"
    assert isinstance(record["ApproximateArrivalTimestamp"], int | float | str)

"""A real ``shardline serve`` process for the AWS clients' tests, and boto3 clients of it."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

SHARDLINE = [sys.executable, "-m", "broker.cli"]
#: Settings of the served broker: short subscriptions, so resubscribing is seen in a test.
SETTINGS = """
subscription_lifetime_s = 2.0
subscription_takeover_window_s = 0.5
subscription_heartbeat_s = 0.5
"""


class Broker:
    """``shardline serve`` on port 0 over ``data``; its endpoint read from its start-up line."""

    def __init__(self, data: Path, settings: str = SETTINGS) -> None:
        config = data.parent / "shardline.toml"
        config.write_text(settings)
        self.process = subprocess.Popen(
            [*SHARDLINE, "serve", "--data", str(data), "--port", "0", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"serving on (http://[\d.]+:\d+)", line)
        if match is None:
            self.process.kill()
            assert self.process.stderr is not None
            raise AssertionError(f"no start-up line: {line!r} {self.process.stderr.read()!r}")
        self.endpoint = match.group(1)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def kinesis(endpoint: str, **config: Any) -> Any:
    """A boto3 Kinesis client of ``endpoint``: only the endpoint differs from AWS."""
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 0}, read_timeout=30, **config),
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path / "data")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client(broker: Broker) -> Any:
    return kinesis(broker.endpoint)

"""Access keys on the AWS wire: boto3's SigV4 against a broker that verifies it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import SETTINGS, Broker, kinesis

KEYS = """
[aws_access_keys]
AKIDSHARDLINE = "the-secret"
"""


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path / "data", SETTINGS + KEYS)
    try:
        yield running
    finally:
        running.stop()


def signed(endpoint: str, access_key: str, secret: str) -> Any:
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="eu-west-1",  # any region is accepted
        aws_access_key_id=access_key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 0}),
    )


def error_code(call: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    code: str = caught.value.response["Error"]["Code"]
    return code


def test_the_right_key_is_served(guarded: Broker) -> None:
    client = signed(guarded.endpoint, "AKIDSHARDLINE", "the-secret")
    client.create_stream(StreamName="s", ShardCount=1)
    client.put_record(StreamName="s", Data=b"x", PartitionKey="k")
    assert client.list_streams()["StreamNames"] == ["s"]


def test_a_wrong_secret_is_an_invalid_signature(guarded: Broker) -> None:
    client = signed(guarded.endpoint, "AKIDSHARDLINE", "not-the-secret")
    assert error_code(client.list_streams) == "InvalidSignatureException"


def test_an_unknown_key_or_no_signature_is_an_unrecognized_client(guarded: Broker) -> None:
    stranger = signed(guarded.endpoint, "AKIDSTRANGER", "the-secret")
    assert error_code(stranger.list_streams) == "UnrecognizedClientException"
    unsigned = boto3.client(
        "kinesis",
        endpoint_url=guarded.endpoint,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 0}),
    )
    assert error_code(unsigned.list_streams) == "UnrecognizedClientException"
    # Nothing was done for them.
    owner = signed(guarded.endpoint, "AKIDSHARDLINE", "the-secret")
    assert error_code(lambda: stranger.create_stream(StreamName="t", ShardCount=1)) == (
        "UnrecognizedClientException"
    )
    assert owner.list_streams()["StreamNames"] == []


def test_without_keys_any_credentials_work(broker: Broker) -> None:
    for key, secret in (("AKIDANY", "x"), ("another", "y")):
        assert kinesis(broker.endpoint).list_streams()["StreamNames"] == []
        assert signed(broker.endpoint, key, secret).list_streams()["StreamNames"] == []

"""Stream consumers through the real Client against a real server, and across a restart."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import pytest

from broker.client import Client, Consumer, ConsumerDescription
from broker.errors import (
    InvalidArgumentError,
    LimitExceededError,
    ResourceInUseError,
    ResourceNotFoundError,
    ValidationError,
)

from .harness import ManualClock, Served, serve

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"


async def test_consumer_admin(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 2)
        stream_arn = (await client.describe_stream_summary("s")).stream_arn
        assert stream_arn == ARN + "s"

        made = await client.register_stream_consumer(stream_arn, "app", tags={"team": "x"})
        assert isinstance(made, Consumer)
        assert made.consumer_name == "app" and made.consumer_status == "ACTIVE"
        assert made.consumer_arn == (
            f"{stream_arn}/consumer/app:{made.consumer_creation_timestamp // 1000}"
        )
        assert made.created.tzinfo is UTC

        by_arn = await client.describe_stream_consumer(consumer_arn=made.consumer_arn)
        assert isinstance(by_arn, ConsumerDescription)
        assert by_arn.stream_arn == stream_arn
        assert (by_arn.consumer_arn, by_arn.consumer_creation_timestamp) == (
            made.consumer_arn,
            made.consumer_creation_timestamp,
        )
        assert await client.describe_stream_consumer(stream_arn, "app") == by_arn

        for name in ("b", "c", "d"):
            await client.register_stream_consumer(stream_arn, name)
        summary = await client.describe_stream_summary("s")
        assert summary.consumer_count == 4
        first = await client.list_stream_consumers(stream_arn, max_results=3)
        assert [c.consumer_name for c in first.consumers] == ["app", "b", "c"]
        assert first.consumers[0] == made
        assert first.next_token is not None
        rest = await client.list_stream_consumers(stream_arn, next_token=first.next_token)
        assert [c.consumer_name for c in rest.consumers] == ["d"]
        assert rest.next_token is None

        with pytest.raises(ResourceInUseError, match="EnforceConsumerDeletion"):
            await client.delete_stream("s")
        await client.deregister_stream_consumer(consumer_arn=made.consumer_arn)
        await client.deregister_stream_consumer(stream_arn, "b")
        with pytest.raises(ResourceNotFoundError):
            await client.describe_stream_consumer(consumer_arn=made.consumer_arn)
        listed = await client.list_stream_consumers(stream_arn)
        assert [c.consumer_name for c in listed.consumers] == ["c", "d"]

        await client.delete_stream("s", enforce_consumer_deletion=True)
        await client.create_stream("s", 1)
        assert (await client.list_stream_consumers(stream_arn)).consumers == []


async def test_consumer_errors_are_named(tmp_path: Path) -> None:
    async with (
        serve(tmp_path / "data", max_consumers_per_stream=2) as served,
        Client(served.endpoint) as client,
    ):
        await client.create_stream("s", 1)
        stream_arn = ARN + "s"
        await client.register_stream_consumer(stream_arn, "a")
        with pytest.raises(ResourceInUseError):
            await client.register_stream_consumer(stream_arn, "a")
        await client.register_stream_consumer(stream_arn, "b")
        with pytest.raises(LimitExceededError) as limit:
            await client.register_stream_consumer(stream_arn, "c")
        assert limit.value.retriable
        with pytest.raises(InvalidArgumentError):
            await client.register_stream_consumer(stream_arn, "not ok")
        with pytest.raises(InvalidArgumentError):
            await client.describe_stream_consumer(consumer_arn="arn:nonsense")
        with pytest.raises(ValidationError):
            await client.describe_stream_consumer(stream_arn)
        with pytest.raises(ResourceNotFoundError):
            await client.deregister_stream_consumer(stream_arn, "zz")
        with pytest.raises(ResourceNotFoundError):
            await client.register_stream_consumer(ARN + "nope", "a")
        # The connection is still good after every error.
        listed = await client.list_stream_consumers(stream_arn)
        assert [c.consumer_name for c in listed.consumers] == ["a", "b"]


async def test_consumers_survive_a_server_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    async with serve(tmp_path / "data", clock=clock) as served, Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        made = await client.register_stream_consumer(ARN + "s", "app")
        gone = await client.register_stream_consumer(ARN + "s", "gone")
        await client.deregister_stream_consumer(consumer_arn=gone.consumer_arn)
    async with serve(tmp_path / "data", clock=clock) as served, Client(served.endpoint) as client:
        again = await client.describe_stream_consumer(consumer_arn=made.consumer_arn)
        assert again.consumer_creation_timestamp == made.consumer_creation_timestamp
        # The same moment of the clock: the name registered again still gets a new ARN.
        back = await client.register_stream_consumer(ARN + "s", "gone")
        assert back.consumer_arn != gone.consumer_arn
        listed = await client.list_stream_consumers(ARN + "s")
        assert [c.consumer_name for c in listed.consumers] == ["app", "gone"]

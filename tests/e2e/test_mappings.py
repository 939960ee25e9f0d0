"""Event source mappings through the real Client against a real server, and across a restart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from broker.client import Client, EventSourceMapping, ListEventSourceMappingsResult
from broker.errors import (
    InvalidParameterValueError,
    LimitExceededError,
    ResourceConflictError,
    ResourceInUseError,
    ResourceNotFoundError,
)

from .harness import Served, serve

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
FN = "python:handlers.orders:handle"


async def consumer_names(client: Client, stream: str) -> list[str]:
    listed = await client.list_stream_consumers(ARN + stream)
    return [c.consumer_name for c in listed.consumers]


async def test_lifecycle(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("orders", 2)
        await client.create_stream("failures", 1)
        before = time.time()
        made = await client.create_event_source_mapping(
            FN,
            "orders",
            starting_position="AT_TIMESTAMP",
            starting_position_timestamp=before - 3600,
            batch_size=1000,
            maximum_batching_window_in_seconds=2,
            parallelization_factor=4,
            bisect_batch_on_function_error=True,
            maximum_retry_attempts=3,
            maximum_record_age_in_seconds=3600,
            destination_config={"OnFailure": {"Destination": "failures"}},
            function_response_types=["ReportBatchItemFailures"],
            filter_criteria={"Filters": [{"Pattern": '{"data": {"kind": ["order"]}}'}]},
        )
        assert isinstance(made, EventSourceMapping)
        assert made.function_name == made.function_arn == FN
        assert made.event_source_arn == ARN + "orders"
        assert made.starting_position == "AT_TIMESTAMP"
        assert made.starting_position_timestamp == pytest.approx(before - 3600)
        assert (made.batch_size, made.maximum_batching_window_in_seconds) == (1000, 2)
        assert (made.parallelization_factor, made.bisect_batch_on_function_error) == (4, True)
        assert (made.maximum_retry_attempts, made.maximum_record_age_in_seconds) == (3, 3600)
        assert made.on_failure_destination == ARN + "failures"
        assert made.function_response_types == ["ReportBatchItemFailures"]
        assert made.tumbling_window_in_seconds == 0
        assert made.filter_criteria["Filters"][0]["Pattern"] == '{"data": {"kind": ["order"]}}'
        assert (made.state, made.state_transition_reason) == ("Enabled", "USER_INITIATED")
        assert before - 1 <= made.last_modified <= time.time() + 1
        # Its own consumer, registered with it, named after it.
        described = await client.describe_stream_consumer(consumer_arn=made.consumer_arn)
        assert described.consumer_name == f"mapping-{made.uuid}"
        assert await client.get_event_source_mapping(made.uuid) == made

        changed = await client.update_event_source_mapping(
            made.uuid,
            enabled=False,
            parallelization_factor=1,
            tumbling_window_in_seconds=60,
            destination_config={"OnFailure": {}},
        )
        assert changed.state == "Disabled"
        assert changed.tumbling_window_in_seconds == 60
        assert changed.on_failure_destination is None
        assert changed.batch_size == 1000 and changed.consumer_arn == made.consumer_arn
        with pytest.raises(InvalidParameterValueError, match="ParallelizationFactor 1"):
            await client.update_event_source_mapping(made.uuid, parallelization_factor=2)
        with pytest.raises(TypeError, match="batchsize"):
            await client.update_event_source_mapping(made.uuid, batchsize=5)

        deleted = await client.delete_event_source_mapping(made.uuid)
        assert (deleted.uuid, deleted.state) == (made.uuid, "Deleting")
        assert await consumer_names(client, "orders") == []
        with pytest.raises(ResourceNotFoundError):
            await client.get_event_source_mapping(made.uuid)


async def test_mappings_and_their_consumers_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with serve(data) as served, Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        made = await client.create_event_source_mapping(
            FN, ARN + "s", starting_position="TRIM_HORIZON", batch_size=7
        )
        off = await client.create_event_source_mapping(
            "exec:./handle", "s", starting_position="LATEST", enabled=False
        )
    async with serve(data) as served, Client(served.endpoint) as client:
        assert await client.get_event_source_mapping(made.uuid) == made
        assert await client.get_event_source_mapping(off.uuid) == off
        assert off.state == "Disabled"
        assert sorted(await consumer_names(client, "s")) == sorted(
            [f"mapping-{made.uuid}", f"mapping-{off.uuid}"]
        )
        listed = await client.list_event_source_mappings()
        assert {m.uuid for m in listed.event_source_mappings} == {made.uuid, off.uuid}


async def test_the_mapping_consumer_counts_toward_the_consumer_limit(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        limit = served.broker.config.max_consumers_per_stream
        assert limit == 20
        for i in range(limit - 1):
            await client.register_stream_consumer(ARN + "s", f"c{i}")
        last = await client.create_event_source_mapping(FN, "s", starting_position="LATEST")
        with pytest.raises(LimitExceededError, match="maximum of 20"):
            await client.create_event_source_mapping("exec:x", "s", starting_position="LATEST")
        with pytest.raises(LimitExceededError):
            await client.register_stream_consumer(ARN + "s", "one-more")
        await client.delete_event_source_mapping(last.uuid)
        await client.register_stream_consumer(ARN + "s", "one-more")
        assert len(await consumer_names(client, "s")) == limit


async def test_a_mapping_on_a_consumer_arn(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        consumer = await client.register_stream_consumer(ARN + "s", "app")
        made = await client.create_event_source_mapping(
            FN, consumer.consumer_arn, starting_position="LATEST"
        )
        assert made.event_source_arn == made.consumer_arn == consumer.consumer_arn
        assert await consumer_names(client, "s") == ["app"]
        with pytest.raises(ResourceConflictError, match=made.uuid):
            await client.create_event_source_mapping(
                FN, consumer.consumer_arn, starting_position="TRIM_HORIZON"
            )
        # The same function on the stream itself is another event source.
        on_stream = await client.create_event_source_mapping(FN, "s", starting_position="LATEST")
        assert on_stream.consumer_arn != consumer.consumer_arn
        await client.delete_event_source_mapping(made.uuid)
        assert await consumer_names(client, "s") == ["app", f"mapping-{on_stream.uuid}"]


async def test_listing_filters_and_pages(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("a", 1)
        await client.create_stream("b", 1)
        made = {}
        for i in range(5):
            for stream in ("a", "b"):
                mapping = await client.create_event_source_mapping(
                    f"exec:fn{i}", stream, starting_position="LATEST"
                )
                made[mapping.uuid] = mapping
        seen: list[EventSourceMapping] = []
        marker: str | None = None
        for _ in range(5):
            page = await client.list_event_source_mappings(marker=marker, max_items=3)
            assert isinstance(page, ListEventSourceMappingsResult)
            assert len(page.event_source_mappings) <= 3
            seen += page.event_source_mappings
            marker = page.next_marker
            if marker is None:
                break
        else:
            pytest.fail("the listing never ended")
        assert {m.uuid: m for m in seen} == made and len(seen) == 10

        on_a = await client.list_event_source_mappings(event_source_arn=ARN + "a")
        assert sorted(m.function_arn for m in on_a.event_source_mappings) == [
            f"exec:fn{i}" for i in range(5)
        ]
        both = await client.list_event_source_mappings(function_name="exec:fn3")
        assert sorted(m.event_source_arn for m in both.event_source_mappings) == [
            ARN + "a",
            ARN + "b",
        ]
        one = await client.list_event_source_mappings("b", "exec:fn3")
        assert [m.event_source_arn for m in one.event_source_mappings] == [ARN + "b"]
        assert one.next_marker is None


async def test_delete_stream_with_mappings(served: Served) -> None:
    async with Client(served.endpoint) as client:
        await client.create_stream("s", 1)
        made = await client.create_event_source_mapping(FN, "s", starting_position="LATEST")
        # The mapping's consumer is a registered consumer: DeleteStream treats it as one.
        with pytest.raises(ResourceInUseError, match="EnforceConsumerDeletion"):
            await client.delete_stream("s")
        assert (await client.get_event_source_mapping(made.uuid)).state == "Enabled"
        await client.delete_stream("s", enforce_consumer_deletion=True)
        orphan = await client.get_event_source_mapping(made.uuid)
        assert orphan.state == "Disabled"
        assert orphan.state_transition_reason == f"PROBLEM: Stream {ARN}s was deleted"
        listed = await client.list_event_source_mappings(event_source_arn=ARN + "s")
        assert [m.state for m in listed.event_source_mappings] == ["Disabled"]
        with pytest.raises(InvalidParameterValueError, match="does not exist"):
            await client.update_event_source_mapping(
                made.uuid, destination_config={"OnFailure": {"Destination": "gone"}}
            )
        # Enabling it again does not bring it back: its stream is gone.
        again = await client.update_event_source_mapping(made.uuid, enabled=True)
        assert again.state == "Disabled" and again.state_transition_reason.startswith("PROBLEM")
        await client.delete_event_source_mapping(made.uuid)
        assert (await client.list_event_source_mappings()).event_source_mappings == []

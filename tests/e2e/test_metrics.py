"""GET /metrics: valid Prometheus text (parsed by prometheus-client) covering the issue."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from broker.client import Client

from .harness import Served, raw_post

S0, S1 = "shardId-000000000000", "shardId-000000000001"


def parse(text: str) -> dict[str, Any]:
    """Metric family name -> {(sample name, sorted labels): value}."""
    families: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        samples = families.setdefault(family.name, {})
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        families[family.name + ":type"] = family.type
    return families


async def scrape(client: Client) -> dict[str, Any]:
    status, body = await raw_post(client, "/metrics", b"", "GET")
    assert status == 200
    return parse(body.decode())


async def test_metrics_cover_traffic_shards_and_commits(served: Served) -> None:
    async with Client(served.endpoint) as client, Client(served.endpoint) as other:
        await client.create_stream("s", 2)
        records = [{"Data": b"x" * 100, "PartitionKey": "k", "ExplicitHashKey": "0"}] * 10
        await client.put_records("s", records)
        await client.put_record("s", b"y" * 10, "k", explicit_hash_key=str(1 << 127))
        it = (await client.get_shard_iterator("s", S0, "TRIM_HORIZON")).shard_iterator
        page = await client.get_records(it)
        assert len(page.records) == 10
        try:
            await client.describe_stream("nope")
        except Exception as exc:
            assert type(exc).__name__ == "ResourceNotFoundError"
        await other.list_streams()
        m = await scrape(client)

    requests = m["shardline_requests"]
    assert (
        requests[("shardline_requests_total", (("operation", "PutRecords"), ("outcome", "ok")))]
        == 1
    )
    assert (
        requests[
            (
                "shardline_requests_total",
                (("operation", "DescribeStream"), ("outcome", "ResourceNotFoundException")),
            )
        ]
        == 1
    )
    assert m["shardline_records_in"][("shardline_records_in_total", ())] == 11
    assert m["shardline_record_bytes_in"][("shardline_record_bytes_in_total", ())] > 1010
    assert m["shardline_records_out"][("shardline_records_out_total", ())] == 10
    assert m["shardline_record_bytes_out"][("shardline_record_bytes_out_total", ())] > 1000
    assert m["shardline_connections_open"][("shardline_connections_open", ())] == 2
    assert m["shardline_connections"][("shardline_connections_total", ())] == 2

    assert m["shardline_request_duration_seconds:type"] == "histogram"
    latency = m["shardline_request_duration_seconds"]
    put_labels = (("operation", "PutRecords"),)
    assert latency[("shardline_request_duration_seconds_count", put_labels)] == 1
    assert (
        latency[("shardline_request_duration_seconds_bucket", (("le", "+Inf"), *put_labels))] == 1
    )

    batches = m["shardline_log_batch_records"]
    assert m["shardline_log_batch_records:type"] == "histogram"
    assert batches[("shardline_log_batch_records_count", ())] == 2  # one batch per shard appended
    assert batches[("shardline_log_batch_records_sum", ())] == 11
    assert batches[("shardline_log_batch_records_bucket", (("le", "10.0"),))] == 2
    assert batches[("shardline_log_batch_records_bucket", (("le", "5.0"),))] == 1
    assert m["shardline_log_committed_records"][("shardline_log_committed_records_total", ())] == 11
    commits = m["shardline_log_commits"][("shardline_log_commits_total", ())]
    timed = m["shardline_log_commit_seconds"]
    assert m["shardline_log_commit_seconds:type"] == "histogram"
    assert timed[("shardline_log_commit_seconds_count", ())] == commits >= 3  # stream, 2 puts
    assert timed[("shardline_log_commit_seconds_sum", ())] > 0
    grouped = m["shardline_log_commit_operations"]
    assert grouped[("shardline_log_commit_operations_count", ())] == commits
    # One request at a time: every commit carried one operation.
    assert grouped[("shardline_log_commit_operations_sum", ())] == commits

    latest = m["shardline_shard_latest_offset"]
    assert latest[("shardline_shard_latest_offset", (("shard", S0), ("stream", "s")))] == 10
    assert latest[("shardline_shard_latest_offset", (("shard", S1), ("stream", "s")))] == 1
    assert (
        m["shardline_stream_incarnation"][("shardline_stream_incarnation", (("stream", "s"),))] >= 1
    )

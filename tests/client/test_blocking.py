"""The blocking facades from plain threads, against a real broker process."""

from __future__ import annotations

import threading

import pytest

from broker.client.blocking import SyncClient, SyncProducer
from broker.errors import InvalidArgumentError, ResourceNotFoundError
from tests.test_cli import Server

STREAM = "blocking"


def _all_records(client: SyncClient, stream: str) -> list[tuple[str, bytes]]:
    """Every record of every shard: (partition key, data)."""
    out: list[tuple[str, bytes]] = []
    for shard in client.list_shards(stream).shards:
        iterator = client.get_shard_iterator(stream, shard.shard_id, "TRIM_HORIZON").shard_iterator
        while iterator:
            page = client.get_records(iterator, limit=10_000)
            out.extend((r.partition_key, r.data) for r in page.records)
            if not page.records:
                break
            iterator = page.next_shard_iterator
    return out


def test_sync_client_runs_operations_and_raises_named_errors(server: Server) -> None:
    with SyncClient(server.endpoint) as client:
        client.create_stream(STREAM, 2)
        answer = client.put_record(STREAM, b"hello", "k")
        assert answer.sequence_number
        assert _all_records(client, STREAM) == [("k", b"hello")]
        with pytest.raises(ResourceNotFoundError):
            client.describe_stream_summary("no-such-stream")
        with pytest.raises(AttributeError):
            client.read_pages  # noqa: B018  (read-ahead pages need an event loop)
    with pytest.raises(RuntimeError):
        client.list_streams()  # closed


def test_sync_producer_from_several_threads_delivers_every_record_once(server: Server) -> None:
    with SyncClient(server.endpoint) as client:
        client.create_stream(STREAM, 4)
        sent: list[tuple[str, bytes]] = []
        results: list[tuple[str, str]] = []
        lock = threading.Lock()
        with SyncProducer(server.endpoint, STREAM, linger=0.001) as producer:

            def work(worker: int) -> None:
                mine = [(f"w{worker}-{i}", f"{worker}:{i}".encode()) for i in range(300)]
                handles = [producer.send(data, key) for key, data in mine[:50]]
                handles += producer.send_many((data, key) for key, data in mine[50:])
                done = [h.result() for h in handles]
                with lock:
                    sent.extend(mine)
                    results.extend(done)

            threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
                assert not thread.is_alive()
            assert producer.send_and_wait(b"last", "last")[1]
            producer.flush()
            stats = producer.statistics()
        assert stats.records_sent == 901 and stats.records_failed == 0
        assert len(set(results)) == 900  # every record has its own (shard, sequence)
        stored = _all_records(client, STREAM)
        assert sorted(stored) == sorted([*sent, ("last", b"last")])


def test_sync_producer_raises_the_brokers_error_for_a_bad_record(server: Server) -> None:
    with SyncClient(server.endpoint) as client:
        client.create_stream(STREAM, 1)
    with SyncProducer(server.endpoint, STREAM) as producer:
        with pytest.raises(InvalidArgumentError):
            producer.send(b"x", "")
        assert producer.send_and_wait(b"fine", "k")[0] == "shardId-000000000000"

"""The typed lease and checkpoint results read from wire maps."""

from __future__ import annotations

import pytest

from broker.client.results import CheckpointInfo, LeaseInfo, ListLeasesResult

FUTURE = {"FieldFromTheFuture": {"Nested": [1, 2]}, "AnotherOne": None}
LEASE_MAP = {
    "ShardId": "shardId-000000000001",
    "ApplicationName": "app",
    "Owner": "w",
    "LeaseCounter": 3,
    "ExpiresAt": 1_700_000_001_000,
    "Held": True,
    **FUTURE,
}
LEASE = LeaseInfo("shardId-000000000001", "app", "w", 3, 1_700_000_001_000, True)


def test_lease() -> None:
    assert LeaseInfo.from_wire(LEASE_MAP) == LEASE
    released = LeaseInfo.from_wire({**LEASE_MAP, "Owner": "", "ExpiresAt": 0, "Held": False})
    assert (released.owner, released.held, released.lease_counter) == ("", False, 3)


def test_list_leases() -> None:
    assert ListLeasesResult.from_wire({"Leases": [LEASE_MAP], **FUTURE}) == ListLeasesResult(
        [LEASE]
    )
    paged = ListLeasesResult.from_wire({"Leases": [], "NextToken": "t"})
    assert (paged.leases, paged.next_token) == ([], "t")
    with pytest.raises(KeyError):
        ListLeasesResult.from_wire({"NextToken": "t"})


def test_checkpoint() -> None:
    wire = {
        "ShardId": "shardId-000000000000",
        "ApplicationName": "app",
        "SequenceNumber": "79228162514264337593543950337",
        "LeaseCounter": 2,
        "UpdatedAt": 1_700_000_000_000,
        **FUTURE,
    }
    cp = CheckpointInfo.from_wire(wire)
    assert cp == CheckpointInfo(
        "shardId-000000000000", "app", "79228162514264337593543950337", 1_700_000_000_000, 2
    )
    assert not cp.shard_end
    del wire["LeaseCounter"]
    end = CheckpointInfo.from_wire({**wire, "SequenceNumber": "SHARD_END"})
    assert (end.lease_counter, end.shard_end) == (None, True)
    with pytest.raises(KeyError):
        CheckpointInfo.from_wire({"ShardId": "shardId-000000000000"})

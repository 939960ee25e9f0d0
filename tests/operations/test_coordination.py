"""AcquireLease, RenewLease, ReleaseLease, ListLeases, SetCheckpoint, GetCheckpoint.

The last tests drive random sequences of lease and checkpoint calls by two
owners against a small model, with the fake clock moving between calls: a
checkpoint must be accepted exactly when it carries the lease's current
counter, which is always the counter of the latest grant, given to one owner.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.errors import (
    ExpiredNextTokenError,
    InvalidArgumentError,
    LeaseLostError,
    ResourceInUseError,
    ResourceNotFoundError,
    ShardlineError,
    ValidationError,
)
from broker.operations.coordination import MAX_LEASE_DURATION_MS
from broker.sequence import encode

from .conftest import START_MS, Harness
from .test_fuzz import check, values

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/"
S0, S1, S2, S3, S4 = (f"shardId-00000000000{i}" for i in range(5))
LOW_KEY, HIGH_KEY = "0", str((1 << 128) - 1)


async def put(ops: Harness, stream: str, count: int, key: str = LOW_KEY) -> list[str]:
    """``count`` records into the shard that holds hash ``key``; their sequence numbers."""
    out = await ops(
        "PutRecords",
        StreamName=stream,
        Records=[
            {"PartitionKey": "k", "Data": b"%d" % i, "ExplicitHashKey": key} for i in range(count)
        ],
    )
    return [r["SequenceNumber"] for r in out["Records"]]


async def acquire(
    ops: Harness, owner: str, shard: str = S0, duration: int = 1000, **kw: Any
) -> dict[str, Any]:
    request = {"StreamName": "s", "ApplicationName": "app", "ShardId": shard, **kw}
    out = await ops("AcquireLease", Owner=owner, DurationMillis=duration, **request)
    lease: dict[str, Any] = out["Lease"]
    return lease


async def renew(ops: Harness, lease: dict[str, Any], duration: int = 1000) -> dict[str, Any]:
    out = await ops(
        "RenewLease",
        StreamName="s",
        ApplicationName=lease["ApplicationName"],
        ShardId=lease["ShardId"],
        Owner=lease["Owner"],
        LeaseCounter=lease["LeaseCounter"],
        DurationMillis=duration,
    )
    renewed: dict[str, Any] = out["Lease"]
    return renewed


async def release(ops: Harness, lease: dict[str, Any], owner: str | None = None) -> dict[str, Any]:
    out = await ops(
        "ReleaseLease",
        StreamName="s",
        ApplicationName=lease["ApplicationName"],
        ShardId=lease["ShardId"],
        Owner=owner or lease["Owner"],
        LeaseCounter=lease["LeaseCounter"],
    )
    released: dict[str, Any] = out["Lease"]
    return released


async def checkpoint(
    ops: Harness, sequence: str, counter: int | None = None, shard: str = S0, app: str = "app"
) -> dict[str, Any]:
    request: dict[str, Any] = {"StreamName": "s", "ApplicationName": app, "ShardId": shard}
    if counter is not None:
        request["LeaseCounter"] = counter
    out = await ops("SetCheckpoint", SequenceNumber=sequence, **request)
    cp: dict[str, Any] = out["Checkpoint"]
    return cp


async def get_checkpoint(ops: Harness, shard: str = S0, app: str = "app") -> dict[str, Any]:
    out = await ops("GetCheckpoint", StreamName="s", ApplicationName=app, ShardId=shard)
    cp: dict[str, Any] = out["Checkpoint"]
    return cp


# -- leases --------------------------------------------------------------------------


async def test_acquire_a_free_lease(ops: Harness) -> None:
    await ops.create("s", 2)
    lease = await acquire(ops, "worker-a", duration=5000)
    assert lease == {
        "ShardId": S0,
        "ApplicationName": "app",
        "Owner": "worker-a",
        "LeaseCounter": 1,
        "ExpiresAt": START_MS + 5000,
        "Held": True,
    }
    # By ARN, another shard, another application: leases are independent.
    other = await ops(
        "AcquireLease",
        StreamARN=ARN + "s",
        ApplicationName="other.app-2",
        ShardId=S1,
        Owner="worker-b",
        DurationMillis=10,
    )
    assert other["Lease"]["LeaseCounter"] == 1
    assert other["Lease"]["ApplicationName"] == "other.app-2"


async def test_acquire_held_by_another(ops: Harness) -> None:
    await ops.create("s", 2)
    lease = await acquire(ops, "worker-a", duration=1000)
    with pytest.raises(ResourceInUseError) as caught:
        await acquire(ops, "worker-b")
    assert "worker-a" in caught.value.message
    assert str(lease["ExpiresAt"]) in caught.value.message
    assert caught.value.wire_name == "ResourceInUseException"
    assert not caught.value.retriable
    # The holder asking again extends it without a change of counter.
    ops.clock.advance(400)
    again = await acquire(ops, "worker-a", duration=1000)
    assert again["LeaseCounter"] == lease["LeaseCounter"]
    assert again["ExpiresAt"] == START_MS + 1400
    # One millisecond before the expiry it is still held.
    ops.clock.advance(999)
    with pytest.raises(ResourceInUseError):
        await acquire(ops, "worker-b")


async def test_takeover_after_expiry_raises_the_counter(ops: Harness) -> None:
    await ops.create("s", 2)
    a = await acquire(ops, "worker-a", duration=1000)
    ops.clock.advance(1000)
    listed = await ops("ListLeases", StreamName="s", ApplicationName="app")
    assert listed["Leases"] == [{**a, "Held": False}]
    b = await acquire(ops, "worker-b", duration=1000)
    assert b["Owner"] == "worker-b"
    assert b["LeaseCounter"] == a["LeaseCounter"] + 1
    assert b["ExpiresAt"] == START_MS + 2000
    # The old holder is fenced: renewals, releases and checkpoints under its counter.
    with pytest.raises(LeaseLostError) as caught:
        await renew(ops, a)
    assert f"held by worker-b with counter {b['LeaseCounter']}" in caught.value.message
    with pytest.raises(LeaseLostError):
        await release(ops, a)
    # And it cannot take the lease back while B holds it.
    with pytest.raises(ResourceInUseError, match="worker-b"):
        await acquire(ops, "worker-a")


async def test_renew(ops: Harness) -> None:
    await ops.create("s", 2)
    lease = await acquire(ops, "worker-a", duration=1000)
    ops.clock.advance(600)
    renewed = await renew(ops, lease, duration=2000)
    assert renewed == {**lease, "ExpiresAt": START_MS + 2600}
    # Expired but not taken over: the holder may still renew (nobody else got a counter).
    ops.clock.advance(5000)
    late = await renew(ops, renewed, duration=100)
    assert (late["LeaseCounter"], late["Held"]) == (lease["LeaseCounter"], True)
    assert late["ExpiresAt"] == START_MS + 5700
    # The right counter under another owner's name is not the lease.
    with pytest.raises(LeaseLostError, match="no longer held by worker-b"):
        await renew(ops, {**late, "Owner": "worker-b"})


async def test_renew_with_a_stale_counter_is_lease_lost(ops: Harness) -> None:
    await ops.create("s", 2)
    lease = await acquire(ops, "worker-a")
    with pytest.raises(LeaseLostError) as caught:
        await renew(ops, {**lease, "LeaseCounter": lease["LeaseCounter"] + 1})
    error = caught.value
    assert (error.wire_name, error.http_status, error.retriable) == (
        "LeaseLostException",
        400,
        False,
    )
    assert error.to_body()["__type"] == "LeaseLostException"
    # A shard that was never leased has no lease to renew.
    with pytest.raises(LeaseLostError, match="no lease exists"):
        await renew(ops, {**lease, "ShardId": S1})


async def test_release(ops: Harness) -> None:
    await ops.create("s", 2)
    a = await acquire(ops, "worker-a", duration=60_000)
    released = await release(ops, a)
    assert released == {**a, "Owner": "", "ExpiresAt": 0, "Held": False}
    # Released twice: the lease is no longer held by worker-a.
    with pytest.raises(LeaseLostError, match="released"):
        await release(ops, a)
    # Free at once for another owner, whose counter is higher.
    b = await acquire(ops, "worker-b")
    assert b["LeaseCounter"] == a["LeaseCounter"] + 1
    await release(ops, b)
    # Taking a released lease back is a change of owner too.
    a2 = await acquire(ops, "worker-a")
    assert a2["LeaseCounter"] == b["LeaseCounter"] + 1
    with pytest.raises(LeaseLostError):
        await release(ops, b)


# -- checkpoints ---------------------------------------------------------------------


async def test_checkpoint_fenced_by_the_counter(ops: Harness) -> None:
    await ops.create("s", 2)
    seqs = await put(ops, "s", 5)
    a = await acquire(ops, "worker-a", duration=1000)
    cp = await checkpoint(ops, seqs[1], a["LeaseCounter"])
    assert cp == {
        "ShardId": S0,
        "ApplicationName": "app",
        "SequenceNumber": seqs[1],
        "LeaseCounter": a["LeaseCounter"],
        "UpdatedAt": START_MS,
    }
    assert await get_checkpoint(ops) == cp
    # Without a counter while a lease exists: refused, naming the current counter.
    with pytest.raises(LeaseLostError, match=f"lease's counter is {a['LeaseCounter']}"):
        await checkpoint(ops, seqs[2])
    ops.clock.advance(1000)
    b = await acquire(ops, "worker-b")
    with pytest.raises(LeaseLostError) as caught:
        await checkpoint(ops, seqs[3], a["LeaseCounter"])
    assert f"carries lease counter {a['LeaseCounter']}" in caught.value.message
    assert f"lease's counter is {b['LeaseCounter']}" in caught.value.message
    assert caught.value.http_status == 400 and not caught.value.retriable
    assert await get_checkpoint(ops) == cp
    ops.clock.advance(7)
    moved = await checkpoint(ops, seqs[4], b["LeaseCounter"])
    assert (moved["SequenceNumber"], moved["UpdatedAt"]) == (seqs[4], START_MS + 1007)
    # A checkpoint may go back (a consumer that reprocesses); the shard's start is valid.
    start = (await ops("ListShards", StreamName="s"))["Shards"][0]["SequenceNumberRange"]
    back = await checkpoint(ops, start["StartingSequenceNumber"], b["LeaseCounter"])
    assert back["SequenceNumber"] == start["StartingSequenceNumber"]


async def test_checkpoint_without_a_lease(ops: Harness) -> None:
    await ops.create("s", 2)
    seqs = await put(ops, "s", 2, HIGH_KEY)
    cp = await checkpoint(ops, seqs[0], shard=S1)
    assert "LeaseCounter" not in cp
    assert (await get_checkpoint(ops, S1))["SequenceNumber"] == seqs[0]
    # A counter where no lease exists is refused: its writer believes in a lease.
    with pytest.raises(LeaseLostError, match="no lease exists"):
        await checkpoint(ops, seqs[1], 1, shard=S1)
    # Checkpoints are per application.
    with pytest.raises(ResourceNotFoundError, match="No checkpoint"):
        await get_checkpoint(ops, S1, app="other")


async def test_checkpoint_values(ops: Harness) -> None:
    await ops.create("s", 2)
    seqs = await put(ops, "s", 2)
    other = await put(ops, "s", 1, HIGH_KEY)
    inc = int(seqs[0]) >> 96
    refused = [
        encode(inc, 0, 3),  # beyond the newest record
        other[0],  # another shard's
        encode(inc + 1, 0, 1),  # another incarnation's
        "SHARD_END",  # the shard is open
        "12abc",
        "-1",
    ]
    for sequence in refused:
        with pytest.raises(InvalidArgumentError):
            await checkpoint(ops, sequence)
    with pytest.raises(ResourceNotFoundError):
        await get_checkpoint(ops)


async def test_shard_end(ops: Harness) -> None:
    await ops.create("s", 1)
    seqs = await put(ops, "s", 3)
    lease = await acquire(ops, "worker-a")
    await checkpoint(ops, seqs[2], lease["LeaseCounter"])
    await ops("SplitShard", StreamName="s", ShardToSplit=S0, NewStartingHashKey=str(1 << 127))
    cp = await checkpoint(ops, "SHARD_END", lease["LeaseCounter"])
    assert cp["SequenceNumber"] == "SHARD_END"
    assert await get_checkpoint(ops) == cp
    # The children are open: SHARD_END is refused there.
    with pytest.raises(InvalidArgumentError, match="SHARD_END"):
        await checkpoint(ops, "SHARD_END", shard=S1)
    # A fenced writer cannot end the shard either.
    with pytest.raises(LeaseLostError):
        await checkpoint(ops, "SHARD_END", lease["LeaseCounter"] + 1)


# -- listing -------------------------------------------------------------------------


async def test_list_leases_with_pagination(ops: Harness) -> None:
    await ops.create("s", 5)
    assert await ops("ListLeases", StreamName="s", ApplicationName="app") == {"Leases": []}
    for shard in (S4, S0, S3, S1):
        await acquire(ops, f"w-{shard[-1]}", shard, duration=1000 + int(shard[-1]))
    await acquire(ops, "x", S2, ApplicationName="other")
    await acquire(ops, "x", S2, ApplicationName="ap")  # a prefix of "app": not listed with it
    await acquire(ops, "x", S2, ApplicationName="app2")
    ops.clock.advance(1002)  # shards 0 and 1 expired; 3 and 4 still held
    first = await ops("ListLeases", StreamName="s", ApplicationName="app", MaxResults=2)
    assert [x["ShardId"] for x in first["Leases"]] == [S0, S1]
    assert [x["Held"] for x in first["Leases"]] == [False, False]
    assert first["Leases"][0]["Owner"] == "w-0"
    second = await ops(
        "ListLeases",
        StreamARN=ARN + "s",
        ApplicationName="app",
        MaxResults=2,
        NextToken=first["NextToken"],
    )
    assert [(x["ShardId"], x["Held"]) for x in second["Leases"]] == [(S3, True), (S4, True)]
    assert "NextToken" not in second
    whole = await ops("ListLeases", StreamName="s", ApplicationName="app")
    assert whole["Leases"] == first["Leases"] + second["Leases"]
    assert "NextToken" not in whole
    # A page that ends exactly at the last lease says so.
    exact = await ops("ListLeases", StreamName="s", ApplicationName="app", MaxResults=4)
    assert len(exact["Leases"]) == 4 and "NextToken" not in exact
    other = await ops("ListLeases", StreamName="s", ApplicationName="other")
    assert [x["ShardId"] for x in other["Leases"]] == [S2]
    # Tokens belong to their listing and expire.
    with pytest.raises(InvalidArgumentError, match="not for other"):
        await ops(
            "ListLeases", StreamName="s", ApplicationName="other", NextToken=first["NextToken"]
        )
    with pytest.raises(InvalidArgumentError, match="NextToken"):
        await ops("ListLeases", StreamName="s", ApplicationName="app", NextToken="garbage")
    shards_token = (await ops("ListShards", StreamName="s", MaxResults=1))["NextToken"]
    with pytest.raises(InvalidArgumentError, match="not a ListLeases token"):
        await ops("ListLeases", StreamName="s", ApplicationName="app", NextToken=shards_token)
    with pytest.raises(InvalidArgumentError, match="MaxResults"):
        await ops("ListLeases", StreamName="s", ApplicationName="app", MaxResults=0)
    ops.clock.advance(300_001)
    with pytest.raises(ExpiredNextTokenError):
        await ops("ListLeases", StreamName="s", ApplicationName="app", NextToken=first["NextToken"])


async def test_deleted_stream(ops: Harness) -> None:
    await ops.create("s", 2)
    seqs = await put(ops, "s", 3)
    lease = await acquire(ops, "worker-a")
    await checkpoint(ops, seqs[0], lease["LeaseCounter"])
    await acquire(ops, "worker-a", S1)
    page = await ops("ListLeases", StreamName="s", ApplicationName="app", MaxResults=1)
    token = page["NextToken"]
    await ops("DeleteStream", StreamName="s")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("AcquireLease", {"ShardId": S0, "Owner": "worker-a", "DurationMillis": 10}),
        (
            "RenewLease",
            {"ShardId": S0, "Owner": "worker-a", "LeaseCounter": 1, "DurationMillis": 1},
        ),
        ("ReleaseLease", {"ShardId": S0, "Owner": "worker-a", "LeaseCounter": 1}),
        ("ListLeases", {}),
        ("SetCheckpoint", {"ShardId": S0, "SequenceNumber": seqs[1], "LeaseCounter": 1}),
        ("GetCheckpoint", {"ShardId": S0}),
    ]
    for name, fields in calls:
        with pytest.raises(ResourceNotFoundError, match="Stream s"):
            await ops(name, StreamName="s", ApplicationName="app", **fields)
    # The same name again is another stream: nothing of the old one shows.
    await ops.create("s", 2)
    assert await ops("ListLeases", StreamName="s", ApplicationName="app") == {"Leases": []}
    with pytest.raises(ResourceNotFoundError):
        await get_checkpoint(ops)
    with pytest.raises(ResourceNotFoundError, match="deleted since"):
        await ops("ListLeases", StreamName="s", ApplicationName="app", NextToken=token)
    with pytest.raises(LeaseLostError):
        await renew(ops, lease)
    # The old stream's sequence numbers do not belong to the new one.
    with pytest.raises(InvalidArgumentError, match="does not belong"):
        await checkpoint(ops, seqs[1])
    fresh = await acquire(ops, "worker-b")
    assert fresh["LeaseCounter"] == 1


# -- request errors ------------------------------------------------------------------

ACQUIRE = {
    "StreamName": "s",
    "ApplicationName": "app",
    "ShardId": S0,
    "Owner": "w",
    "DurationMillis": 1000,
}


@pytest.mark.parametrize(
    ("operation", "changes", "error"),
    [
        ("AcquireLease", {"ApplicationName": None}, ValidationError),
        ("AcquireLease", {"ApplicationName": 7}, ValidationError),
        ("AcquireLease", {"ApplicationName": "bad name"}, InvalidArgumentError),
        ("AcquireLease", {"ApplicationName": ""}, InvalidArgumentError),
        ("AcquireLease", {"ApplicationName": "a\x00b"}, InvalidArgumentError),
        ("AcquireLease", {"ApplicationName": "a" * 129}, InvalidArgumentError),
        ("AcquireLease", {"StreamName": None}, ValidationError),
        ("AcquireLease", {"StreamName": "nope"}, ResourceNotFoundError),
        ("AcquireLease", {"ShardId": None}, ValidationError),
        ("AcquireLease", {"ShardId": "shard-0"}, InvalidArgumentError),
        ("AcquireLease", {"ShardId": "shardId-999999999999"}, ResourceNotFoundError),
        ("AcquireLease", {"Owner": None}, ValidationError),
        ("AcquireLease", {"Owner": b"w"}, ValidationError),
        ("AcquireLease", {"Owner": ""}, InvalidArgumentError),
        ("AcquireLease", {"Owner": "w" * 257}, InvalidArgumentError),
        ("AcquireLease", {"DurationMillis": None}, ValidationError),
        ("AcquireLease", {"DurationMillis": "1000"}, ValidationError),
        ("AcquireLease", {"DurationMillis": True}, ValidationError),
        ("AcquireLease", {"DurationMillis": 0}, InvalidArgumentError),
        ("AcquireLease", {"DurationMillis": MAX_LEASE_DURATION_MS + 1}, InvalidArgumentError),
        ("RenewLease", {"LeaseCounter": None}, ValidationError),
        ("RenewLease", {"LeaseCounter": "1"}, ValidationError),
        ("RenewLease", {"LeaseCounter": 0}, InvalidArgumentError),
        ("RenewLease", {"LeaseCounter": 1 << 70}, InvalidArgumentError),
        ("RenewLease", {"DurationMillis": None}, ValidationError),
        ("RenewLease", {"ShardId": "shardId-999999999999"}, ResourceNotFoundError),
        ("ReleaseLease", {"LeaseCounter": None}, ValidationError),
        ("ReleaseLease", {"Owner": ""}, InvalidArgumentError),
        ("ReleaseLease", {"ShardId": "shardId-000000000009"}, ResourceNotFoundError),
        ("ListLeases", {"ApplicationName": None}, ValidationError),
        ("ListLeases", {"MaxResults": 10_001}, InvalidArgumentError),
        ("ListLeases", {"MaxResults": "2"}, ValidationError),
        ("ListLeases", {"NextToken": 5}, ValidationError),
        ("SetCheckpoint", {"SequenceNumber": None}, ValidationError),
        ("SetCheckpoint", {"SequenceNumber": 5}, ValidationError),
        ("SetCheckpoint", {"SequenceNumber": "x" * 200}, InvalidArgumentError),
        ("SetCheckpoint", {"LeaseCounter": -1}, InvalidArgumentError),
        ("SetCheckpoint", {"LeaseCounter": 1.0}, ValidationError),
        ("SetCheckpoint", {"ShardId": "shardId-999999999999"}, ResourceNotFoundError),
        ("GetCheckpoint", {"ApplicationName": "bad/app"}, InvalidArgumentError),
        ("GetCheckpoint", {"ShardId": "shardId-000000000002"}, ResourceNotFoundError),
        ("GetCheckpoint", {"StreamARN": ARN + "t", "StreamName": "s"}, InvalidArgumentError),
    ],
)
async def test_request_errors(
    ops: Harness, operation: str, changes: dict[str, Any], error: type[ShardlineError]
) -> None:
    await ops.create("s", 2)
    seq = (await put(ops, "s", 1))[0]
    base = {**ACQUIRE, "LeaseCounter": 1, "SequenceNumber": seq}
    request = {k: v for k, v in {**base, **changes}.items() if v is not None}
    with pytest.raises(error) as caught:
        await ops(operation, **request)
    assert caught.value.http_status == 400
    assert type(caught.value) is error


COORDINATION = [
    "AcquireLease",
    "RenewLease",
    "ReleaseLease",
    "ListLeases",
    "SetCheckpoint",
    "GetCheckpoint",
]
FIELDS = [
    "StreamName",
    "StreamARN",
    "ApplicationName",
    "ShardId",
    "Owner",
    "DurationMillis",
    "LeaseCounter",
    "SequenceNumber",
    "MaxResults",
    "NextToken",
]
PLAUSIBLE = {
    "StreamName": st.just("s"),
    "ApplicationName": st.sampled_from(["app", "other"]),
    "ShardId": st.sampled_from([S0, S1, "shardId-999999999999"]),
    "Owner": st.sampled_from(["a", "b"]),
    "DurationMillis": st.integers(-5, 5000),
    "LeaseCounter": st.integers(-1, 4),
    "SequenceNumber": st.sampled_from(["SHARD_END", "0", str(1 << 96), str((1 << 96) + 1)]),
}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(
    name=st.sampled_from(COORDINATION),
    plausible=st.fixed_dictionaries({}, optional=PLAUSIBLE),
    arbitrary=st.dictionaries(st.sampled_from(FIELDS), values, max_size=3),
)
async def test_arbitrary_requests(
    ops: Harness, name: str, plausible: dict[str, Any], arbitrary: dict[str, Any]
) -> None:
    """A named 400 error or a response, for any request, never anything else."""
    try:
        ops.broker.log.describe("s")
    except ResourceNotFoundError:
        await ops.create("s", 2)
        await put(ops, "s", 1)
    await check(ops, name, {**plausible, **arbitrary})


# -- fencing under random interleavings ----------------------------------------------

OWNERS = ("a", "b")
RECORDS = 4
_apps = itertools.count()


@dataclass
class ModelLease:
    owner: str
    expires_ms: int
    counter: int


steps = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 2500)),
        st.tuples(st.just("acquire"), st.sampled_from(OWNERS), st.integers(1, 2000)),
        st.tuples(st.just("renew"), st.sampled_from(OWNERS), st.integers(1, 2000)),
        st.tuples(st.just("release"), st.sampled_from(OWNERS)),
        st.tuples(
            st.just("checkpoint"),
            st.sampled_from(OWNERS),
            st.sampled_from(("mine", "none", "guess")),
            st.integers(1, 5),
            st.integers(0, RECORDS),
        ),
    ),
    max_size=30,
)


@settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    max_examples=60,
    deadline=None,
)
@given(steps=steps)
async def test_fencing_model(ops: Harness, steps: list[tuple[Any, ...]]) -> None:
    """Two owners acquire, renew, release and checkpoint at random; the broker follows the model.

    Each owner remembers the counter it was last granted and checkpoints with
    it ("mine"), with none, or with a guess. Whatever the interleaving, a
    checkpoint is accepted exactly when its counter is the lease's current one
    (none: only while the shard was never leased), and the current counter is
    always the one most recently granted, to exactly one owner.
    """
    try:
        inc = ops.broker.log.describe("s").incarnation
    except ResourceNotFoundError:
        await ops.create("s", 1)
        await put(ops, "s", RECORDS)
        inc = ops.broker.log.describe("s").incarnation
    app = f"app{next(_apps)}"  # a fresh application: no lease, no checkpoint yet
    address = {"StreamName": "s", "ApplicationName": app, "ShardId": S0}
    lease: ModelLease | None = None
    saved: tuple[str, int | None] | None = None
    believed: dict[str, int] = {}  # what each owner was last granted
    granted_to: dict[int, str] = {}  # each counter ever granted, and to whom

    for step in steps:
        kind = step[0]
        now = ops.clock.now
        if kind == "advance":
            ops.clock.advance(step[1])
            continue
        owner = step[1]
        if kind == "acquire":
            free = lease is None or not lease.owner or lease.owner == owner
            if free or (lease is not None and now >= lease.expires_ms):
                counter = 1 if lease is None else lease.counter + (lease.owner != owner)
                lease = ModelLease(owner, now + step[2], counter)
                got = await ops("AcquireLease", **address, Owner=owner, DurationMillis=step[2])
                assert got["Lease"]["LeaseCounter"] == counter
                believed[owner] = counter
                assert granted_to.setdefault(counter, owner) == owner
                assert counter == max(granted_to)
            else:
                with pytest.raises(ResourceInUseError):
                    await ops("AcquireLease", **address, Owner=owner, DurationMillis=step[2])
        elif kind in ("renew", "release"):
            mine = believed.get(owner, 1)
            extra: dict[str, Any] = {"Owner": owner, "LeaseCounter": mine}
            if kind == "renew":
                extra["DurationMillis"] = step[2]
            operation = "RenewLease" if kind == "renew" else "ReleaseLease"
            if lease is not None and lease.owner == owner and lease.counter == mine:
                await ops(operation, **address, **extra)
                lease = (
                    ModelLease(owner, now + step[2], mine)
                    if kind == "renew"
                    else ModelLease("", 0, mine)
                )
            else:
                with pytest.raises(LeaseLostError):
                    await ops(operation, **address, **extra)
        else:
            _, _, mode, guess, offset = step
            counter = {"mine": believed.get(owner), "none": None, "guess": guess}[mode]
            sequence = encode(inc, 0, offset)
            request: dict[str, Any] = {**address, "SequenceNumber": sequence}
            if counter is not None:
                request["LeaseCounter"] = counter
            if (lease is None and counter is None) or (
                lease is not None and counter == lease.counter
            ):
                await ops("SetCheckpoint", **request)
                saved = (sequence, counter)
                if counter is not None:
                    # Fencing: only the latest grant's counter passes, and an owner
                    # passing with its own counter is the one it was granted to.
                    assert counter == max(granted_to)
                    if mode == "mine":
                        assert granted_to[counter] == owner
            else:
                with pytest.raises(LeaseLostError):
                    await ops("SetCheckpoint", **request)

        listed = (await ops("ListLeases", StreamName="s", ApplicationName=app))["Leases"]
        if lease is None:
            assert listed == []
        else:
            now = ops.clock.now
            assert [(x["Owner"], x["ExpiresAt"], x["LeaseCounter"], x["Held"]) for x in listed] == [
                (
                    lease.owner,
                    lease.expires_ms,
                    lease.counter,
                    bool(lease.owner) and now < lease.expires_ms,
                )
            ]
        if saved is None:
            with pytest.raises(ResourceNotFoundError):
                await ops("GetCheckpoint", **address)
        else:
            cp = (await ops("GetCheckpoint", **address))["Checkpoint"]
            assert (cp["SequenceNumber"], cp.get("LeaseCounter")) == saved

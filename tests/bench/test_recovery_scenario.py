"""The recovery scenario: its record check finds losses, and a tiny run finds none.

The smoke test runs the whole scenario (a real broker process SIGKILLed under
the load of two real producer processes, restarted on the same data) with a
fill of 20,000 records; its figures mean nothing, what is checked is that it
runs end to end, records what its rows promise and leaves no process behind.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np

from bench.scenario import Options
from bench.scenarios.recovery import (
    RECORD_BYTES,
    AckedRecords,
    BodyTemplate,
    StoredShard,
    audit,
    check_rows,
    page_arrays,
    partition_keys,
    record_ids,
    record_rows,
    run,
)
from broker.protocol.codec import decode_body

from .processes import descendants

ROW_KEYS = {
    "records",
    "shards",
    "fill_records_per_s",
    "restart_to_listening_s",
    "restart_to_serving_s",
    "kill_to_serving_s",
    "acked_during_load",
    "acked_after_restart",
    "lost",
    "verified_records",
    "verify_s",
    "data_mb",
    "unacked_present",
}


def test_a_body_template_encodes_the_records_it_is_given() -> None:
    keys = partition_keys(3)
    ids = record_ids(2, 1000, len(keys))
    body = decode_body(BodyTemplate(keys).body(ids))
    assert [r["PartitionKey"] for r in body["Records"]] == keys
    data = b"".join(r["Data"] for r in body["Records"])
    assert data == record_rows(ids).tobytes()
    assert all(len(r["Data"]) == RECORD_BYTES for r in body["Records"])


def test_a_changed_byte_makes_a_record_invalid() -> None:
    rows = record_rows(record_ids(1, 0, 4))
    rows[2, 50] ^= 1
    rows[3, 9] ^= 1
    ids, valid = check_rows(rows)
    assert ids.tolist() == record_ids(1, 0, 4).tolist()
    assert valid.tolist() == [True, True, False, False]


def _page(first_sequence: int, ids: np.ndarray) -> list[dict[str, object]]:
    rows = record_rows(ids)
    records = [[1_700_000_000_000, "k", row.tobytes()] for row in rows]
    return [
        {"FirstSequenceNumber": str(first_sequence), "Records": records[:3]},
        {"FirstSequenceNumber": str(first_sequence + 3), "Records": records[3:]},
    ]


def test_the_audit_counts_what_is_missing_or_changed() -> None:
    shard = 1
    base = (7 << 96) | (shard << 64)
    fill = record_ids(0, 0, 4)
    produced = record_ids(1, 0, 3)
    stored = page_arrays(_page(base + 1, np.concatenate([fill, produced])), shard)
    assert stored.offsets.tolist() == list(range(1, 8))
    acked = AckedRecords(
        np.full(4, shard, np.int64),
        np.asarray([5, 6, 7, 9], np.int64),  # offset 9 was never stored
        np.concatenate([produced, record_ids(1, 5, 1)]),
    )
    clean = audit({shard: stored}, AckedRecords(), 4, Counter({shard: 4}))
    assert clean["lost"] == 0 and clean["unacked_present"] == 3
    checked = audit({shard: stored}, acked, 4, Counter({shard: 4}))
    assert checked["lost_acked"] == 1 and checked["short_shards"] == 1
    # A fill record and a producer's record changed on disk, and the order broken.
    broken = StoredShard(stored.offsets.copy(), stored.ids.copy(), stored.valid.copy())
    broken.valid[0] = False
    broken.valid[5] = False
    broken.offsets[[2, 3]] = broken.offsets[[3, 2]]
    checked = audit({shard: broken}, acked, 4, Counter({shard: 4}))
    assert checked["lost_fill"] == 1 and checked["lost_acked"] == 2 and checked["lost"] == 3
    assert checked["out_of_order"] == 1 and checked["corrupt"] == 2


def test_a_tiny_run_loses_nothing_and_leaves_no_process(tmp_path: Path) -> None:
    before = set(descendants())
    options = Options(quick=True, records=20_000, rounds=1, duration=0.5, progress=False)
    result = run(dataclasses.replace(options, tmpdir=str(tmp_path)))
    assert set(descendants()) <= before
    assert len(result.rows) == 1
    row = result.rows[0]
    assert row.keys() >= ROW_KEYS
    assert row["lost"] == 0 and row["out_of_order"] == 0 and row["short_shards"] == 0
    assert row["restart_to_serving_s"] > 0
    assert row["restart_to_listening_s"] <= row["restart_to_serving_s"] < row["kill_to_serving_s"]
    assert row["acked_during_load"] > 0 and row["acked_after_restart"] > 0
    assert row["verified_records"] >= 20_000 + row["acked_during_load"] + row["acked_after_restart"]
    assert {goal.description.split(" ")[0] for goal in result.goals} == {"serving", "acknowledged"}
    json.dumps({"rows": result.rows, "goals": [goal.as_dict() for goal in result.goals]})
    assert not list(tmp_path.iterdir())  # the scratch directory is gone

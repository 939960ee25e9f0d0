"""The scenarios, by name. To add one: a module with ``SCENARIO``, listed here."""

from __future__ import annotations

from ..scenario import Scenario
from . import (
    fanout,
    functions,
    group,
    ingest,
    kinesis_api,
    latency,
    log_append,
    log_read,
    poll_read,
    producer,
    recovery,
)

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        log_append.SCENARIO,
        log_read.SCENARIO,
        ingest.SCENARIO,
        poll_read.SCENARIO,
        fanout.FANOUT,
        fanout.ISOLATION,
        latency.SCENARIO,
        producer.SCENARIO,
        group.SCENARIO,
        functions.FUNCTIONS,
        functions.FUNCTIONS_LATENCY,
        functions.PARALLEL,
        recovery.SCENARIO,
        kinesis_api.SCENARIO,
    )
}

"""The function-consumer worker: runs every enabled event source mapping (``shardline worker``).

A worker lists the broker's event source mappings and runs each enabled one
as a ``MappingRunner``: a consumer group (``consumers.group``) over the
mapping's stream, reading through the mapping's registered consumer, whose
application name is the mapping's (``mapping-<UUID>``), so that several
workers share a mapping's shards through the broker's leases and a killed
worker's shards continue elsewhere from the checkpoints.

Each held shard gets a ``ShardProcessor`` (``consumers.batching``: batching,
``ParallelizationFactor``, retries, bisection, partial failures, tumbling
windows, checkpoints), fed by the shard's own reader (the group's
``shard_handler``), so a shard whose batch is being retried holds back only
itself. The processor's invocations become Lambda's Kinesis event
(``consumers.events``) for the mapping's target (``consumers.invoke``);
its discarded batches become failure records put to the ``OnFailure``
stream before the checkpoint moves past them.

The worker polls the mappings every ``poll_interval`` seconds: a new or
re-enabled mapping starts, a disabled or deleted one stops (its leases are
released, so it resumes where it stopped), and an updated one restarts with
its new parameters.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from broker.client import Client, Record
from broker.errors import ShardlineError

from . import events as lambda_events
from .batching import BatchingConfig, FailureInfo, Invocation, ShardProcessor
from .filters import compile_filter_criteria
from .group import SHARD_END, Batch, ConsumerGroup, default_worker_id
from .invoke import InvocationContext, Target, parse_target
from .progress import InvokeOutcome
from .worker_metrics import WorkerMetrics

log = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 2.0
#: Lambda's limit for a synchronous invocation's payload.
DEFAULT_MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
#: How long one invocation may run (Lambda's maximum function timeout).
DEFAULT_FUNCTION_TIMEOUT_S = 900.0


def stream_of(event_source_arn: str) -> str:
    """The stream ARN of a stream ARN or of a consumer ARN (``<stream ARN>/consumer/...``)."""
    return event_source_arn.split("/consumer/", 1)[0]


def stream_name_of(stream_arn: str) -> str:
    """``NAME`` of ``arn:aws:kinesis:<region>:<account>:stream/NAME``."""
    return stream_arn.split(":stream/", 1)[-1]


def batching_config(mapping: Any, max_payload_bytes: int) -> BatchingConfig:
    """The engine's settings from a mapping's parameters (Lambda's names, snake_case)."""
    return BatchingConfig(
        batch_size=mapping.batch_size,
        batching_window_s=float(mapping.maximum_batching_window_in_seconds),
        parallelization_factor=mapping.parallelization_factor,
        bisect_on_error=bool(mapping.bisect_batch_on_function_error),
        max_retry_attempts=mapping.maximum_retry_attempts,
        max_record_age_s=mapping.maximum_record_age_in_seconds,
        report_batch_item_failures="ReportBatchItemFailures"
        in (mapping.function_response_types or ()),
        tumbling_window_s=mapping.tumbling_window_in_seconds or 0,
        max_payload_bytes=max_payload_bytes,
    )


def _on_failure_destination(mapping: Any) -> str | None:
    config = mapping.destination_config or {}
    destination = (config.get("OnFailure") or {}).get("Destination")
    return destination if isinstance(destination, str) and destination else None


@dataclass
class MappingRunner:
    """One mapping's share of the work on this worker: a group and its shard processors."""

    endpoint: str
    mapping: Any
    worker_id: str
    client: Client
    metrics: WorkerMetrics
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    function_timeout_s: float = DEFAULT_FUNCTION_TIMEOUT_S
    region: str = "local"
    #: Per held shard: the lease it is read under, and its processor.
    processors: dict[str, tuple[object, ShardProcessor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mapping = self.mapping
        # Threads for python: targets: every shard held may have ParallelizationFactor
        # invocations in flight.
        self.target: Target = parse_target(
            mapping.function_arn, concurrency=max(8, 16 * mapping.parallelization_factor)
        )
        self.keep: Callable[[Record], bool] | None = compile_filter_criteria(
            mapping.filter_criteria
        )
        self.config = batching_config(mapping, self.max_payload_bytes)
        self.stream_arn = stream_of(mapping.event_source_arn)
        self.destination = _on_failure_destination(mapping)
        self.labels = {"mapping": mapping.uuid}
        self._nursery: trio.Nursery | None = None
        self._group: ConsumerGroup | None = None

    @property
    def application(self) -> str:
        return f"mapping-{self.mapping.uuid}"

    async def run(self) -> None:
        mapping = self.mapping
        position = mapping.starting_position
        timestamp_ms = None
        if position == "AT_TIMESTAMP":
            timestamp_ms = int(float(mapping.starting_position_timestamp) * 1000)
        try:
            await self._run(position, timestamp_ms)
        finally:
            with trio.CancelScope(shield=True):
                await self.target.aclose()

    async def _run(self, position: Any, timestamp_ms: int | None) -> None:
        mapping = self.mapping
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            group = ConsumerGroup(
                self.endpoint,
                stream_name_of(self.stream_arn),
                self.application,
                worker_id=self.worker_id,
                starting_position=position,
                starting_timestamp_ms=timestamp_ms,
                consumer_arn=mapping.consumer_arn,
                shard_handler=self._on_batch,
                client=self.client,
            )
            async with group:
                self._group = group
                # Nothing iterates the group (its readers call _on_batch): its failure
                # is raised here, and the worker restarts the mapping.
                await group.wait_failed()

    def _processor(self, batch: Batch) -> ShardProcessor:
        """The processor of the lease ``batch`` was read under (a new lease, a new one).

        A processor lives as long as its lease: it checkpoints under that lease
        only, and stops when the lease ends (lost, stolen, released), even while
        it is retrying or invoking. A shard taken again gets a fresh processor
        from the checkpoint, never the old one (whose records it would drop).
        """
        shard_id = batch.shard_id
        known = self.processors.get(shard_id)
        if known is not None and known[0] is batch.lease:
            return known[1]
        assert self._nursery is not None
        first = batch

        async def checkpoint(sequence_number: str) -> bool:
            return await first.checkpoint_at(sequence_number)

        async def invoke(invocation: Invocation) -> InvokeOutcome:
            return await self._invoke(shard_id, invocation)

        async def send_failure(info: FailureInfo) -> None:
            await self._send_failure(shard_id, info)

        processor = ShardProcessor(
            self.config,
            shard_id=shard_id,
            invoke=invoke,
            checkpoint=checkpoint,
            send_failure=send_failure,
            record_size=lambda_events.record_sizer(
                shard_id=shard_id, stream_arn=self.stream_arn, region=self.region
            ),
            keep=self.keep,
            # Room for every lane to run well ahead of the slowest one: records done
            # out of order stay buffered until the checkpoint passes them.
            max_buffered_records=max(
                10_000, 50 * self.config.batch_size * self.config.parallelization_factor
            ),
            size_bound=lambda_events.size_bounder(
                shard_id=shard_id, stream_arn=self.stream_arn, region=self.region
            ),
        )
        entry = (batch.lease, processor)
        self.processors[shard_id] = entry
        self._nursery.start_soon(self._run_processor, shard_id, entry, batch.lease_ended)
        return processor

    async def _run_processor(
        self,
        shard_id: str,
        entry: tuple[object, ShardProcessor],
        lease_ended: trio.Event,
    ) -> None:
        try:
            async with trio.open_nursery() as nursery:

                async def stop_with_the_lease() -> None:
                    await lease_ended.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(stop_with_the_lease)
                await entry[1].run()
                nursery.cancel_scope.cancel()
        finally:
            if self.processors.get(shard_id) is entry:
                del self.processors[shard_id]

    async def _on_batch(self, batch: Batch) -> None:
        processor = self._processor(batch)
        if batch.ended:
            # The processor checkpoints SHARD_END once everything before it is
            # processed; the group then finishes the shard and takes its children.
            await processor.end_of_shard()
            return
        await processor.put(batch.records)

    # -- invoking -----------------------------------------------------------------

    async def _invoke(self, shard_id: str, invocation: Invocation) -> InvokeOutcome:
        mapping = self.mapping
        records = lambda_events.kinesis_records(
            invocation.records, shard_id=shard_id, stream_arn=self.stream_arn, region=self.region
        )
        if invocation.window is not None:
            event = lambda_events.tumbling_event(
                records,
                window=invocation.window,
                state=invocation.state,
                shard_id=shard_id,
                stream_arn=self.stream_arn,
                is_final=invocation.is_final,
                terminated_early=invocation.terminated_early,
            )
        else:
            event = lambda_events.lambda_event(records)
        context = InvocationContext(
            function_name=mapping.function_arn,
            timeout_s=self.function_timeout_s,
        )
        started = time.perf_counter()
        result = await self.target.invoke(event, context)
        self.metrics.observe_invocation(
            mapping.uuid,
            records=len(invocation.records),
            seconds=time.perf_counter() - started,
            ok=result.ok,
            retry=invocation.attempt > 1,
            iterator_age_ms=(
                time.time() * 1000 - invocation.records[-1].approximate_arrival_timestamp
                if invocation.records
                else None
            ),
        )
        return InvokeOutcome(
            ok=result.ok,
            response=result.response,
            error_type=result.error_type,
            error_message=result.error_message,
        )

    async def _send_failure(self, shard_id: str, info: FailureInfo) -> None:
        """Put the OnFailure record; without a destination the batch is only logged."""
        record = lambda_events.failure_record(
            info, function_arn=self.mapping.function_arn, stream_arn=self.stream_arn
        )
        self.metrics.observe_discard(self.mapping.uuid, info.batch_size)
        if self.destination is None:
            log.warning("mapping %s discarded a batch: %s", self.mapping.uuid, record)
            return
        data = json.dumps(record).encode()
        # Retried until it is stored: the checkpoint must not pass the batch before.
        delay = 0.1
        while True:
            try:
                if self.destination.startswith("arn:"):
                    await self.client.put_record(None, data, shard_id, stream_arn=self.destination)
                else:
                    await self.client.put_record(self.destination, data, shard_id)
                return
            except ShardlineError as exc:
                log.warning(
                    "mapping %s: OnFailure put failed (%s); retrying", self.mapping.uuid, exc
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 10.0)


def _fingerprint(mapping: Any) -> tuple[Any, ...]:
    """What makes a running mapping restart when it changes (everything but its state)."""
    return (
        mapping.function_arn,
        mapping.batch_size,
        mapping.maximum_batching_window_in_seconds,
        mapping.parallelization_factor,
        mapping.bisect_batch_on_function_error,
        mapping.maximum_retry_attempts,
        mapping.maximum_record_age_in_seconds,
        json.dumps(mapping.destination_config, sort_keys=True),
        tuple(mapping.function_response_types or ()),
        mapping.tumbling_window_in_seconds,
        json.dumps(mapping.filter_criteria, sort_keys=True),
        mapping.last_modified,
    )


async def list_mappings(client: Client) -> list[Any]:
    """Every mapping, all pages."""
    out: list[Any] = []
    marker: str | None = None
    while True:
        page = await client.list_event_source_mappings(marker=marker)
        out += page.event_source_mappings
        marker = page.next_marker
        if not marker:
            return out


class Worker:
    """Runs every enabled mapping (module docstring); ``await Worker(...).run()``."""

    def __init__(
        self,
        endpoint: str,
        *,
        worker_id: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.worker_id = worker_id or default_worker_id()
        self.poll_interval = poll_interval
        self.max_payload_bytes = max_payload_bytes
        self.metrics = metrics or WorkerMetrics()
        self.running: dict[str, tuple[tuple[Any, ...], trio.CancelScope, MappingRunner]] = {}
        self._polling = trio.CancelScope()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the mappings until cancelled, or until ``stop`` (then return)."""
        async with Client(self.endpoint) as client, trio.open_nursery() as nursery:
            started = False
            with self._polling:
                while True:
                    try:
                        mappings = await list_mappings(client)
                    except ShardlineError as exc:
                        log.warning("could not list the event source mappings: %s", exc)
                    else:
                        self._reconcile(client, nursery, mappings)
                    if not started:
                        task_status.started()
                        started = True
                    await trio.sleep(self.poll_interval)

    def stop(self) -> None:
        """Stop cleanly: every mapping stops and releases its leases, then ``run`` returns.

        Unlike cancelling ``run``, this keeps the worker's connection open until
        the leases are given back, so another worker takes the shards at once
        rather than after they expire.
        """
        self._polling.cancel()
        for running in self.running.values():
            running[1].cancel()

    def _reconcile(self, client: Client, nursery: trio.Nursery, mappings: list[Any]) -> None:
        wanted = {m.uuid: m for m in mappings if m.state == "Enabled"}
        listed = {m.uuid for m in mappings}
        for gone in [key for key in self.metrics.mappings if key not in listed]:
            del self.metrics.mappings[gone]  # deleted: its figures go with it
        for key, (fingerprint, scope, _runner) in list(self.running.items()):
            mapping = wanted.get(key)
            if mapping is None or _fingerprint(mapping) != fingerprint:
                scope.cancel()
                del self.running[key]
        for key, mapping in wanted.items():
            if key in self.running:
                continue
            try:
                runner = MappingRunner(
                    self.endpoint,
                    mapping,
                    self.worker_id,
                    client,
                    self.metrics,
                    max_payload_bytes=self.max_payload_bytes,
                )
            except ShardlineError as exc:
                log.error("mapping %s cannot run: %s", key, exc)
                continue
            scope = trio.CancelScope()
            self.running[key] = (_fingerprint(mapping), scope, runner)
            nursery.start_soon(self._run_mapping, key, scope, runner)

    async def _run_mapping(self, key: str, scope: trio.CancelScope, runner: MappingRunner) -> None:
        delay = 1.0
        with scope:
            while True:
                try:
                    await runner.run()
                except Exception as exc:
                    # (Nurseries wrap errors in exception groups.) The mapping restarts
                    # from its checkpoints; the worker's other mappings go on.
                    log.warning("mapping %s stopped: %s; restarting in %.0f s", key, exc, delay)
                    self.metrics.observe_restart(key)
                    await trio.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    runner = MappingRunner(
                        runner.endpoint,
                        runner.mapping,
                        runner.worker_id,
                        runner.client,
                        runner.metrics,
                        max_payload_bytes=runner.max_payload_bytes,
                    )
        if self.running.get(key, (None, None, None))[1] is scope:
            del self.running[key]


__all__ = [
    "SHARD_END",
    "MappingRunner",
    "Worker",
    "batching_config",
    "stream_name_of",
    "stream_of",
]

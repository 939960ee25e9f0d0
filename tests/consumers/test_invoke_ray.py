"""The ``ray:`` target against a real local Ray instance (the ``ray`` extra; ``make test``
installs it). One Ray is started for the module: it takes a few seconds."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio

from broker.client import Record
from consumers.events import kinesis_records, lambda_event
from consumers.invoke import InvocationContext, RayTarget, parse_target

ray = pytest.importorskip("ray")

HANDLERS = "tests.consumers.handlers"


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
async def ray_target() -> AsyncIterator[Any]:
    made: list[RayTarget] = []

    def make(attribute: str) -> RayTarget:
        target = parse_target(f"ray:{HANDLERS}:{attribute}")
        assert isinstance(target, RayTarget)
        made.append(target)
        return target

    yield make
    for target in made:
        await target.aclose()


def event(*payloads: bytes) -> dict[str, Any]:
    records = [Record(str(i + 1), 1_700_000_000_000, p, "k") for i, p in enumerate(payloads)]
    return lambda_event(
        kinesis_records(
            records,
            shard_id="shardId-000000000000",
            stream_arn="arn:aws:kinesis:us-east-1:000000000000:stream/s",
        )
    )


async def test_a_lambda_handler_runs_as_a_ray_task(ray_target: Any) -> None:
    context = InvocationContext(function_name="fn")
    result = await ray_target("lambda_handler").invoke(event(b"one", b"two"), context)
    assert result.ok, result
    assert result.response == {"payloads": ["one", "two"], "request": context.aws_request_id}
    where = await ray_target("pid").invoke(event(), context)
    assert where.ok and where.response != os.getpid()  # in a Ray worker, not here


async def test_errors_of_a_ray_task(ray_target: Any) -> None:
    context = InvocationContext(function_name="fn")
    failed = await ray_target("fails").invoke(event(b"x"), context)
    assert (failed.ok, failed.error_type, failed.error_message) == (
        False,
        "ValueError",
        "poison record",
    )
    missing = await ray_target("no_such_function").invoke(event(b"x"), context)
    assert (missing.ok, missing.error_type) == (False, "Runtime.HandlerNotFound")


async def test_a_ray_task_does_not_stall_the_loop_and_returns_before_invoke_does(
    ray_target: Any,
) -> None:
    target = ray_target("blocking")
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.05)
            ticks += 1

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        result = await target.invoke({"sleep": 1.0}, InvocationContext(function_name="fn"))
        nursery.cancel_scope.cancel()
    assert result.ok and result.response == "slept"
    assert time.monotonic() - started >= 1.0  # the task's work was done when invoke returned
    assert ticks >= 10


async def test_a_ray_task_past_its_deadline_is_cancelled(ray_target: Any) -> None:
    started = time.monotonic()
    context = InvocationContext(function_name="fn", timeout_s=0.5)
    result = await ray_target("blocking").invoke({"sleep": 30.0}, context)
    assert (result.ok, result.error_type) == (False, "Sandbox.Timedout")
    assert time.monotonic() - started < 10
    # The worker is free again: the cancelled task does not hold Ray's only CPU.
    again = await ray_target("pid").invoke(event(), InvocationContext(function_name="fn"))
    assert again.ok, again
    assert time.monotonic() - started < 20

"""Event source mappings from the ``Client``: Lambda's five operations and their typed result.

``Client`` inherits ``EventSourceMappings``. The keyword parameters are
Lambda's in snake_case (``batch_size`` -> ``BatchSize``,
``maximum_batching_window_in_seconds`` -> ``MaximumBatchingWindowInSeconds``,
...; ``MAPPING_PARAMETERS`` lists them); a name that is not one of them is a
``TypeError`` here rather than a parameter the broker would silently ignore.
Parameters left ``None`` are not sent, so the broker's defaults apply.

``EventSourceMapping`` mirrors Lambda's ``EventSourceMappingConfiguration`` in
snake_case, plus ``consumer_arn``: the fan-out consumer the mapping reads
through. ``function_arn`` holds the target string (``python:pkg.mod:fn``,
``exec:...``, a URL), as the wire does; ``function_name`` says the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

Wire = Mapping[str, Any]

#: The parameters the create and update methods take, by their Lambda names.
MAPPING_PARAMETERS = {
    "starting_position": "StartingPosition",
    "starting_position_timestamp": "StartingPositionTimestamp",
    "batch_size": "BatchSize",
    "maximum_batching_window_in_seconds": "MaximumBatchingWindowInSeconds",
    "parallelization_factor": "ParallelizationFactor",
    "bisect_batch_on_function_error": "BisectBatchOnFunctionError",
    "maximum_retry_attempts": "MaximumRetryAttempts",
    "maximum_record_age_in_seconds": "MaximumRecordAgeInSeconds",
    "destination_config": "DestinationConfig",
    "function_response_types": "FunctionResponseTypes",
    "tumbling_window_in_seconds": "TumblingWindowInSeconds",
    "filter_criteria": "FilterCriteria",
    "enabled": "Enabled",
}


def mapping_request(**params: Any) -> dict[str, Any]:
    """Lambda's request map from snake_case parameters, leaving out ``None``."""
    unknown = sorted(set(params) - set(MAPPING_PARAMETERS))
    if unknown:
        raise TypeError(f"unknown event source mapping parameter(s): {', '.join(unknown)}")
    return {MAPPING_PARAMETERS[k]: v for k, v in params.items() if v is not None}


@dataclass(frozen=True, slots=True)
class EventSourceMapping:
    """A mapping as every mapping operation answers it (``docs/protocol.md``).

    ``state`` is ``Enabled`` or ``Disabled`` (``Deleting`` in the answer to a
    delete); a mapping whose stream was deleted or whose consumer was
    deregistered is ``Disabled`` with a ``state_transition_reason`` starting
    ``PROBLEM:``. ``last_modified`` is in epoch seconds.
    """

    uuid: str
    function_arn: str
    event_source_arn: str
    starting_position: str
    batch_size: int
    maximum_batching_window_in_seconds: int
    parallelization_factor: int
    bisect_batch_on_function_error: bool
    maximum_retry_attempts: int
    maximum_record_age_in_seconds: int
    destination_config: dict[str, Any]
    function_response_types: list[str]
    tumbling_window_in_seconds: int
    filter_criteria: dict[str, Any]
    state: str
    state_transition_reason: str
    last_modified: float
    consumer_arn: str
    starting_position_timestamp: float | None = None

    @property
    def function_name(self) -> str:
        """The target, as it was given (the wire calls it ``FunctionArn``, as Lambda)."""
        return self.function_arn

    @property
    def on_failure_destination(self) -> str | None:
        """The ARN of the stream that receives failure records, if any."""
        destination: str | None = self.destination_config.get("OnFailure", {}).get("Destination")
        return destination

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            uuid=body["UUID"],
            function_arn=body["FunctionArn"],
            event_source_arn=body["EventSourceArn"],
            starting_position=body["StartingPosition"],
            batch_size=body["BatchSize"],
            maximum_batching_window_in_seconds=body["MaximumBatchingWindowInSeconds"],
            parallelization_factor=body["ParallelizationFactor"],
            bisect_batch_on_function_error=body["BisectBatchOnFunctionError"],
            maximum_retry_attempts=body["MaximumRetryAttempts"],
            maximum_record_age_in_seconds=body["MaximumRecordAgeInSeconds"],
            destination_config=dict(body["DestinationConfig"]),
            function_response_types=list(body["FunctionResponseTypes"]),
            tumbling_window_in_seconds=body["TumblingWindowInSeconds"],
            filter_criteria=dict(body["FilterCriteria"]),
            state=body["State"],
            state_transition_reason=body["StateTransitionReason"],
            last_modified=body["LastModified"],
            consumer_arn=body["ConsumerARN"],
            starting_position_timestamp=body.get("StartingPositionTimestamp"),
        )


@dataclass(frozen=True, slots=True)
class ListEventSourceMappingsResult:
    event_source_mappings: list[EventSourceMapping]
    #: Pass as ``marker`` for the next page; None on the last one.
    next_marker: str | None = None

    @classmethod
    def from_wire(cls, body: Wire) -> Self:
        return cls(
            [EventSourceMapping.from_wire(x) for x in body["EventSourceMappings"]],
            body.get("NextMarker"),
        )


def _mapping(body: dict[str, Any]) -> EventSourceMapping:
    return EventSourceMapping.from_wire(body)


class EventSourceMappings:
    """The mapping operations of ``Client`` (a mixin over its ``call``)."""

    if TYPE_CHECKING:

        async def call(
            self,
            operation: str,
            request: dict[str, Any] | None = None,
            *,
            timeout: float | None = None,
        ) -> dict[str, Any]: ...

    async def _mapping_call(self, operation: str, request: dict[str, Any]) -> EventSourceMapping:
        # Imported here: ``client`` imports this module for ``Client``'s bases.
        from .client import parse_response

        return parse_response(operation, _mapping, await self.call(operation, request))

    async def create_event_source_mapping(
        self, function_name: str, event_source_arn: str, **params: Any
    ) -> EventSourceMapping:
        """Attach ``function_name`` (a target) to a stream ARN or name, or a consumer ARN.

        ``starting_position`` is required. A mapping on a stream registers its
        own consumer, which counts toward the stream's consumer limit.
        """
        request = mapping_request(**params)
        request["FunctionName"] = function_name
        request["EventSourceArn"] = event_source_arn
        return await self._mapping_call("CreateEventSourceMapping", request)

    async def update_event_source_mapping(
        self, uuid: str, *, function_name: str | None = None, **params: Any
    ) -> EventSourceMapping:
        """Change a mapping; the result is validated as a whole (e.g. tumbling windows
        need ``parallelization_factor`` 1). ``starting_position`` cannot change."""
        request = mapping_request(**params)
        request["UUID"] = uuid
        if function_name is not None:
            request["FunctionName"] = function_name
        return await self._mapping_call("UpdateEventSourceMapping", request)

    async def delete_event_source_mapping(self, uuid: str) -> EventSourceMapping:
        """Delete a mapping (and the consumer it registered); answered ``Deleting``."""
        return await self._mapping_call("DeleteEventSourceMapping", {"UUID": uuid})

    async def get_event_source_mapping(self, uuid: str) -> EventSourceMapping:
        return await self._mapping_call("GetEventSourceMapping", {"UUID": uuid})

    async def list_event_source_mappings(
        self,
        event_source_arn: str | None = None,
        function_name: str | None = None,
        marker: str | None = None,
        max_items: int | None = None,
    ) -> ListEventSourceMappingsResult:
        from .client import parse_response

        request: dict[str, Any] = {
            name: value
            for name, value in (
                ("EventSourceArn", event_source_arn),
                ("FunctionName", function_name),
                ("Marker", marker),
                ("MaxItems", max_items),
            )
            if value is not None
        }
        body = await self.call("ListEventSourceMappings", request)
        return parse_response(
            "ListEventSourceMappings", ListEventSourceMappingsResult.from_wire, body
        )

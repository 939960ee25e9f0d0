"""The error tree: every error has its Kinesis wire name, HTTP status and retriable flag."""

from __future__ import annotations

import inspect

import msgpack
import pytest

from broker import errors
from broker.errors import ShardlineError

#: class name -> (wire name, HTTP status, retriable), as DESIGN's error contract says.
EXPECTED = {
    "ShardlineError": ("InternalFailureException", 500, False),
    "InternalFailureError": ("InternalFailureException", 500, True),
    "StorageFullError": ("InternalFailureException", 500, False),
    "CorruptBatchError": ("InternalFailureException", 500, False),
    "DataDirectoryLockedError": ("ResourceInUseException", 400, False),
    "SerializationError": ("SerializationException", 400, False),
    "RequestTooLargeError": ("ValidationException", 413, False),
    "HeaderListTooLargeError": ("ValidationException", 431, False),
    "NotFoundError": ("NotFoundException", 404, False),
    "MethodNotAllowedError": ("MethodNotAllowedException", 405, False),
    "UnrecognizedClientError": ("UnrecognizedClientException", 400, False),
    "InvalidSignatureError": ("InvalidSignatureException", 400, False),
    "UnknownOperationError": ("UnknownOperationException", 400, False),
    "ResourceNotFoundError": ("ResourceNotFoundException", 400, False),
    "ResourceInUseError": ("ResourceInUseException", 400, False),
    "InvalidArgumentError": ("InvalidArgumentException", 400, False),
    "ValidationError": ("ValidationException", 400, False),
    "LimitExceededError": ("LimitExceededException", 400, True),
    "ProvisionedThroughputExceededError": ("ProvisionedThroughputExceededException", 400, True),
    "ExpiredIteratorError": ("ExpiredIteratorException", 400, False),
    "ExpiredNextTokenError": ("ExpiredNextTokenException", 400, False),
    "ShardClosedError": ("ResourceInUseException", 400, True),
    "LeaseLostError": ("LeaseLostException", 400, False),
    "UnknownProducerIdError": ("UnknownProducerIdException", 400, False),
    "OutOfOrderBatchError": ("OutOfOrderBatchException", 400, False),
    "ShardMismatchError": ("ShardMismatchException", 400, True),
    "InvalidParameterValueError": ("InvalidParameterValueException", 400, False),
    "ResourceConflictError": ("ResourceConflictException", 400, False),
}


def _error_classes() -> dict[str, type[ShardlineError]]:
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, ShardlineError) and cls.__module__ == errors.__name__
    }


def test_every_error_class_is_in_the_table() -> None:
    # A new error class must be given its wire name, status and retriable flag here.
    assert set(_error_classes()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_wire_name_status_and_retriable(name: str) -> None:
    cls = _error_classes()[name]
    wire_name, status, retriable = EXPECTED[name]
    assert cls.wire_name == wire_name
    assert cls.http_status == status
    assert cls.retriable is retriable
    error = cls("something went wrong")
    # The instance carries the same attributes (class variables, not per-instance state).
    assert (error.wire_name, error.http_status, error.retriable) == (wire_name, status, retriable)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_to_body_shape(name: str) -> None:
    cls = _error_classes()[name]
    error = cls("Stream orders not found")
    body = error.to_body()
    assert body == {"__type": EXPECTED[name][0], "message": "Stream orders not found"}
    assert msgpack.unpackb(msgpack.packb(body)) == body
    assert str(error) == error.message == "Stream orders not found"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_is_catchable_as_shardline_error(name: str) -> None:
    cls = _error_classes()[name]
    with pytest.raises(ShardlineError) as info:
        raise cls("boom")
    assert info.value.to_body()["__type"] == cls.wire_name


#: Errors of the HTTP edge (a path, a method, a body size), not of an operation.
HTTP_LEVEL = {
    "NotFoundError": 404,
    "MethodNotAllowedError": 405,
    "RequestTooLargeError": 413,
    "HeaderListTooLargeError": 431,
}


def test_status_500_only_for_internal_failures() -> None:
    for name, cls in _error_classes().items():
        internal = issubclass(cls, errors.InternalFailureError) or cls is ShardlineError
        expected = 500 if internal else HTTP_LEVEL.get(name, 400)
        assert cls.http_status == expected, name
        assert cls.wire_name.endswith("Exception"), name


def test_subclasses_keep_their_parents_meaning() -> None:
    # Code that catches the parent still catches these (e.g. a closed shard is "in use").
    assert issubclass(errors.ShardClosedError, errors.ResourceInUseError)
    assert issubclass(errors.StorageFullError, errors.InternalFailureError)
    assert issubclass(errors.CorruptBatchError, errors.InternalFailureError)

"""The broker's error tree.

Every error a client can see has a Kinesis-style wire name (``__type`` in an
error body), an HTTP status and a ``retriable`` flag. Exceptions from trio, h2,
lmdb and msgpack never leave the layer that called them: they are mapped to one
of these at the edge.
"""

from __future__ import annotations

from typing import ClassVar


class ShardlineError(Exception):
    """Base of every error the broker reports by name."""

    wire_name: ClassVar[str] = "InternalFailureException"
    http_status: ClassVar[int] = 500
    retriable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, str]:
        """The error as the wire body ``{"__type": ..., "message": ...}``."""
        return {"__type": self.wire_name, "message": self.message}


class InternalFailureError(ShardlineError):
    """A failure of the broker itself, not of the request."""

    wire_name = "InternalFailureException"
    http_status = 500
    retriable = True


class StorageFullError(InternalFailureError):
    """The disk is full or the LMDB map reached its configured cap."""

    retriable = False


class CorruptBatchError(InternalFailureError):
    """A stored batch failed its checksum or could not be decoded."""

    retriable = False


class SerializationError(ShardlineError):
    """The request body could not be decoded (not msgpack, or not a map)."""

    wire_name = "SerializationException"
    http_status = 400


class UnknownOperationError(ShardlineError):
    wire_name = "UnknownOperationException"
    http_status = 400


class ResourceNotFoundError(ShardlineError):
    wire_name = "ResourceNotFoundException"
    http_status = 400


class ResourceInUseError(ShardlineError):
    wire_name = "ResourceInUseException"
    http_status = 400


class DataDirectoryLockedError(ResourceInUseError):
    """Another process has the data directory open."""


class InvalidArgumentError(ShardlineError):
    wire_name = "InvalidArgumentException"
    http_status = 400


class ValidationError(ShardlineError):
    wire_name = "ValidationException"
    http_status = 400


class RequestTooLargeError(ValidationError):
    """The request body is larger than the server's ``max_body_bytes``; the rest is not read."""

    http_status = 413


class HeaderListTooLargeError(ValidationError):
    """The request's header list is over ``max_header_bytes`` (RFC 9113 §10.5.1: 431)."""

    http_status = 431


class NotFoundError(ShardlineError):
    """No resource at this HTTP path."""

    wire_name = "NotFoundException"
    http_status = 404


class MethodNotAllowedError(ShardlineError):
    """The path exists, but not for this HTTP method."""

    wire_name = "MethodNotAllowedException"
    http_status = 405


class UnrecognizedClientError(ShardlineError):
    """AWS wire, access keys configured: the request is unsigned, or its access key id is unknown.

    AWS's name and message (``broker/protocol/sigv4.py``).
    """

    wire_name = "UnrecognizedClientException"
    http_status = 400

    def __init__(
        self, message: str = "The security token included in the request is invalid."
    ) -> None:
        super().__init__(message)


class InvalidSignatureError(ShardlineError):
    """AWS wire, access keys configured: a SigV4 signature that does not verify.

    A wrong signature, a malformed ``Authorization`` header, or a request time
    more than 5 minutes off the broker's clock (``broker/protocol/sigv4.py``).
    """

    wire_name = "InvalidSignatureException"
    http_status = 400

    def __init__(
        self,
        message: str = (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details."
        ),
    ) -> None:
        super().__init__(message)


class InvalidParameterValueError(ShardlineError):
    """A parameter of an event source mapping is out of its range or malformed (Lambda's name).

    The message names the parameter and says why; nothing was changed.
    """

    wire_name = "InvalidParameterValueException"
    http_status = 400


class ResourceConflictError(ShardlineError):
    """The change conflicts with an existing resource (Lambda's name).

    E.g. a second event source mapping of one function on one event source.
    """

    wire_name = "ResourceConflictException"
    http_status = 400


class LimitExceededError(ShardlineError):
    wire_name = "LimitExceededException"
    http_status = 400
    retriable = True


class ProvisionedThroughputExceededError(ShardlineError):
    wire_name = "ProvisionedThroughputExceededException"
    http_status = 400
    retriable = True


class ExpiredIteratorError(ShardlineError):
    wire_name = "ExpiredIteratorException"
    http_status = 400


class ExpiredNextTokenError(ShardlineError):
    wire_name = "ExpiredNextTokenException"
    http_status = 400


class ShardClosedError(ResourceInUseError):
    """An append reached a shard that a reshard closed after it was routed.

    Retriable: route again with the current shard map and append to the child.
    """

    retriable = True


class LeaseLostError(ShardlineError):
    """A checkpoint or lease change carried a lease counter that is no longer current.

    Another owner took the lease since (fencing): the caller must stop
    processing the shard.
    """

    wire_name = "LeaseLostException"
    http_status = 400


class UnknownProducerIdError(ShardlineError):
    """An idempotent batch named a producer id the broker never gave out, or one that expired.

    Not retriable as it is: the client calls ``InitProducer`` again and numbers
    its batches afresh under the new id.
    """

    wire_name = "UnknownProducerIdException"
    http_status = 400


class OutOfOrderBatchError(ShardlineError):
    """An idempotent batch's number is neither the next one nor a retry of the last one.

    (Or it repeats the last number with another record count.) A client bug or
    lost client state: resending the same request cannot succeed.
    """

    wire_name = "OutOfOrderBatchException"
    http_status = 400


class ShardMismatchError(ShardlineError):
    """An idempotent batch's records do not all route to its ``ShardId``, or that shard is closed.

    Retriable once the client has refreshed its shard map and routed the
    records again (as ``ShardClosedError``); nothing of the batch was written
    and its number was not used.
    """

    wire_name = "ShardMismatchException"
    http_status = 400
    retriable = True

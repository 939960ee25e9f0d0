"""The broker's async client: ``Client`` over one multiplexed HTTP/2 connection."""

from __future__ import annotations

from .client import Client, error_class, kinesis_field, kinesis_request
from .transport import ConnectionLostError, RequestTimeoutError

__all__ = [
    "Client",
    "ConnectionLostError",
    "RequestTimeoutError",
    "error_class",
    "kinesis_field",
    "kinesis_request",
]

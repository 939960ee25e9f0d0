"""The operation table: one handler per operation, named as in Kinesis.

A handler takes the ``Broker`` (the state: the log, the settings, the
iterator codec) and the decoded request (a dict with Kinesis field names) and
returns the response dict, or raises a ``ShardlineError``. Handlers know
nothing of the wire: the native msgpack codec and, later, the AWS JSON/CBOR
codecs call the same ``dispatch``.
"""

from __future__ import annotations

from . import (
    consumers,
    coordination,
    mappings,
    producers,
    reads,
    resharding,
    stream_settings,
    streams,
    subscribe,
    tags,
    writes,
)
from .base import (
    OPERATIONS,
    Broker,
    Handler,
    Prepared,
    Result,
    Streamed,
    as_dict,
    dispatch,
    open_broker,
    operation,
)

#: The modules whose import fills ``OPERATIONS``.
HANDLER_MODULES = (
    streams,
    resharding,
    writes,
    producers,
    reads,
    coordination,
    consumers,
    subscribe,
    mappings,
    tags,
    stream_settings,
)

__all__ = [
    "HANDLER_MODULES",
    "OPERATIONS",
    "Broker",
    "Handler",
    "Prepared",
    "Result",
    "Streamed",
    "as_dict",
    "dispatch",
    "open_broker",
    "operation",
]

"""The native wire's bodies: msgpack maps with Kinesis field names.

A request is ``POST /v1/<Operation>`` with ``content-type: application/msgpack``
and a body that is one msgpack map; a success answers HTTP 200 with one msgpack
map; a failure answers the error's HTTP status (400, or 500 for an internal
failure) with the map ``{"__type": "<Name>", "message": "..."}``. Binary data
(``Data``) is msgpack bin; sequence numbers are decimal strings; times are
integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

from typing import Any

import msgpack
import ormsgpack

from ..errors import SerializationError, ShardlineError
from ..operations.base import Prepared

CONTENT_TYPE = "application/msgpack"


def decode_body(body: bytes) -> Any:
    """One msgpack value from a request body; ``SerializationError`` if it is not one.

    The server bounds the body's size before it gets here. Two passes:
    msgpack's ``skip`` walks the value without building objects (about
    15 ns per record of a PutRecords body), which proves the body is exactly
    one well-formed value, bounds every length by the body's, and finds
    trailing bytes; then ormsgpack builds the objects. ormsgpack caches map
    keys and is about twice as fast as msgpack's ``unpackb`` on a body of 500
    small maps, but it ignores trailing bytes, hence the first pass. Map keys
    must be strings.
    """
    if not body:
        return {}
    try:
        walker = msgpack.Unpacker(max_buffer_size=len(body))
        walker.feed(body)
        walker.skip()
        if walker.tell() != len(body):
            raise SerializationError(
                f"the request body has {len(body) - walker.tell()} bytes after its msgpack value"
            )
        return ormsgpack.unpackb(body)
    except (ValueError, msgpack.UnpackException) as exc:
        raise SerializationError(
            f"the request body is not one valid msgpack value: {exc or type(exc).__name__}"
        ) from exc


def encode_body(value: Any) -> bytes:
    """A response body; a ``Prepared`` result packs itself when it knows how."""
    if isinstance(value, Prepared):
        body = value.native_body()
        return body if body is not None else encode_body(value.to_dict())
    return ormsgpack.packb(value)


def error_body(error: ShardlineError) -> bytes:
    return encode_body(error.to_body())

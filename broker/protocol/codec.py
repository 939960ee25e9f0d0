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

from ..errors import SerializationError, ShardlineError

CONTENT_TYPE = "application/msgpack"


def decode_body(body: bytes) -> Any:
    """One msgpack value from a request body; ``SerializationError`` if it is not one.

    The server bounds the body's size before it gets here; msgpack bounds every
    string, bin, array and map by the body's length.
    """
    if not body:
        return {}
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            strict_map_key=True,
        )
    except (ValueError, msgpack.UnpackException) as exc:
        raise SerializationError(
            f"the request body is not one valid msgpack value: {exc or type(exc).__name__}"
        ) from exc


def encode_body(value: Any) -> bytes:
    return msgpack.packb(value)  # type: ignore[no-any-return]


def error_body(error: ShardlineError) -> bytes:
    return encode_body(error.to_body())

"""Routing: a request's method, path and body to a response; no h2, no sockets.

``POST /v1/<Operation>`` decodes the msgpack body and dispatches to the
operation table; ``GET /healthz`` and ``GET /metrics`` serve the plain-text
endpoints. Every failure is a named error body (``{"__type", "message"}``);
an unexpected exception in a handler is logged and answered 500
``InternalFailureException``. The HTTP/2 connection (and later the HTTP/1.1
one) calls ``route`` with a complete body.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..errors import (
    InternalFailureError,
    MethodNotAllowedError,
    NotFoundError,
    ShardlineError,
)
from ..operations import Broker, Streamed, dispatch
from ..protocol.codec import CONTENT_TYPE, decode_body, encode_body, error_body
from . import metrics as metrics_module
from .metrics import ServerMetrics

logger = logging.getLogger(__name__)

OPERATION_PREFIX = "/v1/"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str
    body: bytes
    #: A body produced over time instead of ``body`` (SubscribeToShard).
    streamed: Streamed | None = None


def error_response(error: ShardlineError) -> Response:
    return Response(error.http_status, CONTENT_TYPE, error_body(error))


def operation_name(path: str) -> str:
    """The operation of a ``/v1/<Operation>`` path ('' if the path is not one)."""
    if not path.startswith(OPERATION_PREFIX):
        return ""
    name = path[len(OPERATION_PREFIX) :].split("?", 1)[0]
    return name if name.isidentifier() else ""


async def route(
    broker: Broker, metrics: ServerMetrics, method: str, path: str, body: bytes
) -> Response:
    """Answer one complete request; never raises ``Exception``."""
    name = operation_name(path)
    if name:
        return await _operation(broker, metrics, method, name, body)
    bare = path.split("?", 1)[0]
    if bare == "/healthz":
        if method not in ("GET", "HEAD"):
            return error_response(MethodNotAllowedError(f"{bare} answers GET only"))
        return Response(200, "text/plain; charset=utf-8", b"ok\n")
    if bare == "/metrics":
        if method not in ("GET", "HEAD"):
            return error_response(MethodNotAllowedError(f"{bare} answers GET only"))
        text = metrics.render()
        hub = broker.extras.get("fanout")
        if hub is not None:
            text += hub.metrics_text()
        return Response(200, metrics_module.CONTENT_TYPE, text.encode())
    metrics.count_request("", NotFoundError.wire_name)
    return error_response(
        NotFoundError(f"no resource at {bare!r}: operations are POST /v1/<Operation>")
    )


async def _operation(
    broker: Broker, metrics: ServerMetrics, method: str, name: str, body: bytes
) -> Response:
    if method != "POST":
        metrics.count_request(name, MethodNotAllowedError.wire_name)
        return error_response(MethodNotAllowedError(f"operations answer POST only, not {method}"))
    started = time.perf_counter()
    try:
        request = decode_body(body)
        result = await dispatch(broker, name, request)
        if isinstance(result, Streamed):
            metrics.count_success(name, time.perf_counter() - started, len(body), {}, 0)
            return Response(200, result.content_type, b"", result)
        payload = encode_body(result)
    except ShardlineError as exc:
        metrics.count_request(name, exc.wire_name)
        return error_response(exc)
    except Exception:
        logger.exception("operation %s failed unexpectedly", name)
        failure = InternalFailureError(f"{name} failed unexpectedly")
        metrics.count_request(name, failure.wire_name)
        return error_response(failure)
    metrics.count_success(name, time.perf_counter() - started, len(body), result, len(payload))
    return Response(200, CONTENT_TYPE, payload)


__all__ = [
    "Response",
    "error_response",
    "operation_name",
    "route",
]

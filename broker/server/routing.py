"""Routing: a request's method, path and body to a response; no h2, no sockets.

``POST /v1/<Operation>`` decodes the msgpack body and dispatches to the
operation table; ``GET /healthz`` and ``GET /metrics`` serve the plain-text
endpoints. Every failure is a named error body (``{"__type", "message"}``);
an unexpected exception in a handler is logged and answered 500
``InternalFailureException``. The HTTP/2 and HTTP/1.1 connections call
``route`` with a complete body, or ``early_error`` for a request they refuse
before it is whole (too large, headers too long).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import (
    InternalFailureError,
    MethodNotAllowedError,
    NotFoundError,
    ShardlineError,
)
from ..operations import Broker, Result, Streamed, dispatch
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
    #: More response headers (lower-case names), after status, type and length.
    headers: tuple[tuple[str, str], ...] = ()


def error_response(error: ShardlineError) -> Response:
    return Response(error.http_status, CONTENT_TYPE, error_body(error))


def early_error(headers: Mapping[str, str], error: ShardlineError) -> Response:
    """``error`` answered before routing, in the wire the request's headers name.

    An AWS client (``X-Amz-Target``) gets an AWS error body it can parse; any
    other request the native one.
    """
    if "x-amz-target" in headers:
        from . import aws

        return aws.AwsWire.for_request(headers).error(error)
    return error_response(error)


def operation_name(path: str) -> str:
    """The operation of a ``/v1/<Operation>`` path ('' if the path is not one)."""
    if not path.startswith(OPERATION_PREFIX):
        return ""
    name = path[len(OPERATION_PREFIX) :].split("?", 1)[0]
    return name if name.isidentifier() else ""


class Wire:
    """How one wire reads a request body and writes answers; ``route`` does the rest.

    The native wire (this class) is msgpack; ``broker.server.aws.AwsWire`` is
    AWS's JSON/CBOR. Both feed the same operation table through ``operation``.
    """

    def decode(self, body: bytes) -> object:
        return decode_body(body)

    def answer(self, result: Result) -> Response:
        """A handler's (non-streamed) result as the success response."""
        return Response(200, CONTENT_TYPE, encode_body(result))

    def stream(self, result: Streamed) -> Response:
        return Response(200, result.content_type, b"", result)

    def error(self, error: ShardlineError) -> Response:
        return error_response(error)


NATIVE = Wire()


async def route(
    broker: Broker,
    metrics: ServerMetrics,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Answer one complete request; never raises ``Exception``.

    ``headers`` are the request's, names lower-case (the HTTP/2 and HTTP/1.1
    connections give them). A request with ``X-Amz-Target`` is AWS's wire
    (``broker.server.aws``); ``/v1/<Operation>`` the native one.
    """
    if headers and "x-amz-target" in headers:
        from . import aws  # the AWS wire builds on this module

        return await aws.route(broker, metrics, method, path, body, headers)
    name = operation_name(path)
    if name:
        return await operation(broker, metrics, method, name, body, NATIVE)
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


async def operation(
    broker: Broker,
    metrics: ServerMetrics,
    method: str,
    name: str,
    body: bytes,
    wire: Wire,
) -> Response:
    """Run operation ``name`` on ``body`` read and answered by ``wire``; counts it."""
    if method != "POST":
        metrics.count_request(name, MethodNotAllowedError.wire_name)
        return wire.error(MethodNotAllowedError(f"operations answer POST only, not {method}"))
    started = time.perf_counter()
    try:
        request = wire.decode(body)
        result = await dispatch(broker, name, request)
        if isinstance(result, Streamed):
            metrics.count_success(name, time.perf_counter() - started, len(body), {}, 0)
            return wire.stream(result)
        response = wire.answer(result)
    except ShardlineError as exc:
        metrics.count_request(name, exc.wire_name)
        return wire.error(exc)
    except Exception:
        logger.exception("operation %s failed unexpectedly", name)
        failure = InternalFailureError(f"{name} failed unexpectedly")
        metrics.count_request(name, failure.wire_name)
        return wire.error(failure)
    metrics.count_success(
        name, time.perf_counter() - started, len(body), result, len(response.body)
    )
    return response


__all__ = [
    "NATIVE",
    "Response",
    "Wire",
    "early_error",
    "error_response",
    "operation",
    "operation_name",
    "route",
]

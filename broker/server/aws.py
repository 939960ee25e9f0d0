"""The AWS wire on the broker's port: ``POST /`` with ``X-Amz-Target: Kinesis_20131202.<Op>``.

``routing.route`` hands a request here when it carries ``X-Amz-Target``
(over HTTP/2 or HTTP/1.1 alike). The target names the operation, the
``content-type`` the codec (``broker.protocol.aws``: JSON 1.1, or CBOR 1.1
for the Java SDKs); the request then runs through ``routing.operation`` over
the same operation table as the native wire, only read and answered by
``AwsWire``. Every answer carries ``x-amzn-RequestId`` (a fresh UUID) and
``Date``, as AWS's do; errors are ``{"__type", "message"}`` in the request's
codec. With access keys configured (``aws_access_keys``), the request's SigV4
signature is verified before anything else (``broker.protocol.sigv4``);
without, any credentials are accepted, as the emulators do.

SubscribeToShard answers ``application/vnd.amazon.eventstream``: the native
subscription's push events translated into AWS's event-stream messages as
they are sent (``broker.fanout.aws``), after the ``initial-response`` event
that botocore requires.
"""

from __future__ import annotations

import email.utils
import uuid
from collections.abc import Mapping

from ..errors import ShardlineError, UnknownOperationError
from ..operations import Broker, Result, Streamed, as_dict
from ..protocol import aws as codecs
from ..protocol import sigv4
from .metrics import ServerMetrics
from .routing import Response, Wire, operation


class AwsWire(Wire):
    """One AWS request's wire: its codec, and the request id its answers carry."""

    def __init__(self, codec: codecs.Codec) -> None:
        self.codec = codec
        # The Date lets an SDK correct its clock after a "Signature expired" (the Java SDK does).
        self.headers = (
            ("x-amzn-requestid", str(uuid.uuid4())),
            ("date", email.utils.formatdate(usegmt=True)),
        )

    @classmethod
    def for_request(cls, headers: Mapping[str, str]) -> AwsWire:
        return cls(codecs.codec_for(headers.get("content-type", "")))

    def decode(self, body: bytes) -> object:
        return self.codec.decode_request(body)

    def answer(self, result: Result) -> Response:
        body = self.codec.encode_response(as_dict(result))
        return Response(200, self.codec.content_type, body, headers=self.headers)

    def stream(self, result: Streamed) -> Response:
        from ..fanout.aws import AwsEventStream

        events = AwsEventStream(result, self.codec)
        return Response(200, events.content_type, b"", events, headers=self.headers)

    def error(self, error: ShardlineError) -> Response:
        return Response(
            error.http_status,
            self.codec.content_type,
            self.codec.encode_error(error),
            headers=self.headers,
        )


async def route(
    broker: Broker,
    metrics: ServerMetrics,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
) -> Response:
    """Answer one AWS request; never raises ``Exception``.

    The signature is checked first (when access keys are configured): an
    unsigned caller learns nothing, not even which operations exist.
    """
    wire = AwsWire.for_request(headers)
    try:
        sigv4.verify_request(broker.config.aws_access_keys, method, path, headers, body)
    except ShardlineError as exc:
        metrics.count_request("", exc.wire_name)
        return wire.error(exc)
    target = headers.get("x-amz-target", "")
    name = codecs.operation_of(target)
    if not name:
        metrics.count_request("", UnknownOperationError.wire_name)
        return wire.error(UnknownOperationError(f"Unknown operation target {target[:128]!r}"))
    return await operation(broker, metrics, method, name, body, wire)


__all__ = ["AwsWire", "route"]

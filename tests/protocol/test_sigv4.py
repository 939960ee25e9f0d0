"""SigV4 verification against botocore's own signer: what it signs is accepted, any change is not.

Requests are signed by ``botocore.auth.SigV4Auth`` (the signer boto3 and the
AWS CLI use) at a fixed time, and handed to the verifier as a server would see
them: the request target as sent, lower-case header names (plus the ``Host``
that urllib3 adds), the body. One test sends boto3's requests over a real
socket to a capturing HTTP server and verifies what arrived.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st

from broker.config import BrokerConfig
from broker.errors import InvalidSignatureError, UnrecognizedClientError
from broker.protocol.sigv4 import (
    SignatureMismatchError,
    canonical_query,
    canonical_uri,
    parse_authorization,
    request_time,
    verify_request,
)

KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
KEYS = {KEY_ID: SECRET, "AKIDOTHER": "another secret"}
ENDPOINT = "http://127.0.0.1:4567"
#: botocore's signing time in these tests (naive UTC, as botocore's clock gives it).
SIGNED_AT = datetime(2024, 5, 1, 12, 0, 0)
NOW = SIGNED_AT.replace(tzinfo=UTC).timestamp()
KINESIS_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "Kinesis_20131202.PutRecord",
}
BODY = b'{"StreamName":"orders","Data":"AAEC","PartitionKey":"k"}'

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
INVALID_TOKEN = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Wire:
    """A request as the server hands it to the verifier."""

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def with_headers(self, **changes: str | None) -> Wire:
        headers = dict(self.headers)
        for name, value in changes.items():
            name = name.replace("_", "-")
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        return dataclasses.replace(self, headers=headers)


def sign(
    url: str = ENDPOINT + "/",
    *,
    method: str = "POST",
    headers: Mapping[str, str] | None = None,
    body: bytes = BODY,
    params: Mapping[str, str] | None = None,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    token: str | None = None,
    region: str = "us-east-1",
    service: str = "kinesis",
    at: datetime = SIGNED_AT,
    context: Mapping[str, Any] | None = None,
    signer: type[SigV4Auth] = SigV4Auth,
) -> Wire:
    """Sign with botocore at ``at``, then take the request apart as the wire carries it."""
    request = AWSRequest(
        method=method,
        url=url,
        headers=dict(KINESIS_HEADERS if headers is None else headers),
        data=body,
        params=dict(params or {}),
    )
    request.context.update(context or {})
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=at):
        signer(Credentials(key_id, secret, token), service, region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    wire_headers = {
        name.lower(): value.decode("latin-1") if isinstance(value, bytes) else value
        for name, value in prepared.headers.items()
    }
    wire_headers.setdefault("host", parts.netloc)  # urllib3 adds it when it sends
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    prepared_body = prepared.body or b""
    assert isinstance(prepared_body, bytes)
    return Wire(prepared.method, target, wire_headers, prepared_body)


def verify(
    wire: Wire, keys: Mapping[str, str] = KEYS, now: float = NOW, **options: Any
) -> str | None:
    return verify_request(keys, wire.method, wire.path, wire.headers, wire.body, now, **options)


def test_what_botocore_signs_is_accepted_and_names_its_key() -> None:
    wire = sign()
    assert wire.headers["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/kinesis/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
    )
    assert verify(wire) == KEY_ID
    assert verify(sign(key_id="AKIDOTHER", secret="another secret")) == "AKIDOTHER"


def _flip_body_byte(wire: Wire) -> Wire:
    return dataclasses.replace(wire, body=wire.body[:5] + b"X" + wire.body[6:])


def _flip_signature(wire: Wire) -> Wire:
    value = wire.headers["authorization"]
    last = "0" if value[-1] != "0" else "1"
    return wire.with_headers(authorization=value[:-1] + last)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_flip_body_byte, id="body byte"),
        pytest.param(
            lambda w: w.with_headers(x_amz_target="Kinesis_20131202.DeleteStream"),
            id="signed header value",
        ),
        pytest.param(lambda w: w.with_headers(host="127.0.0.1:4568"), id="host"),
        pytest.param(lambda w: dataclasses.replace(w, path="/other"), id="path"),
        pytest.param(lambda w: dataclasses.replace(w, path="/?a=1"), id="query added"),
        pytest.param(lambda w: dataclasses.replace(w, method="PUT"), id="method"),
        pytest.param(lambda w: w.with_headers(x_amz_date="20240501T120001Z"), id="date"),
        pytest.param(_flip_signature, id="signature"),
    ],
)
def test_each_change_after_signing_is_a_signature_mismatch(tamper: Any) -> None:
    wire = sign()
    assert verify(wire) == KEY_ID
    with pytest.raises(SignatureMismatchError) as caught:
        verify(tamper(wire))
    error = caught.value
    assert isinstance(error, InvalidSignatureError)
    assert error.to_body() == {"__type": "InvalidSignatureException", "message": MISMATCH}
    assert error.http_status == 400
    assert error.canonical_request.startswith(tamper(wire).method)
    assert error.string_to_sign.startswith("AWS4-HMAC-SHA256\n20240501T12000")


def test_a_wrong_secret_is_a_signature_mismatch() -> None:
    with pytest.raises(SignatureMismatchError):
        verify(sign(secret="not the secret"))


def test_an_unknown_access_key_id_is_an_unrecognized_client() -> None:
    with pytest.raises(UnrecognizedClientError) as caught:
        verify(sign(key_id="AKIDUNKNOWN"))
    assert caught.value.to_body() == {
        "__type": "UnrecognizedClientException",
        "message": INVALID_TOKEN,
    }
    assert caught.value.http_status == 400


def test_an_access_key_id_changed_in_the_header_is_refused() -> None:
    wire = sign()
    swapped = wire.headers["authorization"].replace(KEY_ID, "AKIDOTHER")
    with pytest.raises(SignatureMismatchError):
        verify(wire.with_headers(authorization=swapped))


@pytest.mark.parametrize("age_s", [-300, -240, 0, 240, 300])
def test_requests_within_five_minutes_of_the_clock_are_accepted(age_s: int) -> None:
    assert verify(sign(), now=NOW + age_s) == KEY_ID


def test_a_request_signed_six_minutes_ago_has_expired() -> None:
    with pytest.raises(InvalidSignatureError) as caught:
        verify(sign(), now=NOW + 360)
    assert not isinstance(caught.value, SignatureMismatchError)
    assert caught.value.message == (
        "Signature expired: 20240501T120000Z is now earlier than 20240501T120100Z "
        "(20240501T120600Z - 5 min.)"
    )


def test_a_request_signed_six_minutes_ahead_is_not_yet_current() -> None:
    with pytest.raises(InvalidSignatureError) as caught:
        verify(sign(), now=NOW - 360)
    assert caught.value.message == (
        "Signature not yet current: 20240501T120000Z is still later than 20240501T115900Z "
        "(20240501T115400Z + 5 min.)"
    )


def test_the_credential_date_must_be_the_request_date() -> None:
    # Signed one second before midnight; the date moved to the next day, within the window.
    wire = sign(at=datetime(2024, 5, 1, 23, 59, 59))
    moved = wire.with_headers(x_amz_date="20240502T000001Z")
    with pytest.raises(InvalidSignatureError, match="Date in Credential scope does not match"):
        verify(moved, now=datetime(2024, 5, 2, 0, 0, 0, tzinfo=UTC).timestamp())


def test_odd_spacing_and_case_in_headers_are_canonicalised_as_botocore_does() -> None:
    headers = {
        **KINESIS_HEADERS,
        "X-Custom-HEADER": "  several   spaces\tand  a tab  ",
        "x-MiXeD-cAsE": "Value With Case",
    }
    wire = sign(headers=headers)
    assert "x-custom-header;x-mixed-case" in wire.headers["authorization"]
    assert verify(wire) == KEY_ID
    # An HTTP/1.1 parser strips the value's ends; the canonical value is the same.
    stripped = wire.with_headers(x_custom_header="several   spaces\tand  a tab")
    assert verify(stripped) == KEY_ID
    # Inner whitespace is collapsed, not removed: "severalspaces" is another value.
    with pytest.raises(SignatureMismatchError):
        verify(wire.with_headers(x_custom_header="severalspaces and a tab"))


def test_params_in_the_query_string_are_accepted() -> None:
    params = {"b": "2", "a": "x y", "c": "ü/+*~", "empty": ""}
    wire = sign(params=params)
    assert "?" in wire.path
    assert verify(wire) == KEY_ID
    with pytest.raises(SignatureMismatchError):
        verify(dataclasses.replace(wire, path=wire.path.replace("b=2", "b=3")))


def test_a_query_string_written_into_the_url_is_accepted() -> None:
    wire = sign(ENDPOINT + "/path/to?b=2&a=1&a=0&c=%2F")
    assert wire.path == "/path/to?b=2&a=1&a=0&c=%2F"
    assert verify(wire) == KEY_ID


def test_empty_bodies_are_accepted() -> None:
    assert verify(sign(body=b"")) == KEY_ID
    assert verify(sign(method="GET", headers={}, body=b"")) == KEY_ID


def test_dot_segments_and_empty_segments_are_normalised_as_botocore_does() -> None:
    wire = sign(ENDPOINT + "/a/./b/../c//d%20e/")
    assert wire.path == "/a/./b/../c//d%20e/"
    assert verify(wire) == KEY_ID
    assert canonical_uri("/a/./b/../c//d%20e/") == "/a/c/d%2520e/"


def test_any_region_is_accepted() -> None:
    assert verify(sign(region="eu-west-3")) == KEY_ID
    assert verify(sign(region="local")) == KEY_ID


def test_the_service_must_be_kinesis_unless_widened() -> None:
    wire = sign(service="dynamodb")
    with pytest.raises(InvalidSignatureError) as caught:
        verify(wire)
    assert caught.value.message == "Credential should be scoped to correct service: 'kinesis'."
    assert verify(wire, services={"kinesis", "dynamodb"}) == KEY_ID


def test_session_tokens_are_signed_and_accepted() -> None:
    wire = sign(token="FwoGZXIvYXdzEXAMPLETOKEN")
    assert wire.headers["x-amz-security-token"] == "FwoGZXIvYXdzEXAMPLETOKEN"
    assert "x-amz-security-token" in wire.headers["authorization"]
    assert verify(wire) == KEY_ID
    with pytest.raises(SignatureMismatchError):
        verify(wire.with_headers(x_amz_security_token="another token"))


def test_a_date_header_stands_in_for_x_amz_date() -> None:
    wire = sign(headers={**KINESIS_HEADERS, "Date": "anything"})
    assert "x-amz-date" not in wire.headers
    assert wire.headers["date"] == "Wed, 01 May 2024 12:00:00 -0000"
    assert verify(wire) == KEY_ID
    with pytest.raises(InvalidSignatureError, match="Signature expired"):
        verify(wire, now=NOW + 301)


def test_http2_authority_stands_in_for_host() -> None:
    wire = sign()
    authority = wire.with_headers(host=None, **{":authority": wire.headers["host"]})
    assert verify(authority) == KEY_ID


def test_a_declared_payload_hash_must_match_the_body() -> None:
    declared = hashlib.sha256(BODY).hexdigest()
    wire = sign(headers={**KINESIS_HEADERS, "X-Amz-Content-SHA256": declared})
    assert verify(wire) == KEY_ID
    with pytest.raises(InvalidSignatureError) as caught:
        verify(_flip_body_byte(wire))
    assert caught.value.message == (
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    )


def test_botocore_unsigned_payload_is_accepted_and_streaming_forms_are_not() -> None:
    # botocore's form when an operation turns body signing off over HTTPS.
    wire = sign("https://127.0.0.1:4567/", context={"payload_signing_enabled": False})
    assert wire.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert verify(wire) == KEY_ID
    streaming = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    chunked = sign(headers={**KINESIS_HEADERS, "X-Amz-Content-SHA256": streaming})
    with pytest.raises(InvalidSignatureError, match="is not supported"):
        verify(chunked)


def test_the_operation_header_must_be_signed() -> None:
    wire = sign(headers={"Content-Type": "application/x-amz-json-1.1"})
    assert verify(wire) == KEY_ID
    smuggled = wire.with_headers(x_amz_target="Kinesis_20131202.DeleteStream")
    with pytest.raises(InvalidSignatureError) as caught:
        verify(smuggled)
    assert (
        caught.value.message == "'x-amz-target' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_host_must_be_signed() -> None:
    wire = sign()
    unsigned_host = wire.headers["authorization"].replace(
        "content-type;host;x-amz-date", "content-type;x-amz-date"
    )
    with pytest.raises(InvalidSignatureError, match="'Host' or ':authority' must be"):
        verify(wire.with_headers(authorization=unsigned_host))


def test_a_signed_header_missing_from_the_request_is_refused() -> None:
    with pytest.raises(InvalidSignatureError, match="'content-type' is not in the request"):
        verify(sign().with_headers(content_type=None))


def test_a_request_without_a_date_is_refused() -> None:
    with pytest.raises(InvalidSignatureError, match="either a 'X-Amz-Date' or a 'Date' header"):
        verify(sign().with_headers(x_amz_date=None))
    with pytest.raises(InvalidSignatureError, match="X-Amz-Date must be a UTC time"):
        verify(sign().with_headers(x_amz_date="2024-05-01T12:00:00Z"))
    with pytest.raises(InvalidSignatureError, match="X-Amz-Date must be a UTC time"):
        verify(sign().with_headers(x_amz_date="20241301T120000Z"))


GOOD_SCOPE = "Credential=AKIDEXAMPLE/20240501/us-east-1/kinesis/aws4_request"
GOOD_SIGNATURE = "Signature=" + "ab" * 32


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        ("Basic dXNlcjpwYXNz", "Unsupported AWS 'algorithm': 'Basic'"),
        ("AWS4-ECDSA-P256-SHA256 " + GOOD_SCOPE, "Unsupported AWS 'algorithm'"),
        ("AWS4-HMAC-SHA256", "must be 'AWS4-HMAC-SHA256 Credential=..."),
        (f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, SignedHeaders=host", "requires 'Signature' parameter"),
        (
            f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, SignedHeaders=, {GOOD_SIGNATURE}",
            "requires 'SignedHeaders' parameter",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, {GOOD_SCOPE}, SignedHeaders=host, {GOOD_SIGNATURE}",
            "must be 'AWS4-HMAC-SHA256",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, SignedHeaders=host, {GOOD_SIGNATURE}, Extra=1",
            "must be 'AWS4-HMAC-SHA256",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/kinesis, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "The Credential must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2024-05-01/us-east-1/kinesis/aws4_request, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "The Credential must be",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/kinesis/aws5_request, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "valid terminator: 'aws4_request', not 'aws5_request'",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, SignedHeaders=Host;x-amz-date, {GOOD_SIGNATURE}",
            "SignedHeaders must be distinct lower-case",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, SignedHeaders=host;;x-amz-date, {GOOD_SIGNATURE}",
            "SignedHeaders must be distinct lower-case",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, SignedHeaders=host, Signature={'AB' * 32}",
            "64 lower-case hexadecimal digits",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_SCOPE}, SignedHeaders=host, Signature={'é' * 64}",
            "64 lower-case hexadecimal digits",
        ),
    ],
)
def test_malformed_authorization_headers_are_invalid_signatures(
    authorization: str, message: str
) -> None:
    with pytest.raises(InvalidSignatureError) as caught:
        verify(sign().with_headers(authorization=authorization))
    assert not isinstance(caught.value, SignatureMismatchError)
    assert message in caught.value.message
    assert caught.value.wire_name == "InvalidSignatureException"


def test_parse_authorization_reads_botocore_s_header() -> None:
    parsed = parse_authorization(sign(region="eu-west-1").headers["authorization"])
    assert (parsed.access_key_id, parsed.date, parsed.region, parsed.service) == (
        KEY_ID,
        "20240501",
        "eu-west-1",
        "kinesis",
    )
    assert parsed.header_names == ["content-type", "host", "x-amz-date", "x-amz-target"]
    assert parsed.scope == "20240501/eu-west-1/kinesis/aws4_request"


def test_an_unsigned_request_with_keys_configured_is_an_unrecognized_client() -> None:
    unsigned = sign().with_headers(authorization=None)
    with pytest.raises(UnrecognizedClientError, match=INVALID_TOKEN):
        verify(unsigned)
    with pytest.raises(UnrecognizedClientError):
        verify(Wire("POST", "/", {"host": "127.0.0.1:4567"}, BODY))


def test_presigned_urls_are_refused_with_a_message_that_says_so() -> None:
    wire = sign(signer=SigV4QueryAuth, headers={})
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in wire.path
    assert "authorization" not in wire.headers
    with pytest.raises(InvalidSignatureError, match=r"presigned URL.*not supported"):
        verify(wire)


@pytest.mark.parametrize(
    "wire",
    [
        Wire("POST", "/", {}, BODY),
        Wire("POST", "/", {"authorization": "garbage"}, BODY),
        Wire("POST", "/?X-Amz-Algorithm=x", {}, b""),
    ],
    ids=["unsigned", "garbage authorization", "presigned"],
)
def test_without_keys_anything_is_accepted(wire: Wire) -> None:
    assert verify(wire, keys={}) is None
    assert verify(sign(secret="whatever", key_id="any"), keys={}) is None
    assert verify(sign(), keys={}, now=NOW + 86_400) is None


def test_the_wall_clock_is_used_when_no_clock_is_given() -> None:
    signed_now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    assert verify_request(KEYS, *dataclasses.astuple(sign(at=signed_now))) == KEY_ID
    old = sign(at=signed_now - timedelta(minutes=6))
    with pytest.raises(InvalidSignatureError, match="Signature expired"):
        verify_request(KEYS, *dataclasses.astuple(old))


# Property tests: what botocore signs is accepted; one changed byte or character is refused.

PATH_CHARACTERS = "abcXYZ019-_~!$&'()*+,;=:@%"
segments = st.text(PATH_CHARACTERS + ".", min_size=1, max_size=12).filter(
    lambda segment: segment not in (".", "..")
)
paths = st.builds(
    lambda parts, trailing: "/" + "/".join(parts) + ("/" if parts and trailing else ""),
    st.lists(segments, max_size=5),
    st.booleans(),
)
#: What an HTTP/1.1 parser lets through in a header value: visible ASCII, obs-text, SP, HTAB.
VALUE_CHARACTERS = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0x80, 0x100)]
header_values = st.text(st.sampled_from([*VALUE_CHARACTERS, " ", "\t"]), max_size=40)
query_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)


@given(
    body=st.binary(max_size=2048),
    path=paths,
    value=header_values,
    params=st.dictionaries(query_text.filter(bool), query_text, max_size=4),
)
def test_what_botocore_signs_is_accepted(
    body: bytes, path: str, value: str, params: dict[str, str]
) -> None:
    wire = sign(
        ENDPOINT + path, headers={**KINESIS_HEADERS, "X-Value": value}, body=body, params=params
    )
    # What an HTTP/1.1 parser hands on: the value without leading or trailing SP / HTAB.
    wire = wire.with_headers(x_value=value.strip(" \t"))
    assert verify(wire) == KEY_ID


@given(body=st.binary(min_size=1, max_size=2048), data=st.data())
def test_a_changed_body_byte_is_refused(body: bytes, data: st.DataObject) -> None:
    wire = sign(body=body)
    index = data.draw(st.integers(0, len(body) - 1))
    delta = data.draw(st.integers(1, 255))
    changed = body[:index] + bytes([body[index] ^ delta]) + body[index + 1 :]
    with pytest.raises(SignatureMismatchError):
        verify(dataclasses.replace(wire, body=changed))


@given(path=paths.filter(lambda p: len(p) > 1), data=st.data())
def test_a_changed_path_character_is_refused(path: str, data: st.DataObject) -> None:
    # Paths without dot or empty segments are their own normal form, so any change shows.
    wire = sign(ENDPOINT + path)
    index = data.draw(st.integers(1, len(path) - 1))
    other = data.draw(st.sampled_from(PATH_CHARACTERS + "./").filter(lambda c: c != path[index]))
    changed = path[:index] + other + path[index + 1 :]
    with pytest.raises(SignatureMismatchError):
        verify(dataclasses.replace(wire, path=changed))


@given(value=header_values.filter(lambda v: not v.isspace() and v != ""), data=st.data())
def test_a_changed_header_character_is_refused(value: str, data: st.DataObject) -> None:
    wire = sign(headers={**KINESIS_HEADERS, "X-Value": value})
    visible = [i for i, c in enumerate(value) if not c.isspace()]
    index = data.draw(st.sampled_from(visible))
    other = data.draw(
        st.sampled_from(VALUE_CHARACTERS).filter(lambda c: c != value[index] and not c.isspace())
    )
    changed = value[:index] + other + value[index + 1 :]
    with pytest.raises(SignatureMismatchError):
        verify(wire.with_headers(x_value=changed))


@given(params=st.dictionaries(query_text.filter(bool), query_text, min_size=1, max_size=4))
def test_query_canonical_form_is_botocore_s(params: dict[str, str]) -> None:
    request = AWSRequest(method="GET", url=ENDPOINT + "/", params=params)
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "kinesis", "us-east-1")
    query = urlsplit(request.prepare().url).query
    assert canonical_query(query) == signer.canonical_query_string(request)


# boto3 over a real socket: what arrives at a server verifies.


class _Capture(http.server.BaseHTTPRequestHandler):
    """Records each request as the verifier would get it and answers a Kinesis-shaped 200."""

    captured: list[Wire]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers: dict[str, str] = {}
        for name, value in self.headers.items():  # decoded as ISO-8859-1 by http.client
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        self.server.captured.append(Wire(self.command, self.path, headers, body))  # type: ignore[attr-defined]
        answer = json.dumps(
            {"ShardId": "shardId-000000000000", "SequenceNumber": "1", "StreamNames": []}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def capture_server() -> Iterator[tuple[str, list[Wire]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    captured: list[Wire] = []
    server.captured = captured  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", captured
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _kinesis(endpoint: str, key_id: str, secret: str, token: str | None = None) -> Any:
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="eu-central-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        aws_session_token=token,
        config=Config(retries={"max_attempts": 1}),
    )


def test_boto3_requests_verify_as_they_arrive_over_a_socket(
    capture_server: tuple[str, list[Wire]],
) -> None:
    endpoint, captured = capture_server
    client = _kinesis(endpoint, KEY_ID, SECRET, token="session-token")
    client.put_record(StreamName="orders", Data=bytes(range(256)), PartitionKey="ü key")
    client.list_streams()
    _kinesis(endpoint, KEY_ID, "wrong secret").list_streams()
    _kinesis(endpoint, "AKIDUNKNOWN", SECRET).list_streams()
    assert len(captured) == 4
    put, listed, wrong_secret, unknown = captured
    assert put.headers["x-amz-target"] == "Kinesis_20131202.PutRecord"
    assert put.path == "/"
    assert verify_request(KEYS, put.method, put.path, put.headers, put.body) == KEY_ID
    assert verify_request(KEYS, listed.method, listed.path, listed.headers, listed.body) == KEY_ID
    with pytest.raises(SignatureMismatchError):
        verify_request(
            KEYS, wrong_secret.method, wrong_secret.path, wrong_secret.headers, wrong_secret.body
        )
    with pytest.raises(UnrecognizedClientError):
        verify_request(KEYS, unknown.method, unknown.path, unknown.headers, unknown.body)


# The setting.


def test_access_keys_load_from_a_toml_table(tmp_path: Path) -> None:
    path = tmp_path / "shardline.toml"
    path.write_text(
        'port = 4600\n\n[aws_access_keys]\nAKIAEXAMPLE = "s3cr3t-one"\nAKIA2 = "s3cr3t-two"\n'
    )
    config = BrokerConfig.load(path)
    assert config.aws_access_keys == {"AKIAEXAMPLE": "s3cr3t-one", "AKIA2": "s3cr3t-two"}
    assert config.port == 4600
    assert "s3cr3t" not in repr(config)
    assert hash(config) == hash(BrokerConfig.load(path))  # still hashable
    assert BrokerConfig().aws_access_keys == {}
    assert BrokerConfig.load().aws_access_keys == {}


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('aws_access_keys = "AKIA:secret"\n', "must be a table"),
        ("[aws_access_keys]\nAKIAEXAMPLE = 1\n", "aws_access_keys.AKIAEXAMPLE"),
        ('[aws_access_keys]\nAKIAEXAMPLE = ""\n', "non-empty string"),
        ('[aws_access_keys]\n"" = "secret"\n', "access key id is empty"),
    ],
)
def test_malformed_access_key_tables_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "shardline.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message):
        BrokerConfig.load(path)


@pytest.mark.parametrize(
    "date", ["Fri, 31 Dec 9999 23:59:59 -2359", "Fri, 31 Dec 9999 12:00:00 -1200"]
)
def test_a_date_header_out_of_range_is_an_invalid_signature(date: str) -> None:
    with pytest.raises(InvalidSignatureError, match="out of range"):
        request_time({"date": date})

"""AWS Signature Version 4: checking who signed a request on the AWS wire.

Theory of operation
-------------------
A SigV4 client (boto3, the AWS CLI, the Java SDK under the KCL) never sends
its secret. It builds a *canonical request* out of what it is about to send::

    METHOD \\n canonical URI \\n canonical query \\n canonical headers \\n
    signed header names \\n payload hash

then a *string to sign*::

    AWS4-HMAC-SHA256 \\n request time \\n <date>/<region>/<service>/aws4_request \\n
    hex(SHA-256(canonical request))

and signs it with HMAC-SHA256 under a key derived from the secret by a chain
of HMACs over the date, the region, the service and ``aws4_request``. It sends
``Authorization: AWS4-HMAC-SHA256 Credential=<key id>/<date>/<region>/<service>/
aws4_request, SignedHeaders=<names>, Signature=<hex>`` and the time in
``X-Amz-Date``. The broker rebuilds the canonical request from what arrived,
looks the key id up among the configured keys, computes the signature the
secret gives and compares the two in constant time. This module is pure: no
I/O, and the clock is an argument (``verify_request`` reads it only when not
given one).

The canonical forms are botocore's ``SigV4Auth`` (``botocore/auth.py``), which
the Java SDK's signer matches for every service but S3:

- URI: the path as sent, still percent-encoded, with dot segments and empty
  segments removed, then percent-encoded once more (all but unreserved
  characters and ``/``): non-S3 services sign the path "double-encoded".
- Query: every name and value decoded (``+`` is a space, as in the
  ``urlencode`` that builds botocore's URLs) and encoded again leaving only
  unreserved characters bare; the pairs sorted.
- Headers: the names listed in ``SignedHeaders``, in that order, each
  ``name:value`` with the value's whitespace runs collapsed to one space and
  its ends trimmed (``" ".join(value.split())``, exactly as botocore).
- Payload: the ``x-amz-content-sha256`` header if sent, else the hex SHA-256
  of the body.

Inputs. ``headers`` maps lower-case names to values decoded from bytes as
ISO-8859-1: ``http.client`` sends a ``str`` header value encoded as Latin-1
while botocore signs its UTF-8 form, so decoding as Latin-1 and encoding the
canonical request as UTF-8 reproduces what was signed. A header sent more
than once is its values joined by ``,`` (what botocore signs). ``path`` is
the request target as sent: the path and, after ``?``, the query string.

Decisions (where AWS, the emulators and local use pull apart)
-------------------------------------------------------------
- **No keys configured: nothing is checked**, signed or not, whatever the
  credentials (as kinesalite, kinesis-mock and LocalStack). ``verify_request``
  is then a no-op.
- **Unsigned** (no ``Authorization`` header): ``UnrecognizedClientException``,
  as the issue says (AWS answers ``MissingAuthenticationTokenException``).
  An unknown access key id: ``UnrecognizedClientException``, as AWS.
- **Malformed** ``Authorization``, a missing or malformed date, a body that
  does not match its declared hash, a time more than 5 minutes off (either
  way, AWS's window for Kinesis and its "Signature expired" / "Signature not
  yet current" messages), a wrong signature: ``InvalidSignatureException``
  (AWS says ``IncompleteSignatureException`` for a malformed header).
- **Region: any.** The broker's ``region`` setting names ARNs; clients sign
  with whatever region they are configured for. The signing key is derived
  from the region the client named, so a signature still proves the secret.
- **Service: must be** ``kinesis`` (AWS: "Credential should be scoped to
  correct service"). Every Kinesis client signs for it, and a signature scoped
  to another service was not meant for this one; ``services`` widens it.
- **Must be signed**: ``host`` (or HTTP/2's ``:authority``, as AWS), the date
  header used, and when present ``x-amz-target`` (it names the operation) and
  ``x-amz-content-sha256`` (it stands for the body). The rest is as the
  client chose: every SDK signs all it sends.
- **Payload**: a hex ``x-amz-content-sha256`` must be the body's hash;
  ``UNSIGNED-PAYLOAD`` is accepted (botocore sends it when an operation turns
  body signing off over HTTPS: the body is then protected only by TLS, as at
  AWS); the ``STREAMING-*`` forms (aws-chunked bodies, S3's) are refused.
- **Session tokens** (``x-amz-security-token``) are not checked: the key id
  and its secret are the identity. The token is covered by the signature
  when the client signs it, as botocore does.
- **Presigned URLs** (``X-Amz-Algorithm`` in the query) are refused with a
  message that says so: no Kinesis client uses them.
- A captured request can be replayed within the 5 minutes, as at AWS: use
  TLS where that matters.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote_to_bytes

from ..errors import InvalidSignatureError, UnrecognizedClientError

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
#: Services a credential scope may name.
SERVICES: frozenset[str] = frozenset({"kinesis"})
#: Largest difference between the request's time and the broker's, either way (AWS: 5 min).
MAX_SKEW_S = 300.0
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_FORM = re.compile(r"\d{8}T\d{6}Z")
_SCOPE_DATE_FORM = re.compile(r"\d{8}")
_SIGNATURE_FORM = re.compile(r"[0-9a-f]{64}")
_SHA256_FORM = re.compile(r"[0-9a-fA-F]{64}")
_PRESIGNED_PARAMETERS = frozenset({"x-amz-algorithm", "x-amz-credential", "x-amz-signature"})
_HOST_NAMES = ("host", ":authority")
_AUTHORIZATION_PARTS = ("Credential", "SignedHeaders", "Signature")


class SignatureMismatchError(InvalidSignatureError):
    """A well-formed signature that is not the one the secret gives for this request.

    The wire body carries AWS's fixed message; the canonical request and the
    string to sign the broker computed ride along for a debug log, where they
    show what the client and the broker disagreed on.
    """

    def __init__(self, canonical_request: str, string_to_sign: str) -> None:
        super().__init__()
        self.canonical_request = canonical_request
        self.string_to_sign = string_to_sign


@dataclass(frozen=True, slots=True)
class SigV4Authorization:
    """The parts of an ``Authorization: AWS4-HMAC-SHA256 ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    #: As sent: ``;``-separated lower-case names, the canonical request's line.
    signed_headers: str
    signature: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"

    @property
    def header_names(self) -> list[str]:
        return self.signed_headers.split(";")


def verify_request(
    keys: Mapping[str, str],
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    *,
    services: Collection[str] = SERVICES,
) -> str | None:
    """Check an AWS-wire request's SigV4 signature against ``keys`` (key id -> secret).

    No keys: a no-op that returns None (any credentials, or none, are
    accepted). Otherwise the access key id that signed the request, or
    ``UnrecognizedClientError`` / ``InvalidSignatureError``. ``now`` is Unix
    seconds, the wall clock when None.
    """
    if not keys:
        return None
    return verify_signature(
        keys,
        method,
        path,
        headers,
        body,
        now=time.time() if now is None else now,
        services=services,
    )


def verify_signature(
    keys: Mapping[str, str],
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    services: Collection[str] = SERVICES,
) -> str:
    """The access key id that signed the request; raises if none of ``keys`` did."""
    authorization = headers.get("authorization")
    if authorization is None:
        if _is_presigned(path):
            raise InvalidSignatureError(
                "Query-string authentication (a presigned URL, X-Amz-Algorithm) is not "
                "supported: sign the request with an Authorization header."
            )
        raise UnrecognizedClientError()
    auth = parse_authorization(authorization)
    secret = keys.get(auth.access_key_id)
    if secret is None:
        raise UnrecognizedClientError()
    if auth.service not in services:
        expected = ", ".join(f"'{name}'" for name in sorted(services))
        raise InvalidSignatureError(f"Credential should be scoped to correct service: {expected}.")
    amz_date, moment, date_header = request_time(headers)
    if auth.date != amz_date[:8]:
        raise InvalidSignatureError(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{auth.date}' != '{amz_date[:8]}', from '{amz_date}'."
        )
    _check_skew(amz_date, moment, now)
    _check_signed_names(auth, headers, date_header)
    payload = payload_hash(headers, body)
    canonical = canonical_request(method, path, headers, auth.signed_headers, payload)
    to_sign = string_to_sign(amz_date, auth.scope, canonical)
    key = signing_key(secret, auth.date, auth.region, auth.service)
    expected = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise SignatureMismatchError(canonical, to_sign)
    return auth.access_key_id


def parse_authorization(value: str) -> SigV4Authorization:
    """The parts of a SigV4 ``Authorization`` header; ``InvalidSignatureError`` if malformed."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise InvalidSignatureError(
            f"Unsupported AWS 'algorithm': '{algorithm}' (the broker verifies {ALGORITHM})."
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, equals, content = item.strip().partition("=")
        if not equals or name in parts or name not in _AUTHORIZATION_PARTS:
            raise InvalidSignatureError(
                "The Authorization header must be "
                f"'{ALGORITHM} Credential=..., SignedHeaders=..., Signature=...'."
            )
        parts[name] = content
    missing = [name for name in _AUTHORIZATION_PARTS if not parts.get(name)]
    if missing:
        raise InvalidSignatureError(
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        )
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or not all(scope) or not _SCOPE_DATE_FORM.fullmatch(scope[1]):
        raise InvalidSignatureError(
            "The Credential must be <access key id>/<YYYYMMDD>/<region>/<service>/aws4_request."
        )
    if scope[4] != TERMINATOR:
        raise InvalidSignatureError(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{scope[4]}'."
        )
    signed_headers = parts["SignedHeaders"]
    names = signed_headers.split(";")
    if not all(names) or signed_headers != signed_headers.lower() or len(set(names)) != len(names):
        raise InvalidSignatureError(
            "SignedHeaders must be distinct lower-case header names separated by ';'."
        )
    if not _SIGNATURE_FORM.fullmatch(parts["Signature"]):
        raise InvalidSignatureError("The Signature must be 64 lower-case hexadecimal digits.")
    return SigV4Authorization(
        access_key_id=scope[0],
        date=scope[1],
        region=scope[2],
        service=scope[3],
        signed_headers=signed_headers,
        signature=parts["Signature"],
    )


def request_time(headers: Mapping[str, str]) -> tuple[str, float, str]:
    """The request's time as SigV4 writes it, as Unix seconds, and the header it came from.

    ``X-Amz-Date`` if sent, else ``Date`` (botocore signs with ``Date`` when a
    request already carries one), as AWS does.
    """
    amz_date = headers.get("x-amz-date")
    if amz_date is not None:
        moment: datetime | None = None
        if _AMZ_DATE_FORM.fullmatch(amz_date):
            try:
                moment = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
            except ValueError:
                moment = None
        if moment is None:
            raise InvalidSignatureError(
                f"X-Amz-Date must be a UTC time in the form YYYYMMDD'T'HHMMSS'Z', not '{amz_date}'."
            )
        return amz_date, moment.timestamp(), "x-amz-date"
    date = headers.get("date")
    if date is None:
        raise InvalidSignatureError(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    try:
        moment = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        raise InvalidSignatureError(f"The Date header is not an HTTP date: '{date}'.") from None
    if moment.tzinfo is None:  # "-0000": UTC, says RFC 5322
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # a zone offset that pushes the year past 9999
        raise InvalidSignatureError(f"The Date header is out of range: '{date}'.") from None
    return moment.strftime(_AMZ_DATE), moment.timestamp(), "date"


def payload_hash(headers: Mapping[str, str], body: bytes) -> str:
    """The canonical request's last line: the declared hash (checked) or the body's."""
    declared = headers.get("x-amz-content-sha256")
    if declared is None:
        return hashlib.sha256(body).hexdigest()
    if declared == UNSIGNED_PAYLOAD:
        return declared
    if not _SHA256_FORM.fullmatch(declared):
        raise InvalidSignatureError(
            f"x-amz-content-sha256 '{declared}' is not supported: send the body's SHA-256 in "
            f"hexadecimal, or {UNSIGNED_PAYLOAD}."
        )
    if not hmac.compare_digest(declared.lower(), hashlib.sha256(body).hexdigest()):
        raise InvalidSignatureError(
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        )
    return declared


def canonical_request(
    method: str, path: str, headers: Mapping[str, str], signed_headers: str, payload: str
) -> str:
    """SigV4's canonical request for what arrived, with botocore's canonical forms."""
    raw_path, _, query = path.partition("?")
    return "\n".join(
        (
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(query),
            canonical_headers(headers, signed_headers.split(";")),
            signed_headers,
            payload,
        )
    )


def canonical_uri(raw_path: str) -> str:
    """The path as sent, normalised, percent-encoded once more (non-S3 services)."""
    return quote(_remove_dot_segments(raw_path) if raw_path else "/", safe="/~")


def canonical_query(query: str) -> str:
    """Names and values decoded and encoded again with only unreserved characters bare; sorted."""
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        name, _, value = item.partition("=")
        pairs.append((_encode_query_part(name), _encode_query_part(value)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_headers(headers: Mapping[str, str], names: list[str]) -> str:
    """One ``name:value\\n`` per signed name, values trimmed and their spaces collapsed."""
    lines = []
    for name in names:
        value = _header(headers, name)
        if value is None:
            raise InvalidSignatureError(f"The signed header '{name}' is not in the request.")
        lines.append(f"{name}:{' '.join(value.split())}\n")
    return "".join(lines)


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The HMAC chain from the secret to the day's key (cached: it changes once a day)."""
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, TERMINATOR):
        key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
    return key


def _check_skew(amz_date: str, moment: float, now: float) -> None:
    if moment < now - MAX_SKEW_S:
        raise InvalidSignatureError(
            f"Signature expired: {amz_date} is now earlier than {_amz(now - MAX_SKEW_S)} "
            f"({_amz(now)} - 5 min.)"
        )
    if moment > now + MAX_SKEW_S:
        raise InvalidSignatureError(
            f"Signature not yet current: {amz_date} is still later than "
            f"{_amz(now + MAX_SKEW_S)} ({_amz(now)} + 5 min.)"
        )


def _check_signed_names(
    auth: SigV4Authorization, headers: Mapping[str, str], date_header: str
) -> None:
    """The headers that carry the request's meaning must be among those signed."""
    signed = set(auth.header_names)
    if signed.isdisjoint(_HOST_NAMES):
        raise InvalidSignatureError(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
        )
    for name in (date_header, "x-amz-target", "x-amz-content-sha256"):
        if name in headers and name not in signed:
            raise InvalidSignatureError(
                f"'{name}' must be a 'SignedHeader' in the AWS Authorization."
            )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and name in _HOST_NAMES:
        # HTTP/2 carries the Host header that the client signed as :authority.
        other = _HOST_NAMES[1] if name == _HOST_NAMES[0] else _HOST_NAMES[0]
        value = headers.get(other)
    return value


def _is_presigned(path: str) -> bool:
    _, _, query = path.partition("?")
    return any(item.partition("=")[0].lower() in _PRESIGNED_PARAMETERS for item in query.split("&"))


def _encode_query_part(part: str) -> str:
    return quote(unquote_to_bytes(part.replace("+", " ")), safe="-_.~")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, plus empty segments dropped, as AWS services (and botocore) do."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def _amz(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime(_AMZ_DATE)

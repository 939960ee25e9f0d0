"""Function targets (``consumers.invoke``): python, exec and http(s), against real
functions, real processes and a real local HTTP server.

The ``ray:`` target is in ``test_invoke_ray.py``.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import ssl
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme

from broker.client import Record
from broker.errors import InvalidParameterValueError
from consumers.events import kinesis_records, lambda_event
from consumers.invoke import (
    ExecTarget,
    HttpTarget,
    InvocationContext,
    PythonTarget,
    RayTarget,
    Target,
    parse_target,
)
from tests.consumers import handlers

HANDLERS = "tests.consumers.handlers"
SCRIPT = f"exec:{shlex.quote(sys.executable)} {shlex.quote(handlers.__file__)}"


def event(*payloads: bytes) -> dict[str, Any]:
    records = [
        Record(str(100 + i), 1_700_000_000_000 + i, payload, f"key-{i}")
        for i, payload in enumerate(payloads)
    ]
    return lambda_event(
        kinesis_records(
            records,
            shard_id="shardId-000000000000",
            stream_arn="arn:aws:kinesis:us-east-1:000000000000:stream/s",
        )
    )


def context(timeout_s: float = 900.0, name: str = "fn") -> InvocationContext:
    return InvocationContext(function_name=name, timeout_s=timeout_s)


@pytest.fixture
async def target_of() -> AsyncIterator[Any]:
    """``parse_target``, with every target made closed at the end of the test."""
    made: list[Target] = []

    def make(name: str, **options: Any) -> Target:
        made.append(parse_target(name, **options))
        return made[-1]

    yield make
    for target in made:
        await target.aclose()


# -- parsing ------------------------------------------------------------------------


def test_parse_each_kind() -> None:
    python = parse_target("python:package.module:handler")
    assert isinstance(python, PythonTarget)
    assert (python.module, python.attribute, python.mode) == ("package.module", "handler", "thread")
    process = parse_target("python:m:Class.method", mode="process", concurrency=3)
    assert isinstance(process, PythonTarget)
    assert (process.mode, process.concurrency, process.attribute) == ("process", 3, "Class.method")
    command = parse_target("exec:./run.sh --flag 'two words'")
    assert isinstance(command, ExecTarget)
    assert command.argv == ["./run.sh", "--flag", "two words"]
    for url in ("http://127.0.0.1:8080/fn", "https://example.test/a?b=c"):
        http = parse_target(url)
        assert isinstance(http, HttpTarget) and http.url == url
    ray = parse_target("ray:pkg.mod:fn", ray_address="ray://head:10001")
    assert isinstance(ray, RayTarget)
    assert (ray.module, ray.attribute, ray.address) == ("pkg.mod", "fn", "ray://head:10001")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "handler",
        "python:",
        "python:module",
        "python:module:",
        "python::fn",
        "python:1module:fn",
        "python:mod ule:fn",
        "ray:module",
        "exec:",
        "exec:   ",
        "exec:'unbalanced",
        "http://",
        "https:/x",
        "ftp://host/fn",
        "lambda:fn",
    ],
)
def test_parse_refuses_a_malformed_target(name: str) -> None:
    with pytest.raises(InvalidParameterValueError) as caught:
        parse_target(name)
    assert caught.value.wire_name == "InvalidParameterValueException"
    assert caught.value.message.startswith("FunctionName")


def test_parse_refuses_an_unknown_mode() -> None:
    with pytest.raises(InvalidParameterValueError, match="mode"):
        parse_target("python:m:f", mode="fork")  # type: ignore[arg-type]


# -- python -------------------------------------------------------------------------


async def test_an_unmodified_lambda_handler_decodes_its_records(target_of: Any) -> None:
    target = target_of(f"python:{HANDLERS}:lambda_handler")
    ctx = context()
    result = await target.invoke(event(b"hello", b"\x00\xff".hex().encode()), ctx)
    assert result.ok, result
    assert result.response == {"payloads": ["hello", "00ff"], "request": ctx.aws_request_id}
    assert result.error_type is None and result.error_message is None
    assert result.duration_s > 0


async def test_python_function_gets_the_event_dict_itself(target_of: Any) -> None:
    target = target_of(f"python:{HANDLERS}:echo")
    sent = event(b"x")
    result = await target.invoke(sent, context())
    assert result.response is sent  # no JSON round trip for python targets


@pytest.mark.parametrize(
    ("attribute", "error_type", "message"),
    [
        ("fails", "ValueError", "poison record"),
        ("exits", "SystemExit", "2"),
        ("async_fails", "KeyError", "'missing'"),
        ("no_such_function", "Runtime.HandlerNotFound", "no_such_function"),
        ("not_callable", "Runtime.HandlerNotFound", "not callable"),
    ],
)
async def test_python_function_errors_are_results(
    target_of: Any, attribute: str, error_type: str, message: str
) -> None:
    result = await target_of(f"python:{HANDLERS}:{attribute}").invoke(event(b"x"), context())
    assert not result.ok
    assert result.response is None
    assert result.error_type == error_type
    assert message in (result.error_message or "")


async def test_a_module_that_does_not_import_is_a_function_error(target_of: Any) -> None:
    result = await target_of("python:tests.consumers.no_such_module:fn").invoke(
        event(b"x"), context()
    )
    assert (result.ok, result.error_type) == (False, "Runtime.ImportModuleError")
    assert "no_such_module" in (result.error_message or "")


async def test_dotted_attribute_and_async_function(target_of: Any) -> None:
    nested = await target_of(f"python:{HANDLERS}:Nested.handler").invoke(event(), context())
    assert nested.response == "nested"
    result = await target_of(f"python:{HANDLERS}:async_echo").invoke(event(b"a", b"b"), context())
    assert result.ok and result.response == {"async": True, "records": 2}


async def test_context_has_lambdas_attributes(target_of: Any) -> None:
    ctx = InvocationContext(function_name="orders-fn", timeout_s=30, region="eu-west-1")
    result = await target_of(f"python:{HANDLERS}:context_info").invoke(event(), ctx)
    info = result.response
    assert info["aws_request_id"] == ctx.aws_request_id and len(info["aws_request_id"]) == 36
    assert info["function_name"] == "orders-fn"
    assert info["function_version"] == "$LATEST"
    arn = "arn:aws:lambda:eu-west-1:000000000000:function:orders-fn"
    assert info["invoked_function_arn"] == arn
    assert info["memory_limit_in_mb"] == "1024"
    assert info["log_group_name"] == "/aws/lambda/orders-fn"
    assert "/[$LATEST]" in info["log_stream_name"]
    assert 25_000 < info["remaining_ms"] <= 30_000
    assert InvocationContext(function_name="f").get_remaining_time_in_millis() > 899_000
    assert InvocationContext(function_name="f", aws_request_id="r").aws_request_id == "r"


async def _ticks_while(call: Any) -> tuple[Any, int]:
    """Run ``call`` while a task ticks every 50 ms; the result and the ticks counted."""
    ticks = 0
    result = None

    async def tick() -> None:
        nonlocal ticks
        while True:
            await trio.sleep(0.05)
            ticks += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        result = await call()
        nursery.cancel_scope.cancel()
    return result, ticks


async def test_a_blocking_function_does_not_stall_the_loop(target_of: Any) -> None:
    target = target_of(f"python:{HANDLERS}:blocking")
    started = time.monotonic()
    result, ticks = await _ticks_while(lambda: target.invoke({"sleep": 2.0}, context()))
    assert result.ok and result.response == "slept"
    assert time.monotonic() - started >= 2.0
    assert ticks >= 20  # about 40 if the loop ran freely; 0 or 1 if the call blocked it


async def test_thread_calls_are_bounded_by_concurrency(target_of: Any) -> None:
    target = target_of(f"python:{HANDLERS}:blocking", concurrency=2)
    in_flight: list[int] = []
    done = 0

    async def one() -> None:
        nonlocal done
        await target.invoke({"sleep": 0.3}, context())
        done += 1

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
        while done < 5:
            in_flight.append(target.limiter.borrowed_tokens)
            await trio.sleep(0.01)
    assert max(in_flight) == 2


async def test_timeouts(target_of: Any) -> None:
    blocking = target_of(f"python:{HANDLERS}:blocking")
    started = time.monotonic()
    result = await blocking.invoke({"sleep": 1.0}, context(timeout_s=0.2))
    assert (result.ok, result.error_type) == (False, "Sandbox.Timedout")
    assert result.error_message == "Task timed out after 0.20 seconds"
    assert time.monotonic() - started < 0.9  # the thread was abandoned, not awaited
    sleeper = target_of(f"python:{HANDLERS}:async_sleeps")
    result = await sleeper.invoke({"sleep": 30}, context(timeout_s=0.1))
    assert result.error_type == "Sandbox.Timedout"
    assert result.duration_s < 5


async def test_process_mode_runs_in_another_process_without_stalling(target_of: Any) -> None:
    target = target_of(f"python:{HANDLERS}:pid", mode="process", concurrency=1)
    result = await target.invoke(event(), context())
    assert result.ok and isinstance(result.response, int) and result.response != os.getpid()
    # A mapping chooses the process pool by its FunctionName.
    chosen = target_of(f"python+process:{HANDLERS}:pid", concurrency=1)
    result = await chosen.invoke(event(), context())
    assert result.ok and isinstance(result.response, int) and result.response != os.getpid()
    blocking = target_of(f"python:{HANDLERS}:blocking", mode="process", concurrency=1)
    outcome, ticks = await _ticks_while(lambda: blocking.invoke({"sleep": 1.0}, context()))
    assert outcome.response == "slept"
    assert ticks >= 10
    failing = target_of(f"python:{HANDLERS}:fails", mode="process", concurrency=1)
    result = await failing.invoke(event(b"x"), context())
    assert (result.ok, result.error_type, result.error_message) == (
        False,
        "ValueError",
        "poison record",
    )


async def test_a_dead_child_is_a_function_error_and_the_pool_recovers(target_of: Any) -> None:
    target = target_of(f"python:{HANDLERS}:dies", mode="process", concurrency=1)
    result = await target.invoke(event(), context())
    assert (result.ok, result.error_type) == (False, "Runtime.ExitError")
    target.attribute = "pid"  # the same target, a healthy function: a new pool serves it
    result = await target.invoke(event(), context())
    assert result.ok and result.response != os.getpid()


# -- exec ---------------------------------------------------------------------------


async def test_exec_gets_the_event_on_stdin_and_answers_on_stdout(target_of: Any) -> None:
    target = target_of(f"{SCRIPT} count")
    ctx = InvocationContext(function_name="fn", region="ap-south-1")
    result = await target.invoke(event(b"a", b"b", b"c"), ctx)
    assert result.ok, result
    assert result.response == {"records": 3, "env": "ap-south-1"}
    decoded = await target_of(f"{SCRIPT} decode").invoke(event(b"caf\xc3\xa9"), context())
    assert decoded.response["payloads"] == ["café"]
    empty = await target_of(f"{SCRIPT} empty").invoke(event(b"x"), context())
    assert empty.ok and empty.response is None


async def test_exec_errors(target_of: Any) -> None:
    failed = await target_of(f"{SCRIPT} fail").invoke(event(b"x"), context())
    assert (failed.ok, failed.error_type) == (False, "ExitCode 3")
    message = failed.error_message or ""
    assert message.endswith("Traceback: the end of stderr")
    assert len(message) <= 2048
    garbage = await target_of(f"{SCRIPT} garbage").invoke(event(b"x"), context())
    assert (garbage.ok, garbage.error_type) == (False, "Runtime.InvalidResponse")
    huge = await target_of(f"{SCRIPT} huge").invoke(event(b"x"), context())
    assert (huge.ok, huge.error_type) == (False, "Function.ResponseSizeTooLarge")
    missing = await target_of("exec:/nonexistent/command --x").invoke(event(b"x"), context())
    assert (missing.ok, missing.error_type) == (False, "FileNotFoundError")


async def test_exec_is_killed_at_the_deadline(target_of: Any) -> None:
    started = time.monotonic()
    result = await target_of(f"{SCRIPT} sleep").invoke(event(b"x"), context(timeout_s=0.5))
    assert result.error_type == "Sandbox.Timedout"
    assert time.monotonic() - started < 10  # the command sleeps 60 s unless killed


# -- http ---------------------------------------------------------------------------


@dataclass
class FunctionServer:
    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        state: FunctionServer = self.server.state
        state.requests.append((self.path, dict(self.headers), body))
        if self.path == "/count":
            self._answer(200, json.dumps({"records": len(json.loads(body)["Records"])}).encode())
        elif self.path == "/decode":
            records = json.loads(body)["Records"]
            out = [base64.b64decode(r["kinesis"]["data"]).decode() for r in records]
            self._answer(200, json.dumps(out).encode())
        elif self.path == "/empty":
            self._answer(200, b"")
        elif self.path == "/fail":
            self._answer(500, b'{"errorMessage": "boom"}')
        elif self.path == "/garbage":
            self._answer(200, b"<html>")
        elif self.path == "/slow":
            state.release.wait(30)
            self._answer(200, b"null")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[FunctionServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    host = "localhost" if tls is not None else "127.0.0.1"
    state = FunctionServer(f"{scheme}://{host}:{server.server_address[1]}")
    server.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def http_server() -> Iterator[FunctionServer]:
    yield from _serve()


async def test_http_posts_the_event_json(target_of: Any, http_server: FunctionServer) -> None:
    target = target_of(f"{http_server.url}/count")
    ctx = context(name="orders-fn")
    result = await target.invoke(event(b"a", b"b"), ctx)
    assert result.ok, result
    assert result.response == {"records": 2}
    path, headers, body = http_server.requests[-1]
    assert path == "/count"
    assert json.loads(body) == event(b"a", b"b")
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["content-type"] == "application/json"
    assert lowered["lambda-runtime-aws-request-id"] == ctx.aws_request_id
    assert lowered["lambda-runtime-invoked-function-arn"].endswith(":function:orders-fn")
    assert abs(int(lowered["lambda-runtime-deadline-ms"]) - ctx.deadline * 1000) < 2
    decoded = await target_of(f"{http_server.url}/decode").invoke(event(b"hi"), context())
    assert decoded.response == ["hi"]
    empty = await target_of(f"{http_server.url}/empty").invoke(event(b"x"), context())
    assert empty.ok and empty.response is None


async def test_http_errors(target_of: Any, http_server: FunctionServer) -> None:
    failed = await target_of(f"{http_server.url}/fail").invoke(event(b"x"), context())
    assert (failed.ok, failed.error_type) == (False, "HTTP 500")
    assert "boom" in (failed.error_message or "")
    garbage = await target_of(f"{http_server.url}/garbage").invoke(event(b"x"), context())
    assert (garbage.ok, garbage.error_type) == (False, "Runtime.InvalidResponse")
    slow = await target_of(f"{http_server.url}/slow").invoke(event(b"x"), context(timeout_s=0.3))
    assert slow.error_type == "Sandbox.Timedout"


async def test_http_connection_refused_is_a_function_error(target_of: Any) -> None:
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused
        result = await target_of(f"http://127.0.0.1:{port}/fn").invoke(event(b"x"), context())
    assert (result.ok, result.error_type) == (False, "ConnectError")


async def test_https_with_a_trusted_certificate(
    target_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(tls)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))  # as a deployment trusts its own CA
    for server in _serve(tls):
        result = await target_of(f"{server.url}/count").invoke(event(b"a"), context())
        assert result.ok, result
        assert result.response == {"records": 1}


def test_request_ids_are_distinct_version_4_uuids_and_log_streams_last() -> None:
    import uuid

    from consumers.invoke import log_stream_name, request_id

    ids = [request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids[:100])
    contexts = [InvocationContext(function_name="f") for _ in range(3)]
    assert len({c.aws_request_id for c in contexts}) == 3
    # One log stream per execution environment (this process), as Lambda names them.
    assert {c.log_stream_name for c in contexts} == {log_stream_name("$LATEST")}

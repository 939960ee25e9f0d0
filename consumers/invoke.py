"""Function targets: what a mapping's ``FunctionName`` names, and how it is invoked.

``parse_target(function_name)`` turns the string into a ``Target``:

* ``python:package.module:function``: a callable in this process, called as
  ``function(event, context)`` with the Lambda event dict (no JSON round trip)
  and an ``InvocationContext``. Imported once, at the first invocation (in a
  thread: an import may be slow). ``async def`` functions run on the trio loop;
  plain ones in a worker thread (``mode="thread"``, the default) or in a
  process pool (``mode="process"``: for CPU-bound functions, past the GIL;
  the event and the result are pickled and the function is imported again in
  each child), so a slow or blocking function never stalls the caller's loop.
  Either way at most ``concurrency`` calls run at once.
* ``exec:command args`` (split as a shell would, never run by one): the
  command runs once per invocation with the event JSON on stdin; its stdout is
  the response JSON (empty: null); a non-zero exit is a function error, with
  the tail of stderr in the message.
* ``http://...`` / ``https://...``: the event JSON is POSTed (``httpx``, one
  connection pool per target); the body is the response JSON (empty: null); a
  status outside 2xx is a function error. The request carries the Lambda
  runtime API's headers (``Lambda-Runtime-Aws-Request-Id``,
  ``Lambda-Runtime-Deadline-Ms``, ``Lambda-Runtime-Invoked-Function-Arn``).
* ``ray:package.module:function`` (extra ``ray``): each invocation is a Ray
  task on the cluster at ``ray_address`` (default: a local Ray started at the
  first invocation, unless the process already called ``ray.init``); the result
  is awaited in a thread, and ``invoke`` returns only once it is back, so the
  caller checkpoints after the work is done.

**Results.** ``Target.invoke`` never raises for anything the function does: an
exception, a non-zero exit, a non-2xx status, a response that is not JSON or
is over 6 MB (Lambda's limit), or running past the deadline is an
``InvokeResult`` with ``ok`` False, an ``error_type`` (the exception's class
name, ``ExitCode 3``, ``HTTP 500``, or Lambda's names: ``Sandbox.Timedout``,
``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``,
``Runtime.ExitError``, ``Function.ResponseSizeTooLarge``) and a message.
Cancellation from the caller still propagates.

**Deadlines.** The context's deadline (``timeout_s`` after it was made;
Lambda's maximum, 900 s, by default) bounds the invocation: an async function
and an HTTP request are cancelled at it, a command and a Ray task are killed
(``ray.cancel(force=True)``: Lambda too ends a sandbox at its timeout). A
thread cannot be killed: it is abandoned and runs to its end while its result
is dropped, still holding its slot of ``concurrency``; a process-pool call is
abandoned the same way, and keeps its child busy until it returns.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import multiprocessing
import os
import random
import re
import secrets
import shlex
import subprocess
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

import httpx
import trio

from broker.errors import InvalidParameterValueError

from .events import event_json

log = logging.getLogger(__name__)

#: Lambda's maximum function timeout.
DEFAULT_TIMEOUT_S: Final = 900.0
#: Lambda's limit on a synchronous invocation's response.
MAX_RESPONSE_BYTES: Final = 6 * 1024 * 1024
#: How much of a command's stderr an error message keeps (its end).
STDERR_TAIL_BYTES: Final = 2048
#: Calls in flight per target when the caller does not say: threads are cheap,
#: processes cost a core each.
DEFAULT_THREAD_CONCURRENCY: Final = 64

Mode = Literal["thread", "process"]

_DOTTED: Final = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_PYTHON_NAME: Final = re.compile(rf"(?P<module>{_DOTTED}):(?P<attribute>{_DOTTED})")


_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)  # a forked child must not repeat the parent's ids
#: This process's log stream names by function version: Lambda names a stream per
#: execution environment (``2024/01/02/[$LATEST]<32 hex>``), not per invocation.
_log_streams: dict[str, str] = {}


def request_id() -> str:
    """A random version-4 UUID, as Lambda's request ids are.

    From a seeded PRNG rather than ``os.urandom`` (``uuid.uuid4``): ids need to be
    unique, not secret, and a system call per invocation showed in the profiles.
    """
    return str(uuid.UUID(int=_ids.getrandbits(128), version=4))


def log_stream_name(function_version: str) -> str:
    """This process's log stream name, made on first use, as an execution environment has one."""
    name = _log_streams.get(function_version)
    if name is None:
        day = datetime.now(UTC).strftime("%Y/%m/%d")
        name = _log_streams[function_version] = f"{day}/[{function_version}]{secrets.token_hex(16)}"
    return name


@dataclass(slots=True)
class InvocationContext:
    """The context object of one invocation, with the attributes Lambda handlers use.

    Picklable, so that it travels to a process-pool child or a Ray task.
    ``deadline`` is epoch seconds (wall clock, so that it means the same in
    another process or on another machine).
    """

    function_name: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    aws_request_id: str = field(default_factory=lambda: request_id())
    region: str = "local"
    account_id: str = "000000000000"
    #: A string, as the Lambda Python runtime gives it.
    memory_limit_in_mb: str = "1024"
    function_version: str = "$LATEST"
    deadline: float = 0.0
    log_stream_name: str = ""
    identity: Any = None
    client_context: Any = None

    def __post_init__(self) -> None:
        if not self.deadline:
            self.deadline = time.time() + self.timeout_s
        if not self.log_stream_name:
            self.log_stream_name = log_stream_name(self.function_version)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.time()) * 1000))


@dataclass(frozen=True, slots=True)
class InvokeResult:
    """How one invocation went; ``response`` is the function's result (None if none)."""

    ok: bool
    response: Any
    error_type: str | None
    error_message: str | None
    duration_s: float


class FunctionError(Exception):
    """A failure of the function (not of the caller), raised inside a target's ``_call``."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in process-pool children and Ray tasks: it must survive pickling.
        return (FunctionError, (self.error_type, self.message))


class Target(ABC):
    """A function to invoke; ``await target.invoke(event, context)``, ``await target.aclose()``."""

    kind: ClassVar[str]

    def __init__(self, function_name: str) -> None:
        self.function_name = function_name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.function_name!r}>"

    async def invoke(self, event: dict[str, Any], context: InvocationContext) -> InvokeResult:
        """Call the function once with ``event``; function failures are results, not raises."""
        started = time.perf_counter()
        with trio.move_on_after(max(0.0, context.deadline - time.time())) as scope:
            try:
                response = await self._call(event, context)
            except FunctionError as exc:
                return InvokeResult(
                    False, None, exc.error_type, exc.message, time.perf_counter() - started
                )
            except (Exception, SystemExit) as exc:
                log.info("%s raised", self.function_name, exc_info=True)
                return InvokeResult(
                    False, None, type(exc).__name__, str(exc), time.perf_counter() - started
                )
            return InvokeResult(True, response, None, None, time.perf_counter() - started)
        assert scope.cancelled_caught
        return InvokeResult(
            False,
            None,
            "Sandbox.Timedout",
            f"Task timed out after {context.timeout_s:.2f} seconds",
            time.perf_counter() - started,
        )

    @abstractmethod
    async def _call(self, event: dict[str, Any], context: InvocationContext) -> Any:
        """The function's response; raises ``FunctionError`` or the function's exception."""

    async def aclose(self) -> None:  # noqa: B027 (most targets hold nothing to close)
        """Let go of pools and connections; the target is not used afterwards."""


def parse_target(
    function_name: str,
    *,
    mode: Mode = "thread",
    concurrency: int | None = None,
    ray_address: str | None = None,
) -> Target:
    """The target that ``function_name`` names (module docstring).

    ``mode`` and ``concurrency`` apply to ``python:`` targets (``concurrency``
    also bounds ``ray:`` calls awaited at once), ``ray_address`` to ``ray:``.
    Raises ``InvalidParameterValueError`` naming ``FunctionName`` and why.
    """
    scheme, _, rest = function_name.partition(":")
    if scheme == "python+process":
        # The mapping's own choice of a process pool: its FunctionName says so.
        scheme, mode = "python", "process"
    if scheme in ("python", "ray"):
        match = _PYTHON_NAME.fullmatch(rest)
        if match is None:
            raise _invalid(function_name, f"a {scheme}: target is {scheme}:package.module:function")
        module, attribute = match["module"], match["attribute"]
        if scheme == "ray":
            return RayTarget(
                function_name, module, attribute, address=ray_address, concurrency=concurrency
            )
        if mode not in ("thread", "process"):
            raise _invalid(function_name, f"mode must be thread or process, not {mode!r}")
        return PythonTarget(function_name, module, attribute, mode=mode, concurrency=concurrency)
    if scheme == "exec":
        try:
            argv = shlex.split(rest)
        except ValueError as exc:
            raise _invalid(function_name, f"the exec: command does not parse ({exc})") from None
        if not argv:
            raise _invalid(function_name, "an exec: target names a command")
        return ExecTarget(function_name, argv)
    if scheme in ("http", "https"):
        parts = urlsplit(function_name)
        if not parts.hostname or not rest.startswith("//"):
            raise _invalid(function_name, "an http(s) target is a URL with a host")
        return HttpTarget(function_name, function_name)
    raise _invalid(
        function_name,
        "the target is python:module:function, exec:command, http(s)://url or ray:module:function",
    )


def _invalid(function_name: str, why: str) -> InvalidParameterValueError:
    return InvalidParameterValueError(f"FunctionName {function_name!r}: {why}")


# -- python --------------------------------------------------------------------------


def resolve_function(module: str, attribute: str) -> Callable[..., Any]:
    """Import ``module`` and find ``attribute`` in it, with Lambda's error names."""
    try:
        found: Any = importlib.import_module(module)
    except Exception as exc:
        raise FunctionError(
            "Runtime.ImportModuleError", f"Unable to import module {module!r}: {exc}"
        ) from exc
    for name in attribute.split("."):
        try:
            found = getattr(found, name)
        except AttributeError:
            raise FunctionError(
                "Runtime.HandlerNotFound", f"{module}.{attribute} is undefined or not exported"
            ) from None
    if not callable(found):
        raise FunctionError("Runtime.HandlerNotFound", f"{module}.{attribute} is not callable")
    return found  # type: ignore[no-any-return]


#: Functions imported by a process-pool child or a Ray worker, by (module, attribute).
_imported: dict[tuple[str, str], Callable[..., Any]] = {}


def call_by_name(module: str, attribute: str, event: Any, context: Any) -> Any:
    """Run in a child process or a Ray task: import the function once there, call it."""
    function = _imported.get((module, attribute))
    if function is None:
        function = _imported[module, attribute] = resolve_function(module, attribute)
    return function(event, context)


class PythonTarget(Target):
    kind = "python"

    def __init__(
        self,
        function_name: str,
        module: str,
        attribute: str,
        *,
        mode: Mode = "thread",
        concurrency: int | None = None,
    ) -> None:
        super().__init__(function_name)
        self.module = module
        self.attribute = attribute
        self.mode: Mode = mode
        if concurrency is None:
            concurrency = DEFAULT_THREAD_CONCURRENCY if mode == "thread" else os.cpu_count() or 1
        self.concurrency = concurrency
        self.limiter = trio.CapacityLimiter(concurrency)
        self._function: Callable[..., Any] | None = None
        self._is_async = False
        self._pool: ProcessPoolExecutor | None = None

    async def _load(self) -> Callable[..., Any]:
        function = await trio.to_thread.run_sync(resolve_function, self.module, self.attribute)
        self._is_async = inspect.iscoroutinefunction(function)
        self._function = function
        return function

    async def _call(self, event: dict[str, Any], context: InvocationContext) -> Any:
        function = self._function
        if function is None:
            function = await self._load()
        if self._is_async:
            return await function(event, context)
        if self.mode == "thread":
            return await trio.to_thread.run_sync(
                function, event, context, limiter=self.limiter, abandon_on_cancel=True
            )
        return await trio.to_thread.run_sync(
            self._in_child, event, context, limiter=self.limiter, abandon_on_cancel=True
        )

    def _in_child(self, event: dict[str, Any], context: InvocationContext) -> Any:
        """Run in a thread: submit to the pool and wait; a dead child breaks the pool."""
        pool = self._pool
        if pool is None:
            # spawn, not fork: this process runs threads (trio's, the caller's).
            pool = self._pool = ProcessPoolExecutor(
                max_workers=self.concurrency,
                mp_context=multiprocessing.get_context("spawn"),
            )
        try:
            return pool.submit(call_by_name, self.module, self.attribute, event, context).result()
        except BrokenProcessPool as exc:
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise FunctionError(
                "Runtime.ExitError", f"the function's process exited: {exc}"
            ) from exc

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Not waiting for calls in flight (up to the function's timeout, or forever
            # for one that hangs): a stopping mapping or worker must stop now. Their
            # records were not checkpointed and are invoked again where the shard goes.
            pool.shutdown(wait=False, cancel_futures=True)


# -- exec ----------------------------------------------------------------------------


class ExecTarget(Target):
    kind = "exec"

    def __init__(self, function_name: str, argv: list[str]) -> None:
        super().__init__(function_name)
        self.argv = argv

    async def _call(self, event: dict[str, Any], context: InvocationContext) -> Any:
        payload = await trio.to_thread.run_sync(event_json, event)
        env = {
            **os.environ,
            "AWS_LAMBDA_FUNCTION_NAME": context.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": context.function_version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": context.memory_limit_in_mb,
            "AWS_REGION": context.region,
            "_X_AMZN_REQUEST_ID": context.aws_request_id,
            "SHARDLINE_DEADLINE_MS": str(int(context.deadline * 1000)),
        }
        stdout = bytearray()
        stderr = bytearray()
        too_large = False
        run = partial(
            trio.run_process,
            self.argv,
            stdin=payload,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            check=False,
            env=env,
        )
        try:
            async with trio.open_nursery() as nursery:
                process: trio.Process = await nursery.start(run)
                assert process.stdout is not None and process.stderr is not None
                nursery.start_soon(_keep_tail, process.stderr, stderr)
                async for chunk in process.stdout:
                    stdout += chunk
                    if len(stdout) > MAX_RESPONSE_BYTES:
                        too_large = True
                        nursery.cancel_scope.cancel()  # run_process kills the command
                        break
        except ExceptionGroup as group:
            # The command could not start (not found, not executable): report the
            # OSError itself, not the nursery's group around it.
            matched, rest = group.split(OSError)
            if matched is None or rest is not None:
                raise
            cause = _first_leaf(matched)
            raise FunctionError(type(cause).__name__, str(cause)) from cause
        if too_large:
            raise FunctionError(
                "Function.ResponseSizeTooLarge",
                f"the command wrote more than {MAX_RESPONSE_BYTES} bytes to stdout",
            )
        if process.returncode != 0:
            tail = stderr.decode("utf-8", "replace").strip()
            raise FunctionError(f"ExitCode {process.returncode}", tail)
        return await _parse_response(bytes(stdout))


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


async def _keep_tail(stream: trio.abc.ReceiveStream, tail: bytearray) -> None:
    async for chunk in stream:
        tail += chunk
        del tail[:-STDERR_TAIL_BYTES]


async def _parse_response(body: bytes) -> Any:
    """A response body as JSON; empty is None; anything else is the function's error."""
    if not body.strip():
        return None
    try:
        return await trio.to_thread.run_sync(json.loads, body)
    except ValueError as exc:
        raise FunctionError("Runtime.InvalidResponse", f"the response is not JSON: {exc}") from None


# -- http ----------------------------------------------------------------------------


class HttpTarget(Target):
    kind = "http"

    def __init__(self, function_name: str, url: str) -> None:
        super().__init__(function_name)
        self.url = url
        self._client: httpx.AsyncClient | None = None

    async def _call(self, event: dict[str, Any], context: InvocationContext) -> Any:
        client = self._client
        if client is None:
            # No timeout of httpx's own: the invocation's deadline bounds the request.
            client = self._client = httpx.AsyncClient(timeout=None)
        payload = await trio.to_thread.run_sync(event_json, event)
        headers = {
            "content-type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": context.aws_request_id,
            "Lambda-Runtime-Deadline-Ms": str(int(context.deadline * 1000)),
            "Lambda-Runtime-Invoked-Function-Arn": context.invoked_function_arn,
        }
        body = bytearray()
        try:
            async with client.stream("POST", self.url, content=payload, headers=headers) as reply:
                async for chunk in reply.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise FunctionError(
                            "Function.ResponseSizeTooLarge",
                            f"the response is over {MAX_RESPONSE_BYTES} bytes",
                        )
                status = reply.status_code
        except httpx.HTTPError as exc:
            raise FunctionError(type(exc).__name__, str(exc) or repr(exc)) from exc
        if not 200 <= status < 300:
            text = body[-STDERR_TAIL_BYTES:].decode("utf-8", "replace").strip()
            raise FunctionError(f"HTTP {status}", text)
        return await _parse_response(bytes(body))

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


# -- ray -----------------------------------------------------------------------------


class RayTarget(Target):
    kind = "ray"

    def __init__(
        self,
        function_name: str,
        module: str,
        attribute: str,
        *,
        address: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        super().__init__(function_name)
        self.module = module
        self.attribute = attribute
        self.address = address
        self.limiter = trio.CapacityLimiter(concurrency or DEFAULT_THREAD_CONCURRENCY)
        self._ray: Any = None
        self._remote: Any = None

    def _connect(self) -> None:
        """In a thread: import ray and join (or start) the cluster, once."""
        try:
            ray: Any = importlib.import_module("ray")
        except ImportError as exc:
            raise FunctionError(
                "Runtime.ImportModuleError",
                f"ray is not installed (pip install 'shardline[ray]'): {exc}",
            ) from exc
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        self._remote = ray.remote(call_by_name)
        self._ray = ray

    async def _call(self, event: dict[str, Any], context: InvocationContext) -> Any:
        if self._remote is None:
            await trio.to_thread.run_sync(self._connect)
        ref = self._remote.remote(self.module, self.attribute, event, context)
        try:
            return await trio.to_thread.run_sync(
                self._get, ref, limiter=self.limiter, abandon_on_cancel=True
            )
        except trio.Cancelled:
            self._ray.cancel(ref, force=True)  # as Lambda ends a sandbox at its timeout
            raise

    def _get(self, ref: Any) -> Any:
        """In a thread: wait for the task; its exception, unwrapped, is the function's."""
        ray = self._ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, FunctionError):
                raise FunctionError(cause.error_type, cause.message) from None
            raise FunctionError(type(cause).__name__, str(cause)) from None
        except ray.exceptions.RayError as exc:
            # The worker died, the task was cancelled, the cluster went away: not an
            # exception of the function, but no result either.
            raise FunctionError(type(exc).__name__, str(exc)) from None

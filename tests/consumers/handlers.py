"""Functions the target tests invoke by name (``python:tests.consumers.handlers:NAME``).

Written as Lambda handlers are: ``handler(event, context)``. Run as a script
(``python handlers.py MODE``) it is the command of the ``exec:`` tests: the
event JSON on stdin, the response JSON on stdout.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any

import trio

not_callable = 42


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """An unmodified Lambda-style handler for Kinesis: decodes every record's data."""
    payloads = []
    for record in event["Records"]:
        payload = base64.b64decode(record["kinesis"]["data"])
        payloads.append(payload.decode())
    return {"payloads": payloads, "request": context.aws_request_id}


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return event


def context_info(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def fails(event: dict[str, Any], context: Any) -> None:
    raise ValueError("poison record")


def exits(event: dict[str, Any], context: Any) -> None:
    sys.exit(2)


def dies(event: dict[str, Any], context: Any) -> None:
    """Kills its own process: in process mode, the pool's child."""
    os._exit(3)


def pid(event: dict[str, Any], context: Any) -> int:
    return os.getpid()


def blocking(event: dict[str, Any], context: Any) -> str:
    time.sleep(event["sleep"])
    return "slept"


async def async_echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    await trio.sleep(0)
    return {"async": True, "records": len(event["Records"])}


async def async_fails(event: dict[str, Any], context: Any) -> None:
    await trio.sleep(0)
    raise KeyError("missing")


async def async_sleeps(event: dict[str, Any], context: Any) -> str:
    await trio.sleep(event["sleep"])
    return "woke"


class Nested:
    @staticmethod
    def handler(event: dict[str, Any], context: Any) -> str:
        return "nested"


def main() -> None:
    mode = sys.argv[1]
    event = json.loads(sys.stdin.buffer.read() or b"null")
    if mode == "count":
        answer = {"records": len(event["Records"]), "env": os.environ.get("AWS_REGION")}
        json.dump(answer, sys.stdout)
    elif mode == "decode":
        json.dump(lambda_handler(event, type("C", (), {"aws_request_id": "x"})()), sys.stdout)
    elif mode == "empty":
        pass
    elif mode == "garbage":
        sys.stdout.write("this is not JSON")
    elif mode == "fail":
        sys.stderr.write("x" * 10_000 + "\nTraceback: the end of stderr\n")
        sys.exit(3)
    elif mode == "huge":
        chunk = b" " * 65536
        for _ in range(7 * 1024 * 1024 // len(chunk) + 1):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.write(b"1")
    elif mode == "sleep":
        time.sleep(60)


if __name__ == "__main__":
    main()

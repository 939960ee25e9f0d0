"""Broker settings: one frozen dataclass, loaded from defaults, a TOML file and the command line.

The TOML file uses the same names as the dataclass fields (``data``, ``host``,
``port``, ``region``, ...), with the log's settings in a ``[log]`` table (and
``[log.env]`` for LMDB's) and the AWS wire's access keys in ``[aws_access_keys]``;
unknown names are an error that says which.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .log import EnvConfig, LogConfig

MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    data: str = "./data"
    host: str = "127.0.0.1"
    port: int = 4567
    #: Region and account of the ARNs the broker answers with and accepts.
    region: str = "us-east-1"
    account: str = "000000000000"
    #: Largest record (data plus partition key), bytes. Kinesis classic: 1 MiB; up to 10 MiB.
    max_record_bytes: int = 1 * MIB
    #: Largest PutRecords request (all data plus keys), bytes. Kinesis classic: 5 MiB; up to 10.
    max_request_records_bytes: int = 5 * MIB
    #: Largest HTTP request body the server reads, bytes (msgpack overhead on top of the records).
    max_body_bytes: int = 12 * MIB
    #: Shard iterators expire after this many seconds (Kinesis: 300).
    iterator_lifetime_s: float = 300.0
    #: Secret for iterator tokens; empty: a random one per start (iterators die with the process).
    iterator_secret: str = ""
    #: Optional per-shard write limits (Kinesis: 1 MiB/s and 1,000 records/s); 0 = off.
    shard_write_bytes_per_s: int = 0
    shard_write_records_per_s: int = 0
    #: Optional per-shard GetRecords limits (Kinesis: 5 calls/s and 2 MiB/s); 0 = off.
    shard_read_calls_per_s: int = 0
    shard_read_bytes_per_s: int = 0
    #: Registered consumers (enhanced fan-out) per stream (Kinesis: 20).
    max_consumers_per_stream: int = 20
    #: SubscribeToShard: a heartbeat event after this long without records.
    subscription_heartbeat_s: float = 1.0
    #: SubscribeToShard: a subscription ends cleanly after this long (Kinesis: 300 s).
    subscription_lifetime_s: float = 300.0
    #: SubscribeToShard: a second subscription for a (consumer, shard) within this is refused.
    subscription_takeover_window_s: float = 5.0
    #: Encoded push events kept in memory per subscribed shard for subscribers at the tail.
    fanout_tail_bytes: int = 32 * 1024 * 1024
    #: Bytes that lagging subscriptions' LMDB reads may hold at once, all together.
    fanout_budget_bytes: int = 256 * 1024 * 1024
    #: Optional rate per consumer per shard in bytes/s (Kinesis: 2 MiB/s); 0 = off.
    subscription_rate_bytes_per_s: int = 0
    #: Idempotent producers expire after this long without InitProducer or an idempotent
    #: batch (Kafka's producer.id.expiration.ms: a day).
    producer_idle_expiry_s: int = 86_400
    #: Server limits.
    max_connections: int = 1024
    max_concurrent_streams: int = 256
    max_header_bytes: int = 16 * 1024
    idle_timeout_s: float = 300.0
    shutdown_timeout_s: float = 10.0
    tls_cert: str | None = None
    tls_key: str | None = None
    #: AWS wire: access key id -> secret access key (a ``[aws_access_keys]`` table in TOML).
    #: Empty (the default): SigV4 signatures are not verified and any credentials work, as in
    #: emulators; otherwise every AWS-wire request must be signed with one of these
    #: (``broker/protocol/sigv4.py``). Out of repr (secrets) and out of the hash (a dict).
    aws_access_keys: dict[str, str] = field(default_factory=dict, repr=False, hash=False)
    log: LogConfig = field(default_factory=LogConfig)

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> BrokerConfig:
        """Defaults, then the TOML file at ``path`` (if any), then ``overrides`` (not None)."""
        values: dict[str, Any] = {}
        if path is not None:
            with open(path, "rb") as handle:
                values.update(tomllib.load(handle))
        values.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(values.get("log"), dict):
            log = dict(values["log"])
            env = log.pop("env", None)
            if isinstance(env, dict):
                log["env"] = EnvConfig(**env)
            values["log"] = LogConfig(**log)
        if "aws_access_keys" in values:
            values["aws_access_keys"] = _access_keys(values["aws_access_keys"])
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**values)

    def stream_arn(self, name: str) -> str:
        return f"arn:aws:kinesis:{self.region}:{self.account}:stream/{name}"


def _access_keys(table: Any) -> dict[str, str]:
    """The ``[aws_access_keys]`` table as a dict; a ``ValueError`` naming what is wrong."""
    if not isinstance(table, dict):
        raise ValueError('aws_access_keys must be a table of access key id = "secret"')
    for key_id, secret in table.items():
        if not key_id:
            raise ValueError("aws_access_keys: an access key id is empty")
        if not isinstance(secret, str) or not secret:
            raise ValueError(f"aws_access_keys.{key_id}: the secret must be a non-empty string")
    return dict(table)

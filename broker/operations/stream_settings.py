"""A stream's settings beyond its shards: capacity mode, enhanced monitoring, record size,
encryption; and the account's limits (``DescribeLimits``).

Each setting is stored in the stream's catalog record (``StreamDescription``)
by a pure transition of ``broker.log.catalog`` applied inside one durable
commit (``Log.change_settings``), so it survives a restart and goes with the
stream when it is deleted. Changes are synchronous, like resharding: the
stream never shows ``UPDATING``, and the answer comes after the commit.

**Capacity mode** (``UpdateStreamMode``; ``CreateStream``'s
``StreamModeDetails``): stored and answered in ``StreamModeDetails`` of
``DescribeStream``, ``DescribeStreamSummary`` and ``ListStreams``' summaries.
It is a label only: shardline has no automatic scaling, so an ``ON_DEMAND``
stream keeps the shards it has (4 when created ``ON_DEMAND`` without a
``ShardCount``) until someone reshards it, and switching modes changes no
shard. Kinesis' "two switches a day" quota is not enforced; setting the mode a
stream already has is accepted and changes nothing.

**Enhanced monitoring** (``Enable``/``DisableEnhancedMonitoring``): the list
of shard-level metric names (``ALL`` is the seven of them) is stored and
answered in ``EnhancedMonitoring`` of the descriptions, with the answer's
``CurrentShardLevelMetrics`` (before) and ``DesiredShardLevelMetrics`` (after:
the change is done at once, so this is also the new current list). It changes
nothing that shardline measures: there is no CloudWatch, and the Prometheus
``/metrics`` of the server always carry the per-shard gauges it has (newest
offset and trim horizon of every shard), while its record and byte counters
are per operation, broker-wide, whatever this setting says. Tools that set it
(Terraform's ``shard_level_metrics``) read back what they wrote.

**Record size** (``UpdateMaxRecordSize``; ``CreateStream``'s
``MaxRecordSizeInKiB``, 1024 to 10240): stored per stream and enforced by
``PutRecord``/``PutRecords`` (``record_limit``). The broker's
``max_record_bytes`` stays the ceiling over every stream (the operator's bound
on memory), so a stream's effective limit is the lower of the two, and
``DescribeStreamSummary``'s ``MaxRecordSizeInKiB`` answers that effective
limit (not a larger one the stream asked for); a record over it is
``InvalidArgumentException`` naming the limit. A stream that never set its own
limit has the broker's.

**Encryption** (``Start``/``StopStreamEncryption``): shardline has no KMS and
stores records as they arrive, so both are refused with
``InvalidArgumentException`` saying that server-side encryption is not
supported; every description says ``EncryptionType: NONE``. Encrypt the disk,
or the data before ``PutRecords``.

**DescribeLimits**: shardline has no account-wide shard quota, only
``log.max_shards_per_stream`` per stream. ``ShardLimit`` is what that allows
now: every existing stream at its cap plus one new stream
(``max_shards_per_stream`` x (streams + 1)), never below ``OpenShardCount`` and
never above 1,000,000 (the largest count Kinesis' model allows), so
``ShardLimit - OpenShardCount`` is room that really exists. There is no quota
of ``ON_DEMAND`` streams either: ``OnDemandStreamCountLimit`` is that same
1,000,000.
"""

from __future__ import annotations

from ..errors import InvalidArgumentError, ResourceNotFoundError, ValidationError
from ..log import catalog
from ..model import StreamDescription, StreamMode
from . import fields as f
from .base import Broker, Request, Response, operation

#: The largest count Kinesis' model allows in ``DescribeLimits``: "no limit" here.
UNLIMITED = 1_000_000
STREAM_MODES = tuple(str(m) for m in StreamMode)
ENCRYPTION_TYPES = ("NONE", "KMS")
MAX_KEY_ID_CHARS = 2048


def stream_mode(details: dict[str, object] | None) -> StreamMode | None:
    """The mode of a ``StreamModeDetails`` map (None when the map is absent)."""
    if details is None:
        return None
    return StreamMode(f.required_choice(details, "StreamMode", STREAM_MODES))


# -- capacity mode ---------------------------------------------------------------------


@operation("UpdateStreamMode")
async def update_stream_mode(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    details = f.optional_map(request, "StreamModeDetails")
    if details is None:
        raise ValidationError(
            "1 validation error detected: Value null at 'StreamModeDetails' failed to satisfy "
            "constraint: Member must not be null"
        )
    mode = stream_mode(details)
    assert mode is not None
    await broker.log.change_settings(name, lambda d: catalog.set_mode(d, mode))
    return {}


# -- enhanced monitoring ---------------------------------------------------------------


def _metric_names(request: Request) -> list[str]:
    names = f.required_list(
        request, "ShardLevelMetrics", min_len=1, max_len=len(catalog.SHARD_LEVEL_METRICS)
    )
    allowed = (*catalog.SHARD_LEVEL_METRICS, "ALL")
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise ValidationError(
                f"1 validation error detected: Value at 'ShardLevelMetrics[{i}]' failed to "
                f"satisfy constraint: Member must be a string, got {type(name).__name__}"
            )
        if name not in allowed:
            raise InvalidArgumentError(
                f"ShardLevelMetrics[{i}] {name!r} is not valid: expected one of "
                f"{', '.join(allowed)}"
            )
    return names


async def _monitoring(broker: Broker, request: Request, *, enable: bool) -> Response:
    name = f.required_stream(broker.config, request)
    names = _metric_names(request)
    before, after = await broker.log.change_settings(
        name, lambda d: catalog.set_shard_level_metrics(d, names, enable=enable)
    )
    return {
        "StreamName": name,
        "StreamARN": broker.config.stream_arn(name),
        "CurrentShardLevelMetrics": list(before.shard_level_metrics),
        "DesiredShardLevelMetrics": list(after.shard_level_metrics),
    }


@operation("EnableEnhancedMonitoring")
async def enable_enhanced_monitoring(broker: Broker, request: Request) -> Response:
    return await _monitoring(broker, request, enable=True)


@operation("DisableEnhancedMonitoring")
async def disable_enhanced_monitoring(broker: Broker, request: Request) -> Response:
    return await _monitoring(broker, request, enable=False)


# -- record size -----------------------------------------------------------------------


@operation("UpdateMaxRecordSize")
async def update_max_record_size(broker: Broker, request: Request) -> Response:
    name = f.required_stream(broker.config, request)
    kib = f.required_int(
        request, "MaxRecordSizeInKiB", low=catalog.MIN_RECORD_KIB, high=catalog.MAX_RECORD_KIB
    )
    await broker.log.change_settings(name, lambda d: catalog.set_max_record_size(d, kib))
    return {}


# -- encryption ------------------------------------------------------------------------


async def _encryption(broker: Broker, request: Request, action: str) -> Response:
    name = f.required_stream(broker.config, request)
    f.required_choice(request, "EncryptionType", ENCRYPTION_TYPES)
    f.required_str(request, "KeyId", max_len=MAX_KEY_ID_CHARS)
    broker.log.describe(name)
    raise InvalidArgumentError(
        f"Cannot {action} encryption of stream {name}: server-side encryption is not supported "
        "by shardline (it has no KMS). Records are stored unencrypted (EncryptionType NONE); "
        "encrypt the disk, or the data before it is put"
    )


@operation("StartStreamEncryption")
async def start_stream_encryption(broker: Broker, request: Request) -> Response:
    return await _encryption(broker, request, "start")


@operation("StopStreamEncryption")
async def stop_stream_encryption(broker: Broker, request: Request) -> Response:
    return await _encryption(broker, request, "stop")


# -- limits ----------------------------------------------------------------------------


@operation("DescribeLimits")
async def describe_limits(broker: Broker, request: Request) -> Response:
    streams: list[StreamDescription] = []
    for name in broker.log.list_streams():
        try:
            streams.append(broker.log.describe(name))
        except ResourceNotFoundError:  # deleted since it was listed
            continue
    open_shards = sum(len(d.open_shards) for d in streams)
    per_stream = broker.log.config.max_shards_per_stream
    shard_limit = max(open_shards, per_stream * (len(streams) + 1))
    return {
        "ShardLimit": min(UNLIMITED, shard_limit),
        "OpenShardCount": open_shards,
        "OnDemandStreamCount": sum(d.mode == StreamMode.ON_DEMAND for d in streams),
        "OnDemandStreamCountLimit": UNLIMITED,
    }

"""shardline's broker: the durable sharded log, the operations over it, and its network edge."""

from __future__ import annotations

__version__ = "0.1.0"

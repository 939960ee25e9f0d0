"""shardline consumers: subscribers, consumer groups and function consumers."""

from .group import Batch, BlockingConsumerGroup, ConsumerGroup, GroupStatistics

__all__ = ["Batch", "BlockingConsumerGroup", "ConsumerGroup", "GroupStatistics"]

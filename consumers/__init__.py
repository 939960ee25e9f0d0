"""shardline consumers: subscribers, consumer groups and function consumers."""

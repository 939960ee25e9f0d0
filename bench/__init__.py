"""shardline's benchmark suite: hot-path scenarios, peers side by side, JSON results."""

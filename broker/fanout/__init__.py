"""Enhanced fan-out: pushing a shard's records to registered consumers.

The pure building blocks, each usable without a server:

* ``events``: the push events of a SubscribeToShard body (encoders for the
  broker, ``EventDecoder`` for clients), schema in its docstring;
* ``credit``: byte credit per subscription drawn from one global budget, and
  the optional per-subscription rate limit;
* ``state``: the subscription state machine as a table, and the takeover rule.

The hub (commit listener, in-memory tail, subscription tasks) is built on them.
"""

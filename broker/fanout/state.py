"""The subscription state machine, as a table; and Kinesis' takeover rule.

Theory of operation. A subscription (one SubscribeToShard response) is driven
by a task that feeds this machine what happened (an ``Input``) and does what
it answers (an ``Action``). The machine decides; the task does the I/O.
``step`` looks the pair up in ``TRANSITIONS``; a pair that is not there cannot
happen in a correct driver and is an ``ImpossibleTransitionError``.

States::

    STARTING     the start position is resolved, nothing is sent yet
    CATCHING_UP  reading stored batches from LMDB: the tail does not hold the position
    TAIL         sent from the in-memory tail: each committed batch as it arrives
    SHARD_END    final: the end event was sent (the client reads the child shards next)
    ENDED        final: the response ended otherwise (lifetime, takeover, error, gone)

Inputs, as the driver observes them:

* ``BATCH_CONTIGUOUS``: the tail has a committed batch that starts exactly at
  the subscription's position. ``BATCH_GAP``: one that starts past it (records
  in between are not in the tail). ``FELL_BEHIND``: the tail no longer holds
  the position (the subscription was too slow for the tail's window).
  ``CAUGHT_UP``: the tail holds the position (nothing more to read from LMDB).
* ``STORED_READ``: a read of stored batches, asked for by ``READ_STORED`` or
  ``SEND_STORED``, returned records.
* ``HEARTBEAT_DUE``: the idle timer fired. ``LIFETIME_EXPIRED``: the
  subscription's lifetime (Kinesis: 5 minutes) is over. ``TAKEN_OVER``: a newer
  subscription for the same consumer and shard took over (``takeover``).
  ``END_REACHED``: the shard is closed and the position is past its last
  record. ``CONNECTION_CLOSED``: the client is gone (connection or stream
  reset). ``FAILED``: an error (the stream was deleted, a corrupt batch).

Actions:

* ``SEND_BATCH``: send the tail batch's event (the same bytes for everyone).
* ``READ_STORED``: read stored batches from the position, then feed
  ``STORED_READ``, ``CAUGHT_UP`` or ``END_REACHED``.
* ``SEND_STORED``: send the stored batches just read, then read on as for
  ``READ_STORED``.
* ``SEND_HEARTBEAT``: send a heartbeat event with the current continuation.
* Terminal, exactly one per response: ``SEND_END`` (the end event, with the
  child shards), ``SEND_ERROR`` (an error event naming the failure),
  ``SEND_ERROR_TAKEN_OVER`` (an error event, ``ResourceInUseException``),
  ``CLOSE`` (end the body after what is queued, no final event: the client
  subscribes again after its continuation), ``ABORT`` (the client is gone:
  send nothing, free what the subscription holds).
* ``IGNORE``: nothing to do (a tail batch while reading stored ones: the read
  will find it; anything after the response ended: timers and reads racing
  the end).

The invariants, checked by a property test over random input sequences: the
final states are absorbing; every response ends exactly once (one terminal
action, and one is reachable from every state); nothing is sent after a
terminal action; after a gap, nothing is sent before a ``READ_STORED``; every
entry into ``CATCHING_UP`` asks for ``READ_STORED``.
"""

from __future__ import annotations

import enum
from typing import Literal

from ..errors import InternalFailureError


class State(enum.Enum):
    STARTING = "STARTING"
    CATCHING_UP = "CATCHING_UP"
    TAIL = "TAIL"
    SHARD_END = "SHARD_END"
    ENDED = "ENDED"


class Input(enum.Enum):
    BATCH_CONTIGUOUS = "BATCH_CONTIGUOUS"
    BATCH_GAP = "BATCH_GAP"
    FELL_BEHIND = "FELL_BEHIND"
    CAUGHT_UP = "CAUGHT_UP"
    STORED_READ = "STORED_READ"
    HEARTBEAT_DUE = "HEARTBEAT_DUE"
    LIFETIME_EXPIRED = "LIFETIME_EXPIRED"
    TAKEN_OVER = "TAKEN_OVER"
    END_REACHED = "END_REACHED"
    CONNECTION_CLOSED = "CONNECTION_CLOSED"
    FAILED = "FAILED"


class Action(enum.Enum):
    SEND_BATCH = "SEND_BATCH"
    READ_STORED = "READ_STORED"
    SEND_STORED = "SEND_STORED"
    SEND_HEARTBEAT = "SEND_HEARTBEAT"
    SEND_END = "SEND_END"
    SEND_ERROR = "SEND_ERROR"
    SEND_ERROR_TAKEN_OVER = "SEND_ERROR_TAKEN_OVER"
    CLOSE = "CLOSE"
    ABORT = "ABORT"
    IGNORE = "IGNORE"


#: States a subscription never leaves: its response has ended.
FINAL_STATES = frozenset({State.SHARD_END, State.ENDED})
#: Actions that end the response; exactly one per subscription.
TERMINAL_ACTIONS = frozenset(
    {Action.SEND_END, Action.SEND_ERROR, Action.SEND_ERROR_TAKEN_OVER, Action.CLOSE, Action.ABORT}
)
#: Actions that send records.
RECORD_ACTIONS = frozenset({Action.SEND_BATCH, Action.SEND_STORED})


class ImpossibleTransitionError(InternalFailureError):
    """The driver fed an input that cannot happen in the subscription's state (a broker bug)."""

    def __init__(self, state: State, event: Input) -> None:
        super().__init__(f"subscription state {state.value} cannot take input {event.value}")
        self.state = state
        self.input = event


# Every way a live subscription ends, the same from each live state.
_ENDINGS: dict[Input, tuple[State, Action]] = {
    Input.END_REACHED: (State.SHARD_END, Action.SEND_END),
    Input.LIFETIME_EXPIRED: (State.ENDED, Action.CLOSE),
    Input.TAKEN_OVER: (State.ENDED, Action.SEND_ERROR_TAKEN_OVER),
    Input.FAILED: (State.ENDED, Action.SEND_ERROR),
    Input.CONNECTION_CLOSED: (State.ENDED, Action.ABORT),
}

_LIVE: dict[State, dict[Input, tuple[State, Action]]] = {
    State.STARTING: {
        Input.BATCH_CONTIGUOUS: (State.TAIL, Action.SEND_BATCH),
        Input.BATCH_GAP: (State.CATCHING_UP, Action.READ_STORED),
        Input.FELL_BEHIND: (State.CATCHING_UP, Action.READ_STORED),
        Input.CAUGHT_UP: (State.TAIL, Action.IGNORE),
        # STORED_READ: no read was asked for.
        Input.HEARTBEAT_DUE: (State.STARTING, Action.SEND_HEARTBEAT),
        **_ENDINGS,
    },
    State.CATCHING_UP: {
        Input.BATCH_CONTIGUOUS: (State.CATCHING_UP, Action.IGNORE),
        Input.BATCH_GAP: (State.CATCHING_UP, Action.IGNORE),
        Input.FELL_BEHIND: (State.CATCHING_UP, Action.IGNORE),
        Input.CAUGHT_UP: (State.TAIL, Action.IGNORE),
        Input.STORED_READ: (State.CATCHING_UP, Action.SEND_STORED),
        Input.HEARTBEAT_DUE: (State.CATCHING_UP, Action.SEND_HEARTBEAT),
        **_ENDINGS,
    },
    State.TAIL: {
        Input.BATCH_CONTIGUOUS: (State.TAIL, Action.SEND_BATCH),
        Input.BATCH_GAP: (State.CATCHING_UP, Action.READ_STORED),
        Input.FELL_BEHIND: (State.CATCHING_UP, Action.READ_STORED),
        Input.CAUGHT_UP: (State.TAIL, Action.IGNORE),
        # STORED_READ: no read was asked for.
        Input.HEARTBEAT_DUE: (State.TAIL, Action.SEND_HEARTBEAT),
        **_ENDINGS,
    },
}

#: ``(state, input) -> (next state, action)``; a pair not here is impossible.
TRANSITIONS: dict[tuple[State, Input], tuple[State, Action]] = {
    (state, event): outcome for state, row in _LIVE.items() for event, outcome in row.items()
}
# A final state ignores everything: timers, reads and batches racing the end.
TRANSITIONS.update(
    {(final, event): (final, Action.IGNORE) for final in FINAL_STATES for event in Input}
)


def step(state: State, event: Input) -> tuple[State, Action]:
    """The next state and the action for ``event`` in ``state``."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise ImpossibleTransitionError(state, event) from None


class SubscriptionState:
    """One subscription's current state, stepped by its driver."""

    __slots__ = ("state",)

    def __init__(self, state: State = State.STARTING) -> None:
        self.state = state

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def step(self, event: Input) -> Action:
        self.state, action = step(self.state, event)
        return action


# -- takeover ----------------------------------------------------------------

#: Kinesis: a second SubscribeToShard for a (consumer, shard) within 5 s is refused.
TAKEOVER_WINDOW_S = 5.0

Takeover = Literal["refuse", "take_over", "fresh"]


def takeover(previous_started_at: float | None, now: float, window_s: float) -> Takeover:
    """What a new subscription does about a live one for the same consumer and shard.

    ``previous_started_at`` is when the live one started (None: there is
    none), on the same clock as ``now``. Within ``window_s`` of it the new one
    is refused (``ResourceInUseException``); from then on it takes over, and
    the old one ends with ``TAKEN_OVER``. A clock that went back counts as
    within the window.
    """
    if previous_started_at is None:
        return "fresh"
    if now - previous_started_at < window_s:
        return "refuse"
    return "take_over"

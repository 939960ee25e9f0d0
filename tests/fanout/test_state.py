"""The subscription state machine's table and its invariants; the takeover rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import InternalFailureError
from broker.fanout.state import (
    FINAL_STATES,
    RECORD_ACTIONS,
    TAKEOVER_WINDOW_S,
    TERMINAL_ACTIONS,
    TRANSITIONS,
    Action,
    ImpossibleTransitionError,
    Input,
    State,
    SubscriptionState,
    step,
    takeover,
)

LIVE_STATES = [s for s in State if s not in FINAL_STATES]
GAPS = {Input.BATCH_GAP, Input.FELL_BEHIND}
ENDINGS = [
    Input.END_REACHED,
    Input.LIFETIME_EXPIRED,
    Input.TAKEN_OVER,
    Input.FAILED,
    Input.CONNECTION_CLOSED,
]


def test_the_impossible_pairs_are_exactly_reads_nobody_asked_for() -> None:
    impossible = {(s, i) for s in State for i in Input if (s, i) not in TRANSITIONS}
    assert impossible == {(State.STARTING, Input.STORED_READ), (State.TAIL, Input.STORED_READ)}
    for state, event in impossible:
        with pytest.raises(ImpossibleTransitionError) as caught:
            step(state, event)
        assert isinstance(caught.value, InternalFailureError)
        assert (caught.value.state, caught.value.input) == (state, event)
        assert state.value in caught.value.message and event.value in caught.value.message


@pytest.mark.parametrize("final", [State.SHARD_END, State.ENDED])
@pytest.mark.parametrize("event", list(Input))
def test_final_states_are_absorbing_and_silent(final: State, event: Input) -> None:
    assert final in FINAL_STATES
    assert step(final, event) == (final, Action.IGNORE)


@pytest.mark.parametrize("state", LIVE_STATES)
@pytest.mark.parametrize("event", ENDINGS)
def test_every_live_state_can_end_and_ending_is_terminal(state: State, event: Input) -> None:
    after, action = step(state, event)
    assert after in FINAL_STATES and action in TERMINAL_ACTIONS


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (Input.END_REACHED, (State.SHARD_END, Action.SEND_END)),
        (Input.LIFETIME_EXPIRED, (State.ENDED, Action.CLOSE)),
        (Input.TAKEN_OVER, (State.ENDED, Action.SEND_ERROR_TAKEN_OVER)),
        (Input.FAILED, (State.ENDED, Action.SEND_ERROR)),
        (Input.CONNECTION_CLOSED, (State.ENDED, Action.ABORT)),
    ],
)
def test_how_each_ending_ends(event: Input, expected: tuple[State, Action]) -> None:
    assert {step(s, event) for s in LIVE_STATES} == {expected}


def test_entering_catching_up_always_asks_for_a_read() -> None:
    for (state, _event), (after, action) in TRANSITIONS.items():
        if after is State.CATCHING_UP and state is not State.CATCHING_UP:
            assert action is Action.READ_STORED


def test_every_state_is_reachable_from_starting() -> None:
    seen, frontier = {State.STARTING}, [State.STARTING]
    while frontier:
        state = frontier.pop()
        for (source, _event), (after, _action) in TRANSITIONS.items():
            if source is state and after not in seen:
                seen.add(after)
                frontier.append(after)
    assert seen == set(State)


def test_a_typical_life() -> None:
    sub = SubscriptionState()
    script = [
        (Input.FELL_BEHIND, Action.READ_STORED, State.CATCHING_UP),
        (Input.STORED_READ, Action.SEND_STORED, State.CATCHING_UP),
        (Input.BATCH_CONTIGUOUS, Action.IGNORE, State.CATCHING_UP),
        (Input.STORED_READ, Action.SEND_STORED, State.CATCHING_UP),
        (Input.CAUGHT_UP, Action.IGNORE, State.TAIL),
        (Input.BATCH_CONTIGUOUS, Action.SEND_BATCH, State.TAIL),
        (Input.HEARTBEAT_DUE, Action.SEND_HEARTBEAT, State.TAIL),
        (Input.BATCH_GAP, Action.READ_STORED, State.CATCHING_UP),
        (Input.CAUGHT_UP, Action.IGNORE, State.TAIL),
        (Input.END_REACHED, Action.SEND_END, State.SHARD_END),
        (Input.HEARTBEAT_DUE, Action.IGNORE, State.SHARD_END),
    ]
    for event, action, state in script:
        assert sub.step(event) is action
        assert sub.state is state
        assert sub.finished == (state is State.SHARD_END)


@given(st.lists(st.sampled_from(list(Input)), max_size=40), st.sampled_from(ENDINGS))
def test_random_paths_keep_the_invariants(inputs: list[Input], ending: Input) -> None:
    state = State.STARTING
    terminal = 0
    must_read = False  # a gap was seen and no READ_STORED followed yet
    for event in [*inputs, ending]:
        if (state, event) not in TRANSITIONS:
            with pytest.raises(ImpossibleTransitionError):
                step(state, event)
            continue
        before = state
        state, action = step(state, event)
        if before in FINAL_STATES:
            assert state is before and action is Action.IGNORE  # absorbing, silent
        if terminal:
            # Nothing is sent after the response ended: no records, no heartbeat, no end.
            assert action is Action.IGNORE
        if action in TERMINAL_ACTIONS:
            terminal += 1
            assert state in FINAL_STATES
        if event in GAPS and before in (State.STARTING, State.TAIL):
            must_read = True
        if action is Action.READ_STORED:
            must_read = False
        if action in RECORD_ACTIONS:
            assert not must_read, "records sent after a gap without reading the store"
        if action is Action.SEND_BATCH:
            assert state is State.TAIL
        if action is Action.SEND_STORED:
            assert before is State.CATCHING_UP and event is Input.STORED_READ
    # The last input was an ending: every path ends the response, exactly once.
    assert state in FINAL_STATES
    assert terminal == 1


# -- takeover -----------------------------------------------------------------------


def test_takeover_rule() -> None:
    assert takeover(None, 100.0, TAKEOVER_WINDOW_S) == "fresh"
    assert takeover(100.0, 100.0, 5.0) == "refuse"
    assert takeover(100.0, 104.999, 5.0) == "refuse"
    assert takeover(100.0, 105.0, 5.0) == "take_over"  # Kinesis: 5 s or more later
    assert takeover(100.0, 1000.0, 5.0) == "take_over"
    assert takeover(100.0, 90.0, 5.0) == "refuse"  # a clock that went back


@given(
    started=st.floats(0, 1e6),
    elapsed=st.floats(-1e3, 1e3),
    window=st.floats(0.001, 60),
)
def test_takeover_refuses_exactly_within_the_window(
    started: float, elapsed: float, window: float
) -> None:
    now = started + elapsed
    expected = "refuse" if now - started < window else "take_over"
    assert takeover(started, now, window) == expected
    assert takeover(None, now, window) == "fresh"

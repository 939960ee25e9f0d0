"""WORKAROUND (remove when h2 stops doing it): h2's per-frame ``repr`` cost.

h2 4.4.1 calls ``self.config.logger.trace("Received frame: %s", repr(frame))``
in ``H2Connection._receive_frame`` for every frame it receives, even when
logging is off: the ``repr`` is built before the no-op logger is called. For a
DATA frame hyperframe's ``Frame.__repr__`` falls back to ``_body_repr``, which
serialises the whole body again and hex-encodes its start, so receiving runs
about 3x slower than it should (DESIGN.md, performance budget).

This module is the one place that neutralises it: it replaces
``hyperframe.frame.Frame.__repr__`` with a cheap one that names the frame type,
stream, flags and body length but not the payload. The original stays at
``ORIGINAL_FRAME_REPR`` for debugging. ``apply()`` is idempotent and is called
when the server's and the client's h2 modules are imported.

Remove this module (and its test, ``tests/server/test_h2_patch.py``) when h2
no longer builds ``repr(frame)`` eagerly in ``_receive_frame``.
"""

from __future__ import annotations

from collections.abc import Callable

from hyperframe.frame import Frame

ORIGINAL_FRAME_REPR: Callable[[Frame], str] = Frame.__repr__


def cheap_frame_repr(frame: Frame) -> str:
    """The frame's type, stream, flags and body length; never its payload."""
    return (
        f"{type(frame).__name__}(stream_id={frame.stream_id}, "
        f"flags={sorted(frame.flags)!r}, body_len={frame.body_len})"
    )


def apply() -> None:
    """Install the cheap repr on every hyperframe frame class (idempotent)."""
    Frame.__repr__ = cheap_frame_repr  # type: ignore[method-assign]


def is_applied() -> bool:
    return Frame.__repr__ is cheap_frame_repr


apply()

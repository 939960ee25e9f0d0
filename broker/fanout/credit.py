"""Byte credit for subscriptions: per-subscription bounds, one global budget, a rate.

Theory of operation. Every byte a subscription holds in memory (an event
waiting for its connection to take it) is *credit* it took first, and gives
back when the bytes left the process (handed to the socket), or all at once
when the subscription closes. Two bounds apply to every take:

* the subscription's own bound (``Credit(limit_bytes=...)``): what one slow
  reader can pin;
* the global ``ByteBudget``, which all subscriptions draw from: what all of
  them together can pin, so the broker's memory stays bounded however many
  subscribe.

A take of ``n`` bytes is allowed when the subscription holds at most
``limit - n`` and the budget has ``n`` free. A single take larger than a bound
is allowed when that bound's holder holds nothing (the subscription for its
own bound, the whole broker for the budget), so a large event is never stuck
and progress is always possible; the budget is then exceeded by that one take,
until it is released, and nothing else is admitted meanwhile.

Fairness. Takers wait in two queues. Each subscription queues its own takers
first-come first-served; only its first taker, and only once the
subscription's own bound allows it, joins the budget's queue, which grants
strictly in order: a taker that does not fit yet holds up those behind it, so
a large take is never starved by small ones. A stalled subscription (its
reader stopped, its credit used up) waits on its own bound and never enters
the budget's queue: it costs the others nothing. ``try_take`` never jumps
either queue.

Nothing here knows about h2, sockets or HTTP: the edge that sends the bytes
calls ``release``, so an HTTP/1.1 streamed response can drive the same
accounting. Waiting uses one ``trio.Event`` per waiting taker, set by whoever
frees the credit; no timer polls.

The optional rate limit is a token bucket per subscription (off by default):
``wait_rate(n)`` returns when ``n`` more bytes may go out, sleeping exactly as
long as the bucket needs to refill. A bucket holds ``burst_bytes`` (default:
one second's worth); a chunk larger than that passes when the bucket is full
and leaves it in debt, so the long-run rate holds for chunks of any size.
``TokenBucket`` is the pure arithmetic, with time passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import trio


@dataclass(frozen=True, slots=True)
class BudgetStatistics:
    total: int
    held: int
    #: Takers waiting for the budget (their own bound already allows them).
    waiting: int


@dataclass(frozen=True, slots=True)
class CreditStatistics:
    limit: int
    held: int
    #: Takers of this subscription waiting for credit.
    waiting: int
    closed: bool


@dataclass(eq=False, slots=True)
class _Taker:
    credit: Credit
    n: int
    event: trio.Event = field(default_factory=trio.Event)
    #: In the budget's queue (its subscription's own bound allows it).
    ready: bool = False
    granted: bool = False
    closed: bool = False


class ByteBudget:
    """The bytes that all subscriptions together may hold."""

    def __init__(self, total_bytes: int) -> None:
        if total_bytes < 1:
            raise ValueError(f"a byte budget must be positive, got {total_bytes}")
        self.total = total_bytes
        self.held = 0
        # Insertion-ordered: the queue, with O(1) removal of a cancelled taker.
        self._ready: dict[_Taker, None] = {}

    @property
    def available(self) -> int:
        return max(0, self.total - self.held)

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(self.total, self.held, len(self._ready))

    def _fits(self, n: int) -> bool:
        return self.held + n <= self.total or self.held == 0

    def _grant(self) -> None:
        """Grant the budget's queue in order, up to the first taker that does not fit."""
        ready = self._ready
        while ready:
            taker = next(iter(ready))
            if not self._fits(taker.n):
                return
            del ready[taker]
            credit = taker.credit
            credit._takers.popleft()  # a ready taker is its subscription's first
            credit.held += taker.n
            self.held += taker.n
            taker.ready = False
            taker.granted = True
            taker.event.set()
            credit._advance()


class Credit:
    """One subscription's byte credit, drawn from a shared ``ByteBudget``.

    ``limit_bytes`` bounds what the subscription may hold; ``rate_bytes_per_s``
    (off when None) bounds how fast ``wait_rate`` lets bytes out.
    """

    def __init__(
        self,
        budget: ByteBudget,
        limit_bytes: int,
        *,
        rate_bytes_per_s: float | None = None,
        burst_bytes: int | None = None,
    ) -> None:
        if limit_bytes < 1:
            raise ValueError(f"a subscription's credit limit must be positive, got {limit_bytes}")
        self.budget = budget
        self.limit = limit_bytes
        self.held = 0
        self.closed = False
        self._takers: deque[_Taker] = deque()
        self.rate: TokenBucket | None = None
        if rate_bytes_per_s is not None:
            self.rate = TokenBucket(rate_bytes_per_s, burst_bytes)

    @property
    def available(self) -> int:
        """Bytes a take could get at once (0 while others wait ahead of it)."""
        if self.closed or self._takers or self.budget._ready:
            return 0
        return max(0, min(self.limit - self.held, self.budget.available))

    def statistics(self) -> CreditStatistics:
        return CreditStatistics(self.limit, self.held, len(self._takers), self.closed)

    def _own_fits(self, n: int) -> bool:
        return self.held + n <= self.limit or self.held == 0

    def _advance(self) -> None:
        """Put the first waiting taker in the budget's queue once the own bound allows it."""
        if self._takers:
            first = self._takers[0]
            if not first.ready and self._own_fits(first.n):
                first.ready = True
                self.budget._ready[first] = None

    # -- taking and giving back -----------------------------------------------

    def try_take(self, n: int) -> bool:
        """Take ``n`` bytes if both bounds allow it now and nobody waits ahead."""
        _check_amount(n)
        if self.closed:
            raise trio.ClosedResourceError("this subscription's credit is closed")
        budget = self.budget
        if self._takers or budget._ready or not self._own_fits(n) or not budget._fits(n):
            return False
        self.held += n
        budget.held += n
        return True

    async def take(self, n: int) -> None:
        """Take ``n`` bytes, waiting in turn until both bounds allow it.

        ``trio.ClosedResourceError`` if the credit is closed, or closes while
        this waits. Cancelled, it takes nothing.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self.try_take(n):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        taker = _Taker(self, n)
        self._takers.append(taker)
        self._advance()
        self.budget._grant()
        try:
            await taker.event.wait()
        except BaseException:
            if taker.granted:
                self.release(n)
            else:
                self._withdraw(taker)
            raise
        if taker.closed:
            raise trio.ClosedResourceError("this subscription's credit was closed")

    def release(self, n: int) -> None:
        """Give back ``n`` bytes that left the process; a no-op once closed."""
        _check_amount(n)
        if self.closed:
            return  # close() gave everything back already
        if n > self.held:
            raise ValueError(f"releasing {n} bytes of credit, but only {self.held} are held")
        self.held -= n
        self.budget.held -= n
        self._advance()
        self.budget._grant()

    def close(self) -> None:
        """Give back everything held and fail every waiting taker; idempotent."""
        if self.closed:
            return
        self.closed = True
        budget = self.budget
        budget.held -= self.held
        self.held = 0
        for taker in self._takers:
            budget._ready.pop(taker, None)
            taker.closed = True
            taker.event.set()
        self._takers.clear()
        budget._grant()

    def _withdraw(self, taker: _Taker) -> None:
        """A waiting taker gave up (cancelled): let those behind it move."""
        if taker.closed:
            return
        self._takers.remove(taker)
        self.budget._ready.pop(taker, None)
        self._advance()
        self.budget._grant()

    # -- rate -----------------------------------------------------------------

    async def wait_rate(self, n: int) -> None:
        """Return when ``n`` more bytes may go out at this subscription's rate.

        Without a rate limit, returns at once (after a checkpoint). Meant for
        the one task that sends a subscription's bytes; concurrent callers are
        served correctly but in no particular order.
        """
        _check_amount(n)
        bucket = self.rate
        if bucket is not None:
            while (delay := bucket.delay(n, trio.current_time())) > 0:
                await trio.sleep(delay)
        await trio.lowlevel.checkpoint_if_cancelled()
        if bucket is not None:
            bucket.consume(n, trio.current_time())
        await trio.lowlevel.cancel_shielded_checkpoint()


class TokenBucket:
    """A token bucket in bytes: ``rate`` per second, holding at most ``burst``.

    Pure: every method takes ``now`` (seconds, any monotonic clock). The
    bucket starts full at its first use. ``n`` bytes may pass once the bucket
    holds ``min(n, burst)``; passing takes ``n``, which may leave it in debt.
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"a rate limit must be positive, got {rate}")
        self.rate = float(rate)
        self.burst = max(1, int(rate)) if burst is None else burst
        if self.burst < 1:
            raise ValueError(f"a burst must be positive, got {burst}")
        self.tokens = float(self.burst)
        self._stamp: float | None = None

    def _refill(self, now: float) -> None:
        if self._stamp is None or now < self._stamp:
            # First use, or a clock that went back: count from now.
            self._stamp = now
            return
        self.tokens = min(float(self.burst), self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def delay(self, n: int, now: float) -> float:
        """Seconds from ``now`` until ``n`` bytes may pass (0 if they may now)."""
        self._refill(now)
        missing = min(n, self.burst) - self.tokens
        # A millionth of a byte short is rounding in the refill, not a reason to sleep again.
        return missing / self.rate if missing > 1e-6 else 0.0

    def consume(self, n: int, now: float) -> None:
        """Let ``n`` bytes pass at ``now`` (whether or not they had to wait)."""
        self._refill(now)
        self.tokens -= n


def _check_amount(n: int) -> None:
    if n < 0:
        raise ValueError(f"an amount of credit cannot be negative, got {n}")

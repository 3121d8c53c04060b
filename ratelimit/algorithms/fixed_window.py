"""Fixed window: at most ``L`` per window ``[k·P, (k+1)·P)``.

State: the window index and the count admitted in it, packed in one int
``window · (L + 1) + count`` (one small object per key).

Cheap and O(1), but a client can pass up to ``2L`` across a window edge (``L`` at the end of
one window, ``L`` at the start of the next).

A debt (after a ``charge``) is a count above ``L``: its excess carries into the next windows,
``L`` a window (window ``w + k`` starts at ``count − k·L``), until it is paid. Such a state
is stored as the negative number ``−(window · D + count)``, ``D`` above any count a debt
can reach, so the usual reading (which only accepts ``0 ≤ count ≤ L``) never takes it for
an ordinary one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratelimit.algorithms import AlgorithmBase
from ratelimit.decision import INF, Decision, new_decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit


class FixedWindow(AlgorithmBase):
    """Counts admitted cost per fixed window of ``period`` aligned to the clock."""

    name = "fixed_window"
    lua = "fixed_window.lua"
    __slots__ = ("_base", "_debt_base")

    def __init__(self, policy: Limit) -> None:
        super().__init__(policy)
        self._base = self.limit + 1
        self._debt_base = self.limit + self.max_debt + 1

    def step(self, state: int | None, now: int, cost: int) -> tuple[int | None, Decision]:
        # Every integer operation allocates in CPython: this is written with as few as it takes.
        limit = self.limit
        window, elapsed = divmod(now, self.period)
        packed_window = window * self._base
        count = 0
        if state is not None:
            # state = saved_window · (L + 1) + saved_count with 0 ≤ saved_count ≤ L, so this
            # difference is the saved count exactly when the saved window is this one.
            count = state - packed_window
            if not 0 <= count <= limit:
                if state < 0:  # a debt
                    return self._in_debt(state, now, cost)
                count = 0
        reset = (self.period - elapsed) / 1000
        total = count + cost
        if total <= limit:
            # (total is 0 only for a cost-0 probe of a fresh key: Limiter.peek)
            decision = new_decision(
                (True, limit, limit - total, reset if total else 0.0, 0.0, 0.0, self.policy)
            )
            return packed_window + total, decision
        retry = INF if cost > limit else reset
        return None, new_decision(
            (False, limit, limit - count, reset if count else 0.0, retry, 0.0, self.policy)
        )

    def _carried(self, state: int, window: int) -> int:
        """The count of ``window`` under the debt state ``state`` (what is still owed)."""
        saved_window, count = divmod(-state, self._debt_base)
        return max(0, count - self.limit * (window - saved_window))

    def _in_debt(self, state: int, now: int, cost: int) -> tuple[int | None, Decision]:
        """:meth:`step` for a key with a debt state: decided on the count carried into this
        window (admitted once it is ``L - cost`` or less)."""
        limit, period = self.limit, self.period
        window, elapsed = divmod(now, period)
        count = self._carried(state, window)
        if count + cost <= limit:  # paid off: an ordinary window again
            return self.step(window * self._base + count if count else None, now, cost)
        to_end = period - elapsed
        # Windows until the carried count leaves room for `cost`, and until it is gone.
        waits = -(-(count + cost - limit) // limit)
        fresh = -(-count // limit)
        retry = INF if cost > limit else (to_end + (waits - 1) * period) / 1000
        reset = (to_end + (fresh - 1) * period) / 1000 if count else 0.0
        return None, new_decision(
            (False, limit, max(0, limit - count), reset, retry, 0.0, self.policy)
        )

    def charge(self, state: int | None, now: int, delta: int, since: int) -> int | None:
        """Count ``delta`` more in this window (``delta < 0``: give back, if the request's
        window is still this one), even past the limit: a debt (see the module docstring)."""
        limit, period = self.limit, self.period
        window = now // period
        delta = self.bounded(delta)
        count = 0
        if state is not None:
            if state < 0:
                count = self._carried(state, window)
            elif state // self._base == window:
                count = state % self._base
        if delta < 0:
            if since // period != window:
                return None  # the request's window has ended: its count stays
            count = max(0, count + delta)
        else:
            count = min(count + delta, limit + self.max_debt)
        if count <= limit:
            return window * self._base + count
        return -(window * self._debt_base + count)

    def expires_at(self, state: int) -> int:
        if state < 0:  # a debt: fresh once the carried count is gone
            window, count = divmod(-state, self._debt_base)
            return (window + -(-count // self.limit)) * self.period
        window = state // self._base
        return (window + 1) * self.period

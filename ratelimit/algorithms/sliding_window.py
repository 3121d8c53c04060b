"""Sliding window counter (the weighted counter Cloudflare describes).

Counts per fixed window as :mod:`fixed_window` does, but admits only while
``prev · (P − e) / P + curr + cost ≤ L``, where ``e`` is the time since the current window
began: the previous window's count is weighted by how much of it still overlaps the sliding
window ``(now − P, now]``. O(1) memory, smooths the edge burst of a fixed window; it assumes
the previous window's requests were spread evenly.

All arithmetic is in integers: the test is ``prev · (P − e) + (curr + cost) · P ≤ L · P``.

State: window index, previous count, current count, packed as
``(window · (L + 1) + prev) · (L + 1) + curr``.

A debt (after a ``charge``) is a current count above ``L``: its excess carries into the next
windows, ``L`` a window (window ``w + k`` counts ``curr − k·L`` and sees ``min(L, curr −
(k−1)·L)`` as its previous window), until it is paid. Such a state is stored as the negative
number ``−((window · D + prev) · D + curr)``, ``D`` above any count a debt can reach.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratelimit.algorithms import AlgorithmBase
from ratelimit.decision import INF, Decision, new_decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit


class SlidingWindow(AlgorithmBase):
    """Weighted two-window counter; see the module docstring for the formula."""

    name = "sliding_window"
    lua = "sliding_window.lua"
    __slots__ = ("_base", "_debt_base")

    def __init__(self, policy: Limit) -> None:
        super().__init__(policy)
        self._base = self.limit + 1
        self._debt_base = self.limit + self.max_debt + 1

    def step(self, state: int | None, now: int, cost: int) -> tuple[int | None, Decision]:
        limit, period = self.limit, self.period
        window, elapsed = divmod(now, period)
        start = window * period
        # The (previous, current) counts as seen from this window (inline: this runs per request).
        prev = curr = 0
        if state is not None:
            base = self._base
            rest, saved_curr = divmod(state, base)
            saved_window, saved_prev = divmod(rest, base)
            if saved_window == window:
                prev, curr = saved_prev, saved_curr
            elif state < 0:  # a debt (its window never reads as this one: it is negative)
                return self._in_debt(state, now, cost)
            elif saved_window == window - 1:
                prev = saved_curr
        weight = period - elapsed  # how much of the previous window still overlaps, in ms
        free = limit * period - prev * weight - curr * period  # spare capacity, scaled by P
        admitted = cost * period <= free
        if admitted:
            curr += cost
            free -= cost * period
        # Fresh again once the current count has left the next window's weighting too.
        if curr:
            reset = (start + 2 * period - now) / 1000
        elif prev:
            reset = (start + period - now) / 1000
        else:
            reset = 0.0
        if admitted:
            decision = new_decision((True, limit, free // period, reset, 0.0, 0.0, self.policy))
            return (window * self._base + prev) * self._base + curr, decision
        if cost > limit:
            retry = INF
        elif curr + cost <= limit:
            # Wait until the previous window's weight has shrunk enough.
            retry = (start + period - ((limit - curr - cost) * period) // prev - now) / 1000
        else:
            # Wait into the next window, where the current count becomes the previous one.
            retry = (start + 2 * period - ((limit - cost) * period) // curr - now) / 1000
        return None, new_decision(
            (False, limit, max(0, free // period), reset, retry, 0.0, self.policy)
        )

    def _carried(self, state: int, window: int) -> tuple[int, int]:
        """The (previous, current) counts of ``window`` under the debt state ``state``."""
        limit, debt_base = self.limit, self._debt_base
        rest, curr = divmod(-state, debt_base)
        saved_window, prev = divmod(rest, debt_base)
        ahead = window - saved_window
        if ahead <= 0:
            return prev, curr
        return min(limit, max(0, curr - (ahead - 1) * limit)), max(0, curr - ahead * limit)

    def _in_debt(self, state: int, now: int, cost: int) -> tuple[int | None, Decision]:
        """:meth:`step` for a key with a debt state: decided on the counts carried into this
        window."""
        limit, period, base = self.limit, self.period, self._base
        window = now // period
        prev, curr = self._carried(state, window)
        if curr <= limit:  # paid off: an ordinary pair of windows again
            ordinary = (window * base + prev) * base + curr if prev or curr else None
            return self.step(ordinary, now, cost)
        start = window * period
        # The first window whose carried count leaves room for `cost`, and when in it the
        # previous window's weight has shrunk enough; fresh once the count has left both.
        retry = INF
        if cost <= limit:
            ahead = -(-(curr + cost - limit) // limit)
            then_curr = max(0, curr - ahead * limit)
            then_prev = min(limit, curr - (ahead - 1) * limit)
            wait = period - ((limit - then_curr - cost) * period) // then_prev
            retry = (start + ahead * period + wait - now) / 1000
        reset = (start + (-(-curr // limit) + 1) * period - now) / 1000
        return None, new_decision((False, limit, 0, reset, retry, 0.0, self.policy))

    def charge(self, state: int | None, now: int, delta: int, since: int) -> int | None:
        """Count ``delta`` more in this window (``delta < 0``: give back, if the request's
        window is still this one), even past the limit: a debt (see the module docstring)."""
        limit, period, base = self.limit, self.period, self._base
        window = now // period
        delta = self.bounded(delta)
        prev = curr = 0
        if state is not None:
            if state < 0:
                prev, curr = self._carried(state, window)
            else:
                rest, saved_curr = divmod(state, base)
                saved_window, saved_prev = divmod(rest, base)
                if saved_window == window:
                    prev, curr = saved_prev, saved_curr
                elif saved_window == window - 1:
                    prev = saved_curr
        if delta < 0:
            if since // period != window:
                return None  # the request's window has ended: its count stays
            curr = max(0, curr + delta)
        else:
            curr = min(curr + delta, limit + self.max_debt)
        if curr <= limit:
            return (window * base + prev) * base + curr
        return -((window * self._debt_base + prev) * self._debt_base + curr)

    def expires_at(self, state: int) -> int:
        if state < 0:  # a debt: fresh once the carried count has left both windows
            rest, curr = divmod(-state, self._debt_base)
            window = rest // self._debt_base
            return (window + -(-curr // self.limit) + 1) * self.period
        rest, curr = divmod(state, self._base)
        window, _prev = divmod(rest, self._base)
        return (window + (2 if curr else 1)) * self.period

"""Sliding window counter (the weighted counter Cloudflare describes).

Counts per fixed window as :mod:`fixed_window` does, but admits only while
``prev · (P − e) / P + curr + cost ≤ L``, where ``e`` is the time since the current window
began: the previous window's count is weighted by how much of it still overlaps the sliding
window ``(now − P, now]``. O(1) memory, smooths the edge burst of a fixed window; it assumes
the previous window's requests were spread evenly.

All arithmetic is in integers: the test is ``prev · (P − e) + (curr + cost) · P ≤ L · P``.

State: window index, previous count, current count, packed as
``(window · (L + 1) + prev) · (L + 1) + curr``.
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
    __slots__ = ("_base",)

    def __init__(self, policy: Limit) -> None:
        super().__init__(policy)
        self._base = self.limit + 1

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

    def expires_at(self, state: int) -> int:
        rest, curr = divmod(state, self._base)
        window, _prev = divmod(rest, self._base)
        return (window + (2 if curr else 1)) * self.period

"""Fixed window: at most ``L`` per window ``[k·P, (k+1)·P)``.

State: the window index and the count admitted in it, packed in one int
``window · (L + 1) + count`` (one small object per key).

Cheap and O(1), but a client can pass up to ``2L`` across a window edge (``L`` at the end of
one window, ``L`` at the start of the next).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratelimit.decision import INF, Decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit


class FixedWindow:
    """Counts admitted cost per fixed window of ``period`` aligned to the clock."""

    name = "fixed_window"
    __slots__ = ("_base", "capacity", "limit", "period", "policy")

    def __init__(self, policy: Limit) -> None:
        self.policy = policy
        self.limit = policy.rate.limit
        self.capacity = self.limit
        self.period = policy.rate.period_ms
        self._base = self.limit + 1

    def step(self, state: int | None, now: int, cost: int) -> tuple[int | None, Decision]:
        limit, period = self.limit, self.period
        window = now // period
        count = 0
        if state is not None:
            saved_window, saved_count = divmod(state, self._base)
            if saved_window == window:
                count = saved_count
        reset = ((window + 1) * period - now) / 1000
        if count + cost <= limit:
            count += cost
            decision = Decision(True, limit, limit - count, reset, 0.0, 0.0, self.policy)
            return window * self._base + count, decision
        retry = INF if cost > limit else reset
        return None, Decision(
            False, limit, limit - count, reset if count else 0.0, retry, 0.0, self.policy
        )

    def expires_at(self, state: int) -> int:
        window = state // self._base
        return (window + 1) * self.period

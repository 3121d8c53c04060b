"""Fixed window: at most ``L`` per window ``[k·P, (k+1)·P)``.

State: the window index and the count admitted in it, packed in one int
``window · (L + 1) + count`` (one small object per key).

Cheap and O(1), but a client can pass up to ``2L`` across a window edge (``L`` at the end of
one window, ``L`` at the start of the next).
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
    __slots__ = ("_base",)

    def __init__(self, policy: Limit) -> None:
        super().__init__(policy)
        self._base = self.limit + 1

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

    def expires_at(self, state: int) -> int:
        window = state // self._base
        return (window + 1) * self.period

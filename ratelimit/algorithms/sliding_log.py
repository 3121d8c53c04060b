"""Sliding log: exact; keeps the time of every admitted unit of cost in ``(now − P, now]``.

Admits while ``len(log) + cost ≤ L``. Exact at every instant, but memory is O(L) per key
(one timestamp per admitted unit of cost), so keep it for small limits such as logins.

State: a tuple of admission times in ms, oldest first, one entry per unit of cost.
"""

from __future__ import annotations

from bisect import bisect_right

from ratelimit.algorithms import AlgorithmBase
from ratelimit.decision import INF, Decision, new_decision


class SlidingLog(AlgorithmBase):
    """Exact log of admission times; see the module docstring."""

    name = "sliding_log"
    lua = "sliding_log.lua"
    __slots__ = ()

    def step(
        self, state: tuple[int, ...] | None, now: int, cost: int
    ) -> tuple[tuple[int, ...] | None, Decision]:
        limit, period = self.limit, self.period
        log = state or ()
        if log:
            if log[-1] > now:  # a clock that went back: never reorder the log
                now = log[-1]
            if log[0] <= now - period:  # entries at or before now − P expired
                log = log[bisect_right(log, now - period) :]
        used = len(log)
        if used + cost <= limit:
            log = log + (now,) * cost
            reset = (log[-1] + period - now) / 1000 if log else 0.0  # empty: a cost-0 probe
            decision = new_decision(
                (True, limit, limit - used - cost, reset, 0.0, 0.0, self.policy)
            )
            return log, decision
        reset = (log[-1] + period - now) / 1000 if log else 0.0
        # Unless the cost can never fit, the oldest (used − (limit − cost)) entries must
        # leave the window first.
        retry = INF if cost > limit else (log[used - (limit - cost) - 1] + period - now) / 1000
        return None, new_decision((False, limit, limit - used, reset, retry, 0.0, self.policy))

    def expires_at(self, state: tuple[int, ...]) -> int:
        return state[-1] + self.period

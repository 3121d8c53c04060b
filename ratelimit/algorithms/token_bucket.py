"""Token bucket: a bucket of ``B`` tokens refilled at ``r = L / P`` per second.

A request of cost ``c`` takes ``c`` tokens when at least ``c`` are there. Bursts up to ``B``
(the burst, default ``L``), then ``r`` per second.

Tokens are kept scaled by ``P`` (ms) so they stay integers: a full bucket holds ``B · P``,
one token is ``P`` and each millisecond adds ``L``. State: ``(last_ms << 64) | scaled_tokens``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratelimit.algorithms import AlgorithmBase
from ratelimit.decision import INF, Decision, new_decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit

_MASK = (1 << 64) - 1


class TokenBucket(AlgorithmBase):
    """Refilling bucket of tokens; see the module docstring."""

    name = "token_bucket"
    takes_burst = True
    lua = "token_bucket.lua"
    __slots__ = ("_full",)

    def __init__(self, policy: Limit) -> None:
        super().__init__(policy)
        self._full = self.capacity * self.period

    def step(self, state: int | None, now: int, cost: int) -> tuple[int | None, Decision]:
        rate, period, full = self.limit, self.period, self._full
        tokens = full
        if state is not None:
            last = state >> 64
            if now < last:  # a clock that went back: no refill, no time travel
                now = last
            tokens = min(full, (state & _MASK) + (now - last) * rate)
        need = cost * period
        if tokens >= need:
            tokens -= need
            reset = -(-(full - tokens) // rate) / 1000
            decision = new_decision(
                (True, self.capacity, tokens // period, reset, 0.0, 0.0, self.policy)
            )
            return (now << 64) | tokens, decision
        reset = -(-(full - tokens) // rate) / 1000
        retry = INF if cost > self.capacity else -(-(need - tokens) // rate) / 1000
        return None, new_decision(
            (False, self.capacity, tokens // period, reset, retry, 0.0, self.policy)
        )

    def expires_at(self, state: int) -> int:
        return (state >> 64) + -(-(self._full - (state & _MASK)) // self.limit)

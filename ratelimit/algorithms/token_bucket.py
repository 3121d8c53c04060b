"""Token bucket: a bucket of ``B`` tokens refilled at ``r = L / P`` per second.

A request of cost ``c`` takes ``c`` tokens when at least ``c`` are there. Bursts up to ``B``
(the burst, default ``L``), then ``r`` per second.

Tokens are kept scaled by ``P`` (ms) so they stay integers: a full bucket holds ``B · P``,
one token is ``P`` and each millisecond adds ``L``. State: ``(last_ms << 64) | scaled_tokens``.

A debt (tokens below zero, after a ``charge``) is kept as a bucket whose ``last_ms`` lies
ahead of the clock: it holds ``scaled_tokens - (last_ms - now) · L`` now, so it is empty
until the refill has paid the debt. The same reading serves a clock that went back (another
worker's clock ahead of this one): the bucket is not refilled for time that has not passed
here, and ``last_ms`` never moves back.
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
            if now < last:  # a debt, or a clock that went back: the bucket's time is ahead
                return self._ahead(state, last, now, cost)
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

    def _ahead(self, state: int, last: int, now: int, cost: int) -> tuple[int | None, Decision]:
        """:meth:`step` when the state's time is ahead of ``now``: the bucket holds what it
        will hold at ``last`` less the refill until then (below zero: a debt), and an
        admitted request is written at ``last`` (no time travel)."""
        rate, period, full = self.limit, self.period, self._full
        saved = state & _MASK
        tokens = saved - (last - now) * rate
        need = cost * period
        if tokens >= need:
            tokens -= need
            reset = -(-(full - tokens) // rate) / 1000
            decision = new_decision(
                (True, self.capacity, tokens // period, reset, 0.0, 0.0, self.policy)
            )
            return (last << 64) | (saved - need), decision
        reset = -(-(full - tokens) // rate) / 1000
        retry = INF if cost > self.capacity else -(-(need - tokens) // rate) / 1000
        remaining = tokens // period if tokens > 0 else 0
        return None, new_decision((False, self.capacity, remaining, reset, retry, 0.0, self.policy))

    def charge(self, state: int | None, now: int, delta: int, since: int) -> int | None:
        """Take ``delta`` more tokens (give back ``-delta``), even below zero: a debt the
        refill pays before the next request (see the module docstring)."""
        rate, period, full = self.limit, self.period, self._full
        tokens = full
        if state is not None:  # the tokens now (ahead of the clock: less than stored)
            tokens = min(full, (state & _MASK) + (now - (state >> 64)) * rate)
        tokens -= self.bounded(delta) * period
        tokens = max(min(tokens, full), -self.max_debt * period)
        at = now
        if tokens < 0:  # a debt: kept as an empty bucket whose time is ahead
            ahead = -(tokens // rate)  # ceil(-tokens / rate) ms
            at += ahead
            # (above the bucket only when it holds less than a millisecond's refill: then the
            # debt is rounded up to the millisecond)
            tokens = min(full, tokens + ahead * rate)
        return (at << 64) | tokens

    def expires_at(self, state: int) -> int:
        return (state >> 64) + -(-(self._full - (state & _MASK)) // self.limit)

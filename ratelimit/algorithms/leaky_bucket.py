"""Leaky bucket: a bucket of size ``B`` that drains at ``r = L / P`` per second.

A request of cost ``c`` is admitted when ``level + c ≤ B`` and adds ``c`` to the level.

``mode="shape"`` (the default) queues like nginx ``limit_req`` without ``nodelay``: an
admitted request gets ``Decision.delay = level_before / r`` seconds, the time for what is
ahead of it to drain, so requests leave at rate ``r``. With ``max_delay`` set, a request that
would wait longer is rejected (and consumes nothing). ``mode="police"`` is ``nodelay``: no
delay, the excess is rejected.

The level is kept scaled by ``P`` (ms) so it stays an integer: one unit of cost is ``P`` and
each millisecond drains ``L``. State: ``(last_ms << 64) | scaled_level``.

A debt (after a ``charge``) is a level above ``B``: nothing is admitted until it has
drained to ``B - c``. It is kept as a bucket whose ``last_ms`` lies ahead of the clock: it
holds ``scaled_level + (last_ms - now) · L`` now (the stored level never passes ``B``, so
the state keeps its size). The same reading serves a clock that went back (another worker's
clock ahead of this one): no drain for time that has not passed here, and ``last_ms`` never
moves back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratelimit.algorithms import AlgorithmBase
from ratelimit.decision import INF, Decision, new_decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit

_MASK = (1 << 64) - 1


class LeakyBucket(AlgorithmBase):
    """Draining bucket that shapes (delays) or polices (rejects) the excess."""

    name = "leaky_bucket"
    takes_burst = True
    lua = "leaky_bucket.lua"
    __slots__ = ("_full", "_max_wait", "_shape")

    def __init__(self, policy: Limit) -> None:
        super().__init__(policy)
        self._full = self.capacity * self.period
        self._shape = policy.mode == "shape"
        # The largest scaled level a request may queue behind: max_delay (ms) × drain per ms.
        max_delay = policy.max_delay
        self._max_wait = (
            round(max_delay * 1000) * self.limit if self._shape and max_delay is not None else None
        )

    def step(self, state: int | None, now: int, cost: int) -> tuple[int | None, Decision]:
        rate, period, full = self.limit, self.period, self._full
        level = 0
        if state is not None:
            last = state >> 64
            if now < last:  # a debt, or a clock that went back: the bucket's time is ahead
                return self._ahead(state, last, now, cost)
            level = (state & _MASK) - (now - last) * rate
            if level < 0:  # drained empty (a conditional: cheaper than max() per request)
                level = 0
        need = cost * period
        max_wait = self._max_wait
        # (a cost-0 probe, Limiter.peek, queues nothing: max_delay does not apply to it)
        if level + need <= full and (max_wait is None or level <= max_wait or not cost):
            # level / rate, then / 1000: what the Lua mirror can compute exactly alike
            delay = level / rate / 1000 if self._shape else 0.0
            level += need
            reset = -(-level // rate) / 1000
            decision = new_decision(
                (True, self.capacity, (full - level) // period, reset, 0.0, delay, self.policy)
            )
            return (now << 64) | level, decision
        if cost > self.capacity:
            retry = INF
        else:
            wait = max(0, level + need - full)
            if max_wait is not None:
                wait = max(wait, level - max_wait)
            retry = -(-wait // rate) / 1000
        reset = -(-level // rate) / 1000
        remaining = (full - level) // period if level < full else 0  # (above B: a debt)
        return None, new_decision((False, self.capacity, remaining, reset, retry, 0.0, self.policy))

    def _ahead(self, state: int, last: int, now: int, cost: int) -> tuple[int | None, Decision]:
        """:meth:`step` when the state's time is ahead of ``now``: decided on the level it
        holds now, and an admitted request is written at ``last`` (no time travel)."""
        shift = (last - now) * self.limit
        new_state, decision = self.step((now << 64) | ((state & _MASK) + shift), now, cost)
        if new_state is not None:
            new_state = (last << 64) | ((new_state & _MASK) - shift)
        return new_state, decision

    def charge(self, state: int | None, now: int, delta: int, since: int) -> int | None:
        """Add ``delta`` more to the level (``delta < 0``: take it out), even above the burst:
        a debt that drains at the rate (see the module docstring)."""
        rate, period, full = self.limit, self.period, self._full
        level = 0
        if state is not None:  # the level now (ahead of the clock: above what is stored)
            level = max(0, (state & _MASK) - (now - (state >> 64)) * rate)
        level += self.bounded(delta) * period
        level = min(max(level, 0), full + self.max_debt * period)
        at = now
        if level > full:  # a debt: kept as a full bucket whose time is ahead
            ahead = -((full - level) // rate)  # ceil((level - full) / rate) ms
            at += ahead
            # (below zero only when the burst is less than a millisecond's drain: then the
            # debt is rounded up to the millisecond)
            level = max(0, level - ahead * rate)
        return (at << 64) | level

    def expires_at(self, state: int) -> int:
        return (state >> 64) + -(-(state & _MASK) // self.limit)

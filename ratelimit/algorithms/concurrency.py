"""Concurrency: at most ``L`` requests of one client in flight at once.

State: the leases held, ``token → expiry ms``. A request takes a lease when it starts
(:meth:`Concurrency.acquire`) and gives it back when its response has been sent
(:meth:`Concurrency.release`). A lease that is never given back — its worker was killed —
expires ``P`` ms after it was taken (the limit's period is the lease), so a crash frees its
slots by itself. ``backends/lua/concurrency.lua`` mirrors this module for Redis (a sorted
set scored by expiry).

This is not a rate: nothing is counted over time, ``remaining`` is the free slots and a
rejected request is told to retry in 1 s (or when the oldest lease expires, if sooner),
since no one can know when a response will end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratelimit.algorithms import AlgorithmBase
from ratelimit.decision import INF, Decision, new_decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit

__all__ = ["RETRY_MS", "Concurrency", "Leases"]

#: The ``retry_after`` of a rejected request, ms, unless the oldest lease expires sooner.
RETRY_MS = 1000

#: token → expiry, ms.
Leases = dict[str, int]


class Concurrency(AlgorithmBase):
    """Leases per client key; see the module docstring."""

    name = "concurrency"
    lua = "concurrency.lua"
    __slots__ = ()

    def __init__(self, policy: Limit) -> None:
        super().__init__(policy)

    def step(self, state: object, now: int, cost: int) -> tuple[object, Decision]:
        """Not a rate: concurrency limits take leases (:meth:`acquire`, :meth:`release`)."""
        raise TypeError(
            f"{self.policy}: a concurrency limit is taken with acquire() and given back with "
            "release(), not decided like a rate"
        )

    def acquire(
        self, leases: Leases | None, now: int, token: str
    ) -> tuple[Leases | None, Decision]:
        """Take a lease for ``token`` if a slot is free: ``(leases to store | None, Decision)``.

        Expired leases are dropped first. ``None`` as the new state: rejected, store nothing.
        """
        held = {t: exp for t, exp in (leases or {}).items() if exp > now}
        limit = self.limit
        if len(held) < limit:
            held[token] = now + self.period
            free = limit - len(held)
            return held, new_decision(
                (True, limit, free, self.period / 1000, 0.0, 0.0, self.policy)
            )
        if limit < 1:  # pragma: no cover - Rate refuses a limit of 0
            return None, new_decision((False, limit, 0, 0.0, INF, 0.0, self.policy))
        soonest = min(held.values()) - now
        retry = min(RETRY_MS, soonest) / 1000
        return None, new_decision(
            (False, limit, 0, (max(held.values()) - now) / 1000, retry, 0.0, self.policy)
        )

    def release(self, leases: Leases | None, now: int, token: str) -> Leases | None:
        """Give back ``token``'s lease (nothing if it expired or is unknown): the leases left,
        or ``None`` when none is held any more."""
        held = {t: exp for t, exp in (leases or {}).items() if exp > now and t != token}
        return held or None

    def expires_at(self, state: Leases) -> int:
        return max(state.values(), default=0)

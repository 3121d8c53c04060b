"""The five algorithms, each a pure step over its per-key state.

Every module here holds the whole arithmetic of one algorithm, and nothing else in the
package does rate arithmetic (the Redis scripts in ``backends/lua`` mirror these modules and a
parity test holds them to it). Time is an integer number of milliseconds and all counts are
integers, so decisions are exact and identical on every backend.

An algorithm object is built once per :class:`~ratelimit.Limit` and offers:

``step(state, now_ms, cost) -> (new_state | None, Decision)``
    The decision for a request of ``cost`` at ``now_ms`` given the key's ``state``
    (``None`` for a fresh key). ``new_state`` is what to store when the request is admitted;
    it is ``None`` when the request is rejected (a rejected request consumes nothing).

``expires_at(state) -> int``
    The time in ms at which ``state`` is back to a fresh key's state, so it can be dropped.

``charge(state, now_ms, delta, since_ms) -> new_state | None`` (the rates but the sliding log)
    ``delta`` more units charged (``delta < 0``: given back) after the response of a request
    decided at ``since_ms``, even past the limit: the excess is a **debt** the key pays off
    before it is admitted again. What a debt is depends on the algorithm:

    - token bucket: tokens below zero (kept as a bucket that is empty until a later time,
      which the refill reaches when the debt is paid);
    - leaky bucket: a level above the burst, which drains at the rate;
    - fixed and sliding window: a count above the limit, whose excess carries into the
      following windows, ``L`` a window, until it is paid.

    A debt is at most :attr:`AlgorithmBase.max_debt` units. A give-back never makes more
    than a fresh key's room, and lands only in the window of the request (``since_ms``):
    a window that has ended keeps its count. ``None``: nothing to store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ratelimit.decision import Decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit

__all__ = ["ALGORITHMS", "ALL_ALGORITHMS", "Algorithm", "AlgorithmBase", "debt_cap"]

#: The rate algorithms: what ``Limit(algorithm=...)`` decides (memory and Redis alike).
ALGORITHMS = ("fixed_window", "sliding_window", "sliding_log", "token_bucket", "leaky_bucket")
#: Every name ``Limit(algorithm=...)`` accepts: the rates, and ``concurrency`` (requests in
#: flight, taken and given back as leases: :mod:`ratelimit.algorithms.concurrency`).
ALL_ALGORITHMS = (*ALGORITHMS, "concurrency")


#: The largest scaled number a state may hold (units × period ms): Lua numbers are doubles,
#: exact below 2^53, and a sum of two of them must stay below that.
_SCALED_CAP = 2**52


def debt_cap(capacity: int, period_ms: int) -> int:
    """The most units a key may owe: 1,000 × the capacity, less for limits so large that
    the scaled state would pass 2^52 (the Lua mirror computes the same)."""
    return max(0, min(1000 * capacity, (_SCALED_CAP - capacity * period_ms) // period_ms))


class Algorithm(Protocol):
    """What every algorithm object offers; see the module docstring."""

    name: str
    #: The limit it computes for.
    policy: Limit

    def step(self, state: Any, now: int, cost: int) -> tuple[Any, Decision]: ...

    def expires_at(self, state: Any) -> int: ...

    def charge(self, state: Any, now: int, delta: int, since: int) -> Any: ...


class AlgorithmBase:
    """The parameters every algorithm reads, taken once from its :class:`~ratelimit.Limit`."""

    __slots__ = ("capacity", "limit", "max_debt", "period", "policy")
    #: The name ``Limit(algorithm=...)`` takes.
    name: str = ""
    #: Whether the algorithm takes a ``burst`` (its capacity).
    takes_burst: bool = False
    #: Its Redis mirror in ``ratelimit/backends/lua`` ("" when it has its own script).
    lua: str = ""

    def __init__(self, policy: Limit) -> None:
        self.policy = policy
        self.limit = policy.rate.limit  # L
        self.period = policy.rate.period_ms  # P, in ms
        self.capacity = policy.capacity  # L, or the burst B of the buckets
        #: The most units a key may owe after charges (:func:`debt_cap`).
        self.max_debt = debt_cap(self.capacity, self.period)

    def bounded(self, delta: int) -> int:
        """``delta`` as a charge takes it: at most :attr:`max_debt` more, at most the
        capacity and the largest debt given back (the Lua mirror bounds it alike)."""
        return max(-self.capacity - self.max_debt, min(delta, self.max_debt))

    def charge(self, state: Any, now: int, delta: int, since: int) -> Any:
        """What the algorithms that carry a debt override (see the module docstring)."""
        raise TypeError(f"the {self.name} algorithm cannot carry a debt: it takes no charge")

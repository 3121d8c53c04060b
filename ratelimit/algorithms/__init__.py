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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from ratelimit.decision import Decision

if TYPE_CHECKING:
    from ratelimit.limits import Limit

__all__ = ["ALGORITHMS", "ALL_ALGORITHMS", "Algorithm", "AlgorithmBase"]

#: The rate algorithms: what ``Limit(algorithm=...)`` decides (memory and Redis alike).
ALGORITHMS = ("fixed_window", "sliding_window", "sliding_log", "token_bucket", "leaky_bucket")
#: Every name ``Limit(algorithm=...)`` accepts: the rates, and ``concurrency`` (requests in
#: flight, taken and given back as leases: :mod:`ratelimit.algorithms.concurrency`).
ALL_ALGORITHMS = (*ALGORITHMS, "concurrency")


class Algorithm(Protocol):
    """What every algorithm object offers; see the module docstring."""

    name: str
    #: The limit it computes for.
    policy: Limit

    def step(self, state: Any, now: int, cost: int) -> tuple[Any, Decision]: ...

    def expires_at(self, state: Any) -> int: ...


class AlgorithmBase:
    """The parameters every algorithm reads, taken once from its :class:`~ratelimit.Limit`."""

    __slots__ = ("capacity", "limit", "period", "policy")
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

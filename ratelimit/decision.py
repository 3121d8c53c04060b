"""The answer to one rate-limit check, and how several answers combine into one."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from ratelimit.limits import Limit

__all__ = ["Decision", "combine", "new_decision"]

INF = float("inf")


class Decision(NamedTuple):
    """What a limit decided for one request. Immutable; truthy exactly when ``allowed``.

    Attributes:
        allowed: whether the request is admitted (and consumed its cost).
        limit: the capacity of the limit (its ``limit``, or ``burst`` for the buckets).
        remaining: how many more requests of cost 1 would be admitted right now (≥ 0).
        reset_after: seconds until the counter is back to a fresh key's state.
        retry_after: seconds until this request would be admitted (0 when allowed;
            ``inf`` when its cost exceeds the capacity and it can never be admitted).
        delay: seconds a leaky bucket in ``shape`` mode asks the request to wait before it
            is served; 0 for every other algorithm.
        policy: the :class:`~ratelimit.Limit` this decision describes.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_after: float
    retry_after: float
    delay: float
    policy: Limit

    def __bool__(self) -> bool:
        return self.allowed


if TYPE_CHECKING:

    def new_decision(fields: tuple[bool, int, int, float, float, float, Limit], /) -> Decision:
        """Build a Decision from its fields in order (the algorithms' fast constructor)."""
        ...

else:
    # Decisions are made on every request: ``tuple.__new__`` bound to Decision (all in C)
    # skips the Python-level ``__new__`` that NamedTuple generates, a third of a decision's cost.
    new_decision = partial(tuple.__new__, Decision)


def combine(decisions: Sequence[Decision]) -> Decision:
    """Fold the decisions of several limits on one request into the most restrictive one.

    Admitted (every limit admitted): the decision with the fewest ``remaining`` (ties: the
    longest ``reset_after``), carrying the longest ``delay`` of all. Rejected (some limit
    rejected): the rejecting decision with the longest ``retry_after``.
    """
    if len(decisions) == 1:
        return decisions[0]
    if not decisions:
        raise ValueError("combine() needs at least one decision")
    rejected = [d for d in decisions if not d.allowed]
    if rejected:
        return max(rejected, key=lambda d: d.retry_after)
    tightest = min(decisions, key=lambda d: (d.remaining, -d.reset_after))
    delay = max(d.delay for d in decisions)
    if delay != tightest.delay:
        tightest = tightest._replace(delay=delay)
    return tightest

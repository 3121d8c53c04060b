"""``Limit``: a rate, an algorithm and its options — what one counter enforces.

Counters are identified by :attr:`Limit.id` (the limit's ``name``, or its algorithm, rate and
burst) plus the client key, so two ``Limit`` objects with the same id share counters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from ratelimit.algorithms import ALL_ALGORITHMS
from ratelimit.algorithms.registry import BUCKETS, algorithm_of
from ratelimit.decision import Decision, combine
from ratelimit.errors import ConfigError
from ratelimit.rate import MAX_EXACT, Rate

if TYPE_CHECKING:
    from ratelimit.algorithms import Algorithm

__all__ = [
    "BUCKETS",
    "MODES",
    "Decision",
    "Limit",
    "as_limits",
    "check_cost",
    "combine",
    "tiered_key",
]

#: Leaky-bucket modes: ``shape`` delays admitted requests, ``police`` only rejects.
MODES = ("shape", "police")


@dataclass(frozen=True, slots=True)
class Limit:
    """One rate limit: ``rate`` enforced by ``algorithm``.

    Args:
        rate: a :class:`Rate` or rate text such as ``"10/second"``.
        algorithm: one of ``fixed_window`` (default), ``sliding_window``, ``sliding_log``,
            ``token_bucket``, ``leaky_bucket``, or ``concurrency`` (the rate's limit is the
            requests in flight, its period the lease: ``Limit(Rate(2, 60), "concurrency")``;
            taken with ``acquire`` and given back with ``release``, not decided).
        burst: the bucket size for ``token_bucket`` and ``leaky_bucket`` (default: the rate's
            limit). Not accepted by the window algorithms.
        name: names the counter; limits with the same name share counters. Default: derived
            from the algorithm, rate and burst.
        mode: ``leaky_bucket`` only: ``"shape"`` (default; admitted requests carry a delay)
            or ``"police"`` (no delay).
        max_delay: ``leaky_bucket`` in ``shape`` mode only: the longest delay, in seconds,
            a request may be given; one that would wait longer is rejected.
        share: with a shared backend (Redis), a worker takes up to ``share`` units of this
            limit in one call and admits from them in process until they are spent or their
            share ends (:mod:`ratelimit.backends.shares`); the limit is never exceeded.
            ``fixed_window``, ``sliding_window``, ``token_bucket`` and ``leaky_bucket`` in
            ``police`` mode only. The memory backend ignores it.

    Raises:
        ConfigError: for an unknown algorithm or mode, a bad burst, rate, max_delay or
            share (or a share on an algorithm that cannot take one).
    """

    rate: Rate
    algorithm: str = "fixed_window"
    burst: int | None = None
    name: str | None = None
    mode: str | None = None
    max_delay: float | None = None
    share: int | None = None
    capacity: int = field(init=False, repr=False, compare=False)
    id: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        rate = Rate.parse(self.rate)  # rate text is accepted too
        set_(self, "rate", rate)
        algorithm = self.algorithm
        if algorithm not in ALL_ALGORITHMS:
            raise ConfigError(
                f"unknown algorithm {algorithm!r} (use one of: {', '.join(ALL_ALGORITHMS)})"
            )
        burst = self.burst
        if burst is not None:
            if algorithm not in BUCKETS:
                raise ConfigError(
                    f"burst is for token_bucket and leaky_bucket only, not {algorithm}"
                )
            if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
                raise ConfigError(f"burst must be a whole number of at least 1, got {burst!r}")
            if burst * rate.period_ms > MAX_EXACT:
                raise ConfigError(f"burst {burst} is too large for period {rate.period}s")
        capacity = burst if burst is not None else rate.limit
        set_(self, "capacity", capacity)
        if self.mode is not None:
            if algorithm != "leaky_bucket":
                raise ConfigError(f"mode is for leaky_bucket only, not {algorithm}")
            if self.mode not in MODES:
                raise ConfigError(f"unknown leaky_bucket mode {self.mode!r} (use shape or police)")
        elif algorithm == "leaky_bucket":
            set_(self, "mode", "shape")
        if self.max_delay is not None:
            max_delay = self.max_delay
            if self.mode != "shape":
                raise ConfigError("max_delay is for leaky_bucket in shape mode only")
            if (
                isinstance(max_delay, bool)
                or not isinstance(max_delay, int | float)
                or not math.isfinite(max_delay)
                or max_delay < 0
            ):
                raise ConfigError(
                    f"max_delay must be a finite number of seconds ≥ 0, got {max_delay!r}"
                )
        if self.share is not None:
            _check_share(self.share, algorithm, self.mode)
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            raise ConfigError(f"a limit name must be non-empty text, got {self.name!r}")
        ident = self.name
        if ident is None:
            ident = f"{algorithm}:{rate.limit}/{rate.period_ms}ms"
            if capacity != rate.limit:
                ident += f":b{capacity}"
        set_(self, "id", ident)

    @property
    def impl(self) -> Algorithm:
        """The algorithm object computing with this limit (from the registry)."""
        return algorithm_of(self)

    def __str__(self) -> str:
        if self.algorithm == "concurrency":
            return f"{self.rate.limit} in flight (concurrency, lease {self.rate.period:g}s)"
        text = f"{self.rate} ({self.algorithm}"
        if self.burst is not None:
            text += f", burst {self.burst}"
        if self.mode is not None:
            text += f", {self.mode}"
        if self.share is not None:
            text += f", share {self.share}"
        return text + ")"


#: Why an algorithm cannot take a ``share`` (the others can).
_NO_SHARE = {
    "sliding_log": "sliding_log is exact per admitted timestamp, and units taken ahead would "
    "be logged at the time they were taken, not when they are spent",
    "concurrency": "a concurrency slot is given back after the response: use lease for how "
    "long a slot is held",
}
_SHAPE_NO_SHARE = (
    "a shaping leaky bucket delays each request by the queue ahead of it, which a worker "
    'holding units cannot know: use mode = "police" with share'
)


def _check_share(share: object, algorithm: str, mode: str | None) -> None:
    if isinstance(share, bool) or not isinstance(share, int) or share < 1:
        raise ConfigError(f"share must be a whole number of at least 1, got {share!r}")
    if share > 1_000_000:
        raise ConfigError(f"share {share} is too large (at most 1000000)")
    if algorithm in _NO_SHARE:
        raise ConfigError(f"share is not for {algorithm}: {_NO_SHARE[algorithm]}")
    if algorithm == "leaky_bucket" and mode == "shape":
        raise ConfigError(f"share is not for a leaky_bucket in shape mode: {_SHAPE_NO_SHARE}")


@lru_cache(maxsize=256)
def _limit_from_text(text: str) -> Limit:
    return Limit(Rate.parse(text))


def as_limits(limits: tuple[Limit | str, ...]) -> Sequence[Limit]:
    """The limits of a call (``Limit`` objects or rate text) as ``Limit`` objects."""
    if not limits:
        raise ConfigError("no limit given: pass at least one Limit or rate text")
    for item in limits:
        if type(item) is not Limit:
            return [item if isinstance(item, Limit) else _limit_from_text(item) for item in limits]
    return limits  # type: ignore[return-value]  # every item is a Limit (checked above)


def tiered_key(key: str, tier: str | None) -> str:
    """The counter key of ``key`` in ``tier``: tiers count apart (``None``: no tier)."""
    return key if tier is None else f"{key}#tier:{tier}"


def check_cost(cost: int) -> None:
    """Refuse a cost that is not a whole number of at least 1."""
    if type(cost) is not int or cost < 1:
        raise ConfigError(f"cost must be a whole number of at least 1, got {cost!r}")

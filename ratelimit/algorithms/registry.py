"""The algorithm registry: every algorithm class, found by its name, declared once.

Each class in this package declares its ``name``, whether it takes a ``burst``
(``takes_burst``) and its Redis mirror (``lua``: the script file in ``backends/lua``); the
rest of the package asks this registry instead of keeping tables of its own. A
:class:`~ratelimit.Limit` is plain data; :func:`algorithm_of` gives the algorithm object
that computes with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratelimit.algorithms import Algorithm, AlgorithmBase
from ratelimit.algorithms.concurrency import Concurrency
from ratelimit.algorithms.fixed_window import FixedWindow
from ratelimit.algorithms.leaky_bucket import LeakyBucket
from ratelimit.algorithms.sliding_log import SlidingLog
from ratelimit.algorithms.sliding_window import SlidingWindow
from ratelimit.algorithms.token_bucket import TokenBucket

if TYPE_CHECKING:
    from ratelimit.limits import Limit

__all__ = ["BUCKETS", "IMPLEMENTATIONS", "algorithm_of"]

#: name → algorithm class, in the documented order.
IMPLEMENTATIONS: dict[str, type[AlgorithmBase]] = {
    cls.name: cls
    for cls in (FixedWindow, SlidingWindow, SlidingLog, TokenBucket, LeakyBucket, Concurrency)
}
#: The algorithms that take a ``burst`` (their capacity; default: the rate's limit).
BUCKETS = tuple(name for name, cls in IMPLEMENTATIONS.items() if cls.takes_burst)


def algorithm_of(limit: Limit) -> Algorithm:
    """A new algorithm object computing with ``limit`` (its decisions name ``limit`` as their
    policy). The memory backend keeps one per counter table, so this is not on its hot
    path."""
    algorithm: Algorithm = IMPLEMENTATIONS[limit.algorithm](limit)  # type: ignore[assignment]
    return algorithm

"""Scenario tables: (time ms, cost) → the exact decision each algorithm must give.

Written by hand from the formulas in SPEC §2, one table per algorithm, so that every backend
can be held to them (the memory backend in tests/core, Redis in tests/redis). ``reset`` is
``None`` where a row does not check ``reset_after``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ratelimit import Limit

INF = math.inf


class Step(NamedTuple):
    t: int  # ms
    cost: int
    allowed: bool
    remaining: int
    retry: float
    delay: float = 0.0
    reset: float | None = None


SCENARIOS: dict[str, tuple[Limit, list[Step]]] = {
    "fixed_window 3/s": (
        Limit("3/second", algorithm="fixed_window"),
        [
            Step(0, 1, True, 2, 0.0, reset=1.0),
            Step(100, 1, True, 1, 0.0, reset=0.9),
            Step(200, 1, True, 0, 0.0),
            Step(300, 1, False, 0, 0.7, reset=0.7),
            Step(999, 1, False, 0, 0.001),
            Step(1000, 1, True, 2, 0.0, reset=1.0),  # a new window: up to 2L across the edge
            Step(1000, 3, False, 2, 1.0),
            Step(1500, 2, True, 0, 0.0),
            Step(1600, 4, False, 0, INF),  # cost above the capacity: never
        ],
    ),
    "sliding_window 4/s": (
        Limit("4/second", algorithm="sliding_window"),
        [
            Step(0, 1, True, 3, 0.0, reset=2.0),
            Step(0, 1, True, 2, 0.0),
            Step(0, 1, True, 1, 0.0),
            Step(0, 1, True, 0, 0.0),
            Step(500, 1, False, 0, 0.75, reset=1.5),  # next window, 4·(1000−e) ≤ 3000 at e=750
            Step(1250, 1, True, 0, 0.0),  # prev weighs 4·0.75 = 3
            Step(1250, 1, False, 0, 0.25, reset=1.75),  # prev must weigh ≤ 2: e ≥ 500
            Step(1500, 1, True, 0, 0.0),
            Step(2100, 2, True, 0, 0.0),  # prev 2 weighs 1.8: 1.8 + 2 ≤ 4
            Step(3500, 1, True, 2, 0.0),  # prev 2 weighs 1
            Step(5000, 5, False, 4, INF, reset=0.0),
        ],
    ),
    "sliding_log 3/s": (
        Limit("3/second", algorithm="sliding_log"),
        [
            Step(0, 1, True, 2, 0.0, reset=1.0),
            Step(300, 1, True, 1, 0.0),
            Step(600, 1, True, 0, 0.0),
            Step(900, 1, False, 0, 0.1, reset=0.7),  # t=0 leaves the window at 1000
            Step(1000, 1, True, 0, 0.0),
            Step(1000, 2, False, 0, 0.6),  # two must leave: 300 and 600
            Step(1600, 2, True, 0, 0.0),
            Step(1600, 4, False, 0, INF),
        ],
    ),
    "token_bucket 2/s burst 4": (
        Limit("2/second", algorithm="token_bucket", burst=4),
        [
            Step(0, 1, True, 3, 0.0, reset=0.5),
            Step(0, 3, True, 0, 0.0, reset=2.0),
            Step(0, 1, False, 0, 0.5, reset=2.0),
            Step(250, 1, False, 0, 0.25),
            Step(500, 1, True, 0, 0.0),
            Step(3000, 4, True, 0, 0.0),  # refilled to the burst, not beyond
            Step(3000, 5, False, 0, INF),
        ],
    ),
    "leaky_bucket 2/s burst 3 shape": (
        Limit("2/second", algorithm="leaky_bucket", burst=3),
        [
            Step(0, 1, True, 2, 0.0, delay=0.0, reset=0.5),
            Step(0, 1, True, 1, 0.0, delay=0.5),
            Step(0, 1, True, 0, 0.0, delay=1.0, reset=1.5),
            Step(0, 1, False, 0, 0.5),
            Step(500, 1, True, 0, 0.0, delay=1.0),
            Step(5000, 1, True, 2, 0.0, delay=0.0),
        ],
    ),
    "leaky_bucket 2/s burst 3 police": (
        Limit("2/second", algorithm="leaky_bucket", burst=3, mode="police"),
        [
            Step(0, 1, True, 2, 0.0),
            Step(0, 1, True, 1, 0.0),
            Step(0, 1, True, 0, 0.0),
            Step(0, 1, False, 0, 0.5),
            Step(500, 1, True, 0, 0.0),
        ],
    ),
    "leaky_bucket shape max_delay 0.6": (
        Limit("2/second", algorithm="leaky_bucket", burst=3, max_delay=0.6),
        [
            Step(0, 1, True, 2, 0.0, delay=0.0),
            Step(0, 1, True, 1, 0.0, delay=0.5),
            Step(0, 1, False, 1, 0.4),  # room in the bucket, but it would wait 1.0 s > 0.6 s
            Step(399, 1, False, 1, 0.001),
            Step(400, 1, True, 0, 0.0, delay=0.6),
        ],
    ),
}

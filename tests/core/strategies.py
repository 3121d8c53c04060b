"""Hypothesis strategies shared by the property and parity tests: limits and timelines."""

from __future__ import annotations

from hypothesis import strategies as st

from ratelimit import Limit, Rate

PERIODS_MS = (1, 7, 100, 1000, 1500, 60_000, 3_600_000)


@st.composite
def limits(draw: st.DrawFn, algorithm: str | None = None) -> Limit:
    """Any valid limit: every algorithm, small limits, odd periods, bursts, modes."""
    algo = algorithm or draw(
        st.sampled_from(
            ["fixed_window", "sliding_window", "sliding_log", "token_bucket", "leaky_bucket"]
        )
    )
    rate = Rate(draw(st.integers(1, 20)), draw(st.sampled_from(PERIODS_MS)) / 1000)
    burst = None
    mode = None
    max_delay = None
    if algo in ("token_bucket", "leaky_bucket"):
        burst = draw(st.none() | st.integers(1, 25))
    if algo == "leaky_bucket":
        mode = draw(st.sampled_from(["shape", "police"]))
        if mode == "shape":
            max_delay = draw(st.none() | st.sampled_from([0.0, 0.001, 0.5, 2.0, 30.0]))
    return Limit(rate, algorithm=algo, burst=burst, mode=mode, max_delay=max_delay)


@st.composite
def timelines(draw: st.DrawFn, period_ms: int, max_cost: int = 3) -> list[tuple[int, int]]:
    """Increasing (time ms, cost) pairs, gaps from 0 to two periods."""
    steps = draw(
        st.lists(
            st.tuples(st.integers(0, 2 * period_ms), st.integers(1, max_cost)),
            min_size=1,
            max_size=60,
        )
    )
    now = draw(st.integers(0, 10 * period_ms))
    out = []
    for gap, cost in steps:
        now += gap
        out.append((now, cost))
    return out

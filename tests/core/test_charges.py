"""Charges and debts, on any schedule (Hypothesis): whatever is charged after the responses,
what a key has used when it is next admitted never passes what the limit allows over the
whole run — a debt is paid before the next admission, never forgiven."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit import Limit, MemoryBackend, Rate
from tests.conftest import FakeClock


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Limit, list[tuple[int, int, int]]]:
    """A limit that carries debts, and (gap ms, reservation, actual use) per request."""
    algorithm = draw(
        st.sampled_from(["fixed_window", "sliding_window", "token_bucket", "leaky_bucket"])
    )
    limit = draw(st.integers(1, 20))
    period = draw(st.sampled_from([7, 100, 1000, 60_000]))
    burst = draw(st.none() | st.integers(1, 25)) if "bucket" in algorithm else None
    mode = "police" if algorithm == "leaky_bucket" else None
    rate = Rate(limit, period / 1000)
    policy = Limit(rate, algorithm, burst=burst, mode=mode, name="tokens")
    steps = draw(
        st.lists(
            st.tuples(
                st.integers(0, 2 * period),
                st.integers(1, 5),
                st.integers(0, 40),
            ),
            min_size=1,
            max_size=60,
        )
    )
    return policy, steps


@settings(max_examples=500, deadline=None)
@given(case=schedules())
def test_usage_at_each_admission_stays_within_the_limit(
    case: tuple[Limit, list[tuple[int, int, int]]],
) -> None:
    """At every admission, everything charged so far (reservations and what the responses
    charged or gave back, debts included) is within the limit's allowance since the first
    request: ``B + ⌊Δ·r⌋`` for the buckets, ``L`` per window begun for the windows."""
    policy, steps = case
    clock = FakeClock(0.0)
    backend = MemoryBackend(clock=clock)
    rate, period, capacity = policy.rate.limit, policy.rate.period_ms, policy.capacity
    now = start = 10 * period  # a window boundary
    used = 0
    for gap, reserved, actual in steps:
        now += gap
        clock.set_ms(now)
        if not backend.decide("k", [policy], min(reserved, capacity))[0].allowed:
            continue
        used += min(reserved, capacity)
        if "window" in policy.algorithm:
            allowance = rate * (now // period - start // period + 1)
        else:
            allowance = capacity + (now - start) * rate // period
        assert used <= allowance, (now, used, allowance)
        # the response: charged at once (a give-back lands in the request's window)
        backend.charge("k", [policy], actual - min(reserved, capacity), 0)
        used += actual - min(reserved, capacity)

"""The properties of SPEC §2, for every algorithm, any rate and burst, exact integers.

The algorithms are pure steps over their state, so these tests thread the state by hand;
tests/core/test_memory_backend.py shows the backend stores exactly what the steps return.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit import Decision, Limit
from tests.core.strategies import limits, timelines

settings.register_profile("ratelimit", max_examples=300, deadline=None)
settings.load_profile("ratelimit")


def run(limit: Limit, timeline: list[tuple[int, int]]) -> list[tuple[int, int, Any, Decision]]:
    """Feed the timeline to the algorithm; return (t, cost, state before, decision) per step."""
    state: Any = None
    out = []
    for t, cost in timeline:
        new_state, decision = limit.impl.step(state, t, cost)
        out.append((t, cost, state, decision))
        if new_state is not None:
            state = new_state
    return out


@given(limits(), st.integers(1, 60), st.integers(0, 10**9))
def test_simultaneous_requests_admit_exactly_the_capacity(limit: Limit, n: int, t: int) -> None:
    """A fresh key given n simultaneous requests of cost 1 admits exactly min(n, capacity)."""
    if limit.max_delay is not None:
        # A delay cap admits fewer by design: only as many as can leave within max_delay.
        limit = Limit(limit.rate, algorithm=limit.algorithm, burst=limit.burst, mode=limit.mode)
    admitted = sum(d.allowed for *_, d in run(limit, [(t, 1)] * n))
    assert admitted == min(n, limit.capacity)


@given(st.data())
def test_admitted_cost_over_any_span_is_bounded(data: st.DataObject) -> None:
    """Over any span Δ from a fresh key, admitted cost ≤ capacity + floor(Δ·r).

    Fixed window: at most L in each window.
    """
    limit = data.draw(limits())
    period = limit.rate.period_ms
    steps = run(limit, data.draw(timelines(period)))
    admitted = [(t, cost) for t, cost, _, d in steps if d.allowed]
    if limit.algorithm == "fixed_window":
        per_window: dict[int, int] = {}
        for t, cost in admitted:
            per_window[t // period] = per_window.get(t // period, 0) + cost
        assert max(per_window.values(), default=0) <= limit.capacity
        return
    for i, (start, _) in enumerate(admitted):
        total = 0
        for t, cost in admitted[i:]:
            total += cost
            assert total <= limit.capacity + (t - start) * limit.rate.limit // period


@given(limits(), st.integers(2, 30), st.integers(0, 10**6))
def test_a_client_sending_too_fast_gets_the_rate_in_the_long_run(
    limit: Limit, windows: int, start: int
) -> None:
    """Sending faster than r for a long time is admitted at r: within one per window."""
    period, rate = limit.rate.period_ms, limit.rate.limit
    span = windows * period
    # Three requests per unit of the rate: faster than r, at whole-ms times.
    gap = max(1, period // (3 * rate))
    if gap * rate >= period:  # a 1 ms gap is not faster than the rate: nothing to learn
        return
    if limit.algorithm in ("token_bucket", "leaky_bucket") and gap * rate > period * (
        limit.capacity - 1
    ):
        # A bucket smaller than what one gap refills wastes the overflow: the client is
        # not "sending faster than r" at the bucket's resolution.
        return
    timeline = [(start + k * gap, 1) for k in range(span // gap + 1)]
    admitted = sum(d.allowed for *_, d in run(limit, timeline))
    expected = span * rate // period
    assert admitted <= limit.capacity + expected
    if limit.max_delay is None:
        assert admitted >= expected - windows


@given(st.data())
def test_remaining_and_retry_after_are_exact(data: st.DataObject) -> None:
    """remaining stays in [0, capacity]; after a rejection, the same request sent retry_after
    later (and nothing between) is admitted, and one sent 1 ms earlier is not."""
    limit = data.draw(limits())
    steps = run(limit, data.draw(timelines(limit.rate.period_ms)))
    for t, cost, state, decision in steps:
        assert 0 <= decision.remaining <= limit.capacity
        assert decision.retry_after >= 0 and decision.delay >= 0 and decision.reset_after >= 0
        if decision.allowed:
            assert decision.retry_after == 0
            continue
        if cost > limit.capacity:
            assert decision.retry_after == float("inf")
            continue
        after = t + round(decision.retry_after * 1000)
        assert after > t
        # The state a rejected request sees is unchanged by it (it consumed nothing).
        assert limit.impl.step(state, after, cost)[1].allowed
        assert not limit.impl.step(state, after - 1, cost)[1].allowed


@given(st.data())
def test_state_is_fresh_again_after_reset_after(data: st.DataObject) -> None:
    """After an admitted request, expires_at = now + reset_after, and from then on the key
    decides exactly like a fresh key."""
    limit = data.draw(limits())
    state: Any = None
    for t, cost in data.draw(timelines(limit.rate.period_ms)):
        new_state, decision = limit.impl.step(state, t, cost)
        if new_state is None:
            continue
        state = new_state
        expires = limit.impl.expires_at(state)
        assert expires == t + round(decision.reset_after * 1000)
        for probe_cost in (1, limit.capacity):
            stale = limit.impl.step(state, expires, probe_cost)[1]
            fresh = limit.impl.step(None, expires, probe_cost)[1]
            assert stale == fresh


@given(limits(), st.integers(0, 10**9))
def test_decision_limit_is_the_capacity(limit: Limit, t: int) -> None:
    """Decision.limit reports the capacity: the limit, or the burst for buckets."""
    decision = limit.impl.step(None, t, 1)[1]
    assert decision.limit == limit.capacity
    assert decision.allowed
    assert decision.remaining == limit.capacity - 1


@given(st.data())
def test_a_cost_zero_probe_reports_the_state_as_it_is(data: st.DataObject) -> None:
    """A cost-0 dry run (Limiter.peek) is admitted and reports the remaining capacity and the
    time until the stored state is fresh (0 for a fresh key)."""
    limit = data.draw(limits())
    state: Any = None
    for t, cost in data.draw(timelines(limit.rate.period_ms)):
        probe = limit.impl.step(state, t, 0)[1]
        assert probe.allowed and probe.retry_after == 0
        if state is None or limit.impl.expires_at(state) <= t:
            assert probe.reset_after == 0 and probe.remaining == limit.capacity
        else:
            assert t + round(probe.reset_after * 1000) == limit.impl.expires_at(state)
        new_state = limit.impl.step(state, t, cost)[0]
        if new_state is not None:
            state = new_state

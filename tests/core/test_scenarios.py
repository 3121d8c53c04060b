"""Every algorithm gives exactly the decisions of its hand-written scenario table."""

from __future__ import annotations

import pytest

from ratelimit import Limiter, MemoryBackend
from tests.conftest import FakeClock
from tests.core.scenarios import SCENARIOS


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_memory_backend_follows_scenario(name: str) -> None:
    """The memory backend reproduces each row: allowed, remaining, retry_after, delay, reset."""
    limit, steps = SCENARIOS[name]
    clock = FakeClock()
    limiter = Limiter(MemoryBackend(clock=clock))
    for row, step in enumerate(steps):
        clock.set_ms(step.t)
        decision = limiter.hit("client", limit, cost=step.cost)
        got = (decision.allowed, decision.remaining, decision.retry_after, decision.delay)
        want = (step.allowed, step.remaining, step.retry, step.delay)
        assert got == want, f"{name} row {row} at t={step.t}ms"
        if step.reset is not None:
            assert decision.reset_after == step.reset, f"{name} row {row}: reset_after"
        assert decision.limit == limit.capacity
        assert decision.policy is limit

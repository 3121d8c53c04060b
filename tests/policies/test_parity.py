"""Differential (Hypothesis) tests: the new state machines decide alike on memory and Redis.

Concurrency leases (``algorithms/concurrency.py`` and ``lua/concurrency.lua``) and bans (a
sliding log of strikes plus a one-token bucket, driven by the engine) are run through random
sequences of operations on a shared fake clock; every answer must be identical.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit import Limit, MemoryBackend
from ratelimit.http.engine import Engine
from ratelimit.rate import Rate
from tests.conftest import FakeClock
from tests.policies.test_policies import Request, run

pytestmark = pytest.mark.redis

#: (op, client, ms to wait first): acquire a lease, or release the n-th lease held.
OPS = st.lists(
    st.tuples(
        st.sampled_from(["acquire", "release"]),
        st.integers(0, 2),
        st.integers(0, 1500),
    ),
    min_size=1,
    max_size=40,
)


def _redis(url: str, clock: FakeClock) -> Any:
    from ratelimit.backends.redis import RedisBackend

    prefix = f"p{uuid.uuid4().hex[:8]}:"
    return RedisBackend.from_url(url, clock=clock, prefix=prefix, ttl_pad_ms=600_000, timeout=2)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS, limit=st.integers(1, 3), lease_ms=st.sampled_from([500, 2000]))
def test_concurrency_leases_agree(
    redis_url: str, ops: list[tuple[str, int, int]], limit: int, lease_ms: int
) -> None:
    """Acquire/release sequences with waits (leases expiring) give identical decisions."""
    clock = FakeClock()
    memory = MemoryBackend(clock=clock)
    redis = _redis(redis_url, clock)
    lease = Limit(Rate(limit, lease_ms / 1000), "concurrency", name="c")
    held: dict[int, list[str]] = {0: [], 1: [], 2: []}
    try:
        for step, (op, client, wait) in enumerate(ops):
            clock.advance(wait / 1000)
            key = f"client-{client}"
            if op == "acquire":
                token = f"t{step}"
                want = memory.acquire(key, lease, token)
                got = redis.acquire(key, lease, token)
                assert got == want, f"step {step}"
                if want.allowed:
                    held[client].append(token)
            elif held[client]:
                token = held[client].pop(0)
                memory.release(key, lease, token)
                redis.release(key, lease, token)
    finally:
        redis.close()


#: (ms to wait first, client) for requests to a rule with a ban.
REQUESTS = st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 1)), min_size=1, max_size=30)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(requests=REQUESTS, after=st.integers(1, 3))
def test_bans_agree(redis_url: str, requests: list[tuple[int, int]], after: int) -> None:
    """Request sequences against a banning rule get the same outcomes, Retry-After
    included, on memory and Redis."""
    rule = {
        "name": "b",
        "path": "/b",
        "limit": "2/10 seconds",
        "ban": {"after": after, "within": "1 minute", "duration": "2 minutes"},
    }
    clock = FakeClock()
    redis = _redis(redis_url, clock)
    engines = [Engine({"rules": [rule]}, backend=b) for b in (MemoryBackend(clock=clock), redis)]
    try:
        for step, (wait, client) in enumerate(requests):
            clock.advance(wait / 1000)
            request = Request("GET", "/b", peer=f"192.0.2.{client + 1}")
            mem, red = (run(engine, request) for engine in engines)
            assert (mem.kind, mem.headers) == (red.kind, red.headers), f"step {step}"
            if mem.reply is not None and red.reply is not None:
                assert dict(mem.reply.headers) == dict(red.reply.headers), f"step {step}"
    finally:
        redis.close()

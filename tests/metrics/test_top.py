"""Top offenders: the space-saving sketch, minute windows, and Redis merged across workers."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit import MemoryBackend
from ratelimit.backends.redis import RedisBackend
from ratelimit.http.engine import Engine
from ratelimit.metrics import RedisTop, SpaceSaving, TopOffenders
from ratelimit.metrics.observer import Recorder
from tests.conftest import FakeClock
from tests.metrics.conftest import Request, hit

RULES = [
    {"name": "login", "path": "/login", "limit": "1/minute"},
    {"name": "api", "path": "/api/**", "limit": "2/minute"},
]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=400), st.integers(1, 12))
def test_space_saving_guarantees(stream: list[int], capacity: int) -> None:
    """Bounded, never underestimates, overestimates by at most N / capacity, and keeps every
    item seen more than N / capacity times."""
    sketch = SpaceSaving(capacity)
    for number in stream:
        sketch.add(str(number))
    true = Counter(str(number) for number in stream)
    assert len(sketch.counts) <= capacity
    assert sum(sketch.counts.values()) == len(stream)
    bound = len(stream) / capacity
    for item, count in sketch.counts.items():
        assert true[item] <= count <= true[item] + bound
    for name, count in true.items():
        if count > bound:
            assert name in sketch.counts


def test_windows_forget_old_minutes() -> None:
    """A rejection counts for 15 minutes, then is forgotten; top(rule=) filters."""
    clock = FakeClock(60_000.0)
    top = TopOffenders(clock=clock)
    for _ in range(3):
        top.add("login", "ip:198.51.100.7")
    top.add("api", "ip:198.51.100.7")
    clock.advance(600)
    top.add("login", "ip:203.0.113.9")
    assert top.top() == [
        ("login", "ip:198.51.100.7", 3),
        ("api", "ip:198.51.100.7", 1),
        ("login", "ip:203.0.113.9", 1),
    ]
    assert top.top("api") == [("api", "ip:198.51.100.7", 1)]
    assert top.top(n=1) == [("login", "ip:198.51.100.7", 3)]
    clock.advance(300)  # the first minute is now 15 minutes old
    assert top.top() == [("login", "ip:203.0.113.9", 1)]


def test_engine_top_in_memory(clock: FakeClock) -> None:
    """engine.top() names the rule that rejected and the client identity, most first."""
    wall = FakeClock(60_000.0)
    engine = Engine(
        {"metrics": {"status_path": "/_rl"}, "rules": RULES}, backend=MemoryBackend(clock=clock)
    )
    engine.observer = Recorder(engine, clock=wall)
    for _ in range(4):
        hit(engine, "/login", peer="198.51.100.7")
    for _ in range(3):
        hit(engine, "/api/x", peer="203.0.113.9")
    hit(engine, "/api/x", peer="192.0.2.1")  # allowed: not an offender
    assert engine.top() == [("login", "ip:198.51.100.7", 3), ("api", "ip:203.0.113.9", 1)]
    assert engine.top("api") == [("api", "ip:203.0.113.9", 1)]


def test_no_metrics_no_top(clock: FakeClock) -> None:
    """Without [metrics] nothing is recorded, and a memory engine's top() is empty."""
    engine = Engine({"rules": RULES}, backend=MemoryBackend(clock=clock))
    for _ in range(3):
        hit(engine, "/login")
    assert engine.top() == []


def _worker(url: str, wall: FakeClock) -> Engine:
    backend = RedisBackend.from_url(url, timeout=2.0)
    engine = Engine({"metrics": {"status_path": "/_rl"}, "rules": RULES}, backend=backend)
    engine.observer = Recorder(engine, clock=wall)
    return engine


@pytest.mark.redis
def test_redis_merges_workers(redis_url: str, redis_client: Any) -> None:
    """Two workers (engines with their own clients) on one Redis: top() sees both; the
    minute keys carry a TTL and only rejections write counts (an admitted request writes
    the recording marker only)."""
    wall = FakeClock(60_000.0)
    one, two = _worker(redis_url, wall), _worker(redis_url, wall)
    hit(one, "/login", peer="198.51.100.7")  # admitted: no count written
    assert redis_client.keys("rl:top:*") == [b"rl:top:recording"]
    for _ in range(3):
        hit(one, "/login", peer="198.51.100.7")
        hit(two, "/login", peer="198.51.100.7")
    hit(two, "/login", peer="203.0.113.9")
    hit(two, "/login", peer="203.0.113.9")
    expected = [("login", "ip:198.51.100.7", 6), ("login", "ip:203.0.113.9", 1)]
    top = one.top()
    assert top == expected
    assert two.top("login", n=1) == top[:1]
    key = f"rl:top:login:{int(wall() // 60)}"
    assert 0 < redis_client.ttl(key) <= 16 * 60
    assert redis_client.ttl("rl:top:rules") > 0
    wall.advance(15 * 60)
    assert one.top() == []
    for engine in (one, two):
        engine.backend.close()  # type: ignore[attr-defined]


@pytest.mark.redis
async def test_redis_async_path(redis_url: str) -> None:
    """From asyncio code the writes run as tasks (coalesced) and atop() reads them back."""
    wall = FakeClock(60_000.0)
    engine = _worker(redis_url, wall)
    plan = engine.plan("POST", "/login")
    assert plan is not None
    outcomes = await asyncio.gather(
        *(engine.arun(plan, Request("POST", "/login", "198.51.100.7", {})) for _ in range(20))
    )
    assert sum(o.kind == "rejected" for o in outcomes) == 19
    recorder = engine.observer
    assert isinstance(recorder, Recorder) and recorder.redis_top is not None
    await recorder.redis_top.drain()
    top = await engine.atop()
    assert [(r, n) for r, _, n in top] == [("login", 19)]
    await engine.backend.aclose()  # type: ignore[attr-defined]


@pytest.mark.redis
def test_redis_trim_bounds_each_minute(redis_url: str, redis_client: Any) -> None:
    """A flood of distinct identities keeps at most ``capacity`` members per minute."""
    backend = RedisBackend.from_url(redis_url, timeout=2.0)
    top = RedisTop(backend, capacity=5, clock=FakeClock(60_000.0))
    for i in range(30):
        top.add("api", f"ip:10.0.0.{i}")
    for _ in range(3):
        top.add("api", "ip:10.9.9.9")
    assert redis_client.zcard("rl:top:api:1000") == 5
    assert top.top("api", n=1) == [("api", "ip:10.9.9.9", 3)]
    backend.close()

"""The rejection cache answers a just-rejected client locally, exactly, and briefly."""

from __future__ import annotations

import math

from ratelimit import Limit, MemoryBackend
from ratelimit.http.engine import Engine
from ratelimit.http.keys import RequestInfo
from ratelimit.http.rejections import RejectionCache
from tests.conftest import FakeClock
from tests.http.conftest import RecordingBackend

RULES = [{"name": "login", "path": "/login", "limit": "2/minute"}]


def engine_with(clock: FakeClock) -> tuple[Engine, RecordingBackend]:
    recording = RecordingBackend(MemoryBackend(clock=clock))
    engine = Engine({"rules": RULES}, backend=recording)
    assert engine.rejections is not None  # a backend that is not the memory one gets it
    engine.rejections = RejectionCache(clock=clock)
    return engine, recording


def test_a_flood_after_a_rejection_costs_one_backend_call_per_second(clock: FakeClock) -> None:
    """After the first 429, the same client's requests are answered without the backend for
    up to a second; then the backend is asked again (and still says no)."""
    engine, recording = engine_with(clock)
    plan = engine.plan("GET", "/login")
    assert plan is not None
    request = RequestInfo("GET", "/login", "192.0.2.1")
    statuses = []
    for _ in range(50):
        outcome = engine.run(plan, request)
        statuses.append(outcome.reply.status if outcome.reply else 200)
        clock.advance(0.01)
    assert statuses == [200, 200] + [429] * 48
    # 2 admitted + 1 rejected from the backend, then 0.49 s of cached answers
    assert len(recording.calls) == 3
    clock.advance(0.6)  # past the 1 s bound of the entry
    assert engine.run(plan, request).reply is not None
    assert len(recording.calls) == 4


def test_cached_rejection_keeps_exact_times(clock: FakeClock) -> None:
    """The cached answer's Retry-After is the backend's, moved on by the time elapsed."""
    engine, _ = engine_with(clock)
    plan = engine.plan("GET", "/login")
    assert plan is not None
    request = RequestInfo("GET", "/login", "192.0.2.1")
    for _ in range(2):
        engine.run(plan, request)
    first = engine.run(plan, request).decision
    clock.advance(0.25)
    again = engine.run(plan, request).decision
    assert first is not None and again is not None and not again.allowed
    assert math.isclose(again.retry_after, first.retry_after - 0.25)


def test_other_clients_and_smaller_costs_still_ask_the_backend(clock: FakeClock) -> None:
    """Only the rejected (limit, client) is cached; a smaller cost is not answered from it."""
    cache = RejectionCache(clock=clock)
    limit = Limit("5/minute", name="x")
    backend = MemoryBackend(clock=clock)
    rejected = backend.decide("k", [limit], 6, False)[0]  # cost above the capacity
    assert not rejected.allowed
    cache.remember("k", rejected, 3)
    assert cache.lookup([("k", (limit,), 3)]) is not None
    assert cache.lookup([("k", (limit,), 2)]) is None
    assert cache.lookup([("other", (limit,), 3)]) is None


def test_the_cache_is_bounded(clock: FakeClock) -> None:
    """Past ``max_entries`` the cache starts over instead of growing."""
    cache = RejectionCache(max_entries=100, clock=clock)
    limit = Limit("1/minute", name="x")
    backend = MemoryBackend(clock=clock)
    for i in range(1000):
        key = f"client-{i}"
        backend.decide(key, [limit], 1)
        cache.remember(key, backend.decide(key, [limit], 1)[0], 1)
    assert len(cache) <= 100


def test_memory_backend_gets_no_cache() -> None:
    """The memory backend answers as fast as the cache would: no cache in front of it."""
    assert Engine({"rules": RULES}).rejections is None

"""The Limiter API over the memory backend: atomic multi-limit hits, peek, reset, costs."""

from __future__ import annotations

import pytest

from ratelimit import ConfigError, Limit, Limiter, MemoryBackend, backend_from_url
from tests.conftest import FakeClock


@pytest.fixture
def limiter(memory: MemoryBackend) -> Limiter:
    return Limiter(memory)


def test_several_limits_are_all_or_nothing(limiter: Limiter, clock: FakeClock) -> None:
    """If any limit rejects, no limit consumes; if all admit, all consume."""
    burst = Limit("3/second", name="burst")
    hourly = Limit("5/hour", name="hourly")
    for _ in range(3):
        assert limiter.hit("k", burst, hourly)
    rejected = limiter.hit("k", burst, hourly)
    assert not rejected and rejected.policy is burst
    # The rejection consumed nothing from the hourly limit: still 2 left.
    assert limiter.peek("k", hourly).remaining == 2
    clock.advance(1)
    assert limiter.hit("k", burst, hourly).remaining == 1  # hourly is the tightest now
    assert limiter.hit("k", burst, hourly).remaining == 0
    third = limiter.hit("k", burst, hourly)
    assert not third and third.policy is hourly
    assert limiter.peek("k", burst).remaining == 1  # burst did not consume for the rejection


def test_counters_are_identified_by_limit_id_and_key(limiter: Limiter) -> None:
    """peek(key, b) sees what hit(key, a, b) did; other keys and limits are separate."""
    a, b = Limit("10/minute", name="a"), Limit("10/minute", name="b")
    limiter.hit("alice", a, b)
    assert limiter.peek("alice", b).remaining == 9
    assert limiter.peek("alice", Limit("10/minute", name="b")).remaining == 9
    assert limiter.peek("bob", b).remaining == 10
    assert limiter.peek("alice", Limit("10/minute", name="c")).remaining == 10


def test_peek_counts_nothing(limiter: Limiter) -> None:
    """peek reports remaining and would-be admission without consuming."""
    limit = Limit("2/minute")
    for _ in range(5):
        assert limiter.peek("k", limit).remaining == 2
    limiter.hit("k", limit)
    limiter.hit("k", limit)
    peeked = limiter.peek("k", limit)
    assert not peeked.allowed and peeked.remaining == 0 and peeked.retry_after > 0


@pytest.mark.parametrize(
    "limit",
    [Limit("3/minute", algorithm=a) for a in ("fixed_window", "sliding_window", "sliding_log")]
    + [Limit("3/minute", algorithm=a, burst=5) for a in ("token_bucket", "leaky_bucket")],
    ids=str,
)
def test_peek_reports_the_state_as_it_is(limiter: Limiter, clock: FakeClock, limit: Limit) -> None:
    """A fresh key peeks as full with reset_after 0; after a hit, reset_after is the hit's."""
    fresh = limiter.peek("k", limit)
    assert fresh.allowed and fresh.remaining == limit.capacity and fresh.reset_after == 0
    hit = limiter.hit("k", limit)
    clock.advance(0.25)
    peeked = limiter.peek("k", limit)
    assert peeked.remaining == limit.capacity - 1
    assert peeked.reset_after == pytest.approx(hit.reset_after - 0.25)


def test_reset_forgets_a_key(limiter: Limiter, memory: MemoryBackend) -> None:
    """reset makes a key fresh again and releases its counter."""
    limit = Limit("1/hour", algorithm="sliding_log")
    assert limiter.hit("k", limit)
    assert not limiter.hit("k", limit)
    limiter.reset("k", limit)
    assert len(memory) == 0
    assert limiter.hit("k", limit)


def test_cost_counts_several_units(limiter: Limiter) -> None:
    """A cost of n takes n units; a bad cost is refused."""
    limit = Limit("10/minute", algorithm="token_bucket")
    assert limiter.hit("k", limit, cost=7).remaining == 3
    assert not limiter.hit("k", limit, cost=4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="cost"):
            limiter.hit("k", limit, cost=bad)  # type: ignore[arg-type]


def test_rate_text_is_accepted_as_a_limit(limiter: Limiter) -> None:
    """hit("key", "5/minute") uses a fixed window of that rate."""
    assert limiter.hit("k", "5/minute").remaining == 4
    assert limiter.peek("k", Limit("5/minute")).remaining == 4
    with pytest.raises(ConfigError):
        limiter.hit("k")


async def test_async_api_shares_state_with_sync(limiter: Limiter) -> None:
    """ahit/apeek/areset see the same counters as hit/peek/reset."""
    limit = Limit("3/minute", algorithm="sliding_window")
    assert (await limiter.ahit("k", limit)).remaining == 2
    assert limiter.peek("k", limit).remaining == 2
    assert (await limiter.apeek("k", limit)).remaining == 2
    await limiter.areset("k", limit)
    assert limiter.peek("k", limit).remaining == 3


def test_backend_from_url() -> None:
    """memory:// builds a memory backend; bad URLs are ConfigErrors naming the URL."""
    backend = backend_from_url("memory://?max_keys=5")
    assert isinstance(backend, MemoryBackend) and backend.max_keys == 5
    assert isinstance(Limiter("memory://").backend, MemoryBackend)
    for bad in ("memcached://x", "nonsense", "memory://?max_keys=abc", "memory://?size=3"):
        with pytest.raises(ConfigError, match="URL"):
            backend_from_url(bad)

"""The memory backend: exact under threads and asyncio, bounded, lazily expiring."""

from __future__ import annotations

import asyncio
import os
import threading
import tracemalloc

import pytest

from ratelimit import ALGORITHMS, ConfigError, Limit, Limiter, MemoryBackend
from tests.conftest import FakeClock


def _limit(algorithm: str, text: str = "100/hour") -> Limit:
    return Limit(text, algorithm=algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_32_threads_on_one_key_admit_exactly_the_limit(algorithm: str) -> None:
    """32 threads hammering one key get exactly `limit` admissions in total."""
    limiter = Limiter(MemoryBackend(clock=FakeClock()))
    limit = _limit(algorithm)
    admitted = [0] * 32
    start = threading.Barrier(32)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(20):
            if limiter.hit("shared", limit):
                admitted[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(admitted) == 100


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_1000_asyncio_tasks_on_one_key_admit_exactly_the_limit(algorithm: str) -> None:
    """1,000 concurrent tasks get exactly `limit` admissions."""
    limiter = Limiter(MemoryBackend(clock=FakeClock()))
    limit = _limit(algorithm)

    async def one() -> bool:
        await asyncio.sleep(0)
        return (await limiter.ahit("shared", limit)).allowed

    results = await asyncio.gather(*(one() for _ in range(1000)))
    assert sum(results) == 100


def test_max_keys_bounds_memory_under_a_million_keys() -> None:
    """A million distinct keys through a 1,000-key backend keep 1,000 counters, small memory."""
    backend = MemoryBackend(max_keys=1000, clock=FakeClock())
    limit = Limit("5/hour", algorithm="token_bucket")
    decide = backend.decide
    limits = [limit]
    rss_before = _rss_bytes()
    for i in range(1_000_000):
        decide(f"client-{i}", limits, 1)
    growth = _rss_bytes() - rss_before
    assert len(backend) == 1000
    # Unbounded, a million counters would take well over 100 MB; 1,000 take a few hundred kB.
    assert growth < 20_000_000


def test_a_tracked_key_costs_little_memory() -> None:
    """tracemalloc: 10,000 counters cost under 150 bytes each (keys made beforehand)."""
    backend = MemoryBackend(clock=FakeClock())
    limits = [Limit("5/hour", algorithm="token_bucket")]
    keys = [f"198.51.{i >> 8}.{i & 255}" for i in range(10_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for key in keys:
            backend.decide(key, limits, 1)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(backend) == 10_000
    assert grown / 10_000 < 150


def _rss_bytes() -> int:
    """This process's resident memory, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_eviction_drops_the_least_recently_used_key() -> None:
    """Past max_keys the least recently used counter goes; a recently used one stays."""
    backend = MemoryBackend(max_keys=3, clock=FakeClock())
    limiter = Limiter(backend)
    limit = Limit("1/hour")
    for key in ("a", "b", "c"):
        limiter.hit(key, limit)
    assert not limiter.hit("a", limit)  # rejected, but used: "a" is now the most recent
    limiter.hit("d", limit)  # evicts "b", the least recently used
    assert len(backend) == 3
    assert limiter.peek("a", limit).remaining == 0
    assert limiter.peek("b", limit).remaining == 1  # forgotten
    assert limiter.peek("c", limit).remaining == 0


def test_expired_counters_are_dropped_lazily(clock: FakeClock) -> None:
    """New keys push out expired ones; purge_expired drops the rest; nothing lives forever."""
    backend = MemoryBackend(clock=clock)
    limiter = Limiter(backend)
    limit = Limit("10/second", algorithm="sliding_window")
    for i in range(50):
        limiter.hit(f"old{i}", limit)
    clock.advance(2.5)  # two windows later every counter is fresh again
    for i in range(10):
        limiter.hit(f"new{i}", limit)
    assert len(backend) == 50 + 10 - 2 * 10  # each insert dropped two expired counters
    assert backend.purge_expired() == 30
    assert len(backend) == 10
    clock.advance(10)
    assert backend.purge_expired() == 10
    assert len(backend) == 0


def test_rejections_do_not_create_counters(memory: MemoryBackend) -> None:
    """A request that can never fit (cost above capacity) stores nothing."""
    decision = Limiter(memory).hit("k", Limit("2/second"), cost=5)
    assert not decision and decision.retry_after == float("inf")
    assert len(memory) == 0
    assert memory.get_state("k", Limit("2/second")) is None


def test_bad_max_keys_is_refused() -> None:
    """max_keys must be a positive whole number."""
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ConfigError, match="max_keys"):
            MemoryBackend(max_keys=bad)  # type: ignore[arg-type]


def test_decide_each_is_atomic_across_keys_and_costs(memory: MemoryBackend) -> None:
    """Items with different keys and costs: all consume, or (one rejects) none does."""
    by_ip, by_key = Limit("5/minute", name="by-ip"), Limit("3/minute", name="by-key")
    items = [("ip:203.0.113.7", by_ip, 1), ("key:k1", by_key, 2)]
    first = memory.decide_each(items)
    assert [d.remaining for d in first] == [4, 1]
    second = memory.decide_each(items)  # by-key has 1 left, the cost is 2: rejected
    assert [d.allowed for d in second] == [True, False]
    limiter = Limiter(memory)
    assert limiter.peek("ip:203.0.113.7", by_ip).remaining == 4  # nothing consumed
    assert limiter.peek("key:k1", by_key).remaining == 1
    dry = memory.decide_each([("ip:203.0.113.7", by_ip, 1)], consume=False)
    assert dry[0].remaining == 3 and limiter.peek("ip:203.0.113.7", by_ip).remaining == 4


def test_a_limit_that_changed_under_its_name_is_enforced_as_it_is_now() -> None:
    """A reloaded rule keeps its name but not its old rate: the new rate is enforced (its
    counters may start over, since the state's layout depends on the rate)."""
    backend = MemoryBackend(clock=lambda: 100.0)
    before, after = Limit("2/minute", name="r"), Limit("5/minute", name="r")
    assert [backend.decide("k", [before], 1)[0].allowed for _ in range(3)] == [True, True, False]
    got = [backend.decide("k", [after], 1)[0].allowed for _ in range(6)]
    assert 3 <= sum(got) <= 5 and got[-1] is False
    assert backend.decide("k", [after], 1)[0].limit == 5

"""RedisBackend against a real redis-server: exactness under load, outages, URLs, asyncio."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from ratelimit import BackendError, Limit, Limiter, RedisBackend, backend_from_url
from ratelimit.algorithms import ALGORITHMS
from tests.conftest import FakeClock
from tests.support.redis_server import RedisServer, redis_server

pytestmark = pytest.mark.redis

CAPACITY = 60


def _limit(algorithm: str, per: str = "day") -> Limit:
    return Limit(f"{CAPACITY}/{per}", algorithm=algorithm, name=f"exact-{algorithm}")


def _hammer(url: str, now_s: float | None, threads: int, hits: int, go: Any, out: Any) -> None:
    """Worker process: ``threads`` threads each send ``hits`` requests per algorithm."""
    clock = None if now_s is None else (lambda: now_s)
    backend = RedisBackend.from_url(url, clock=clock, timeout=10)
    limits = [_limit(a) for a in ALGORITHMS]
    counts = [0] * len(limits)
    lock = threading.Lock()

    def run() -> None:
        for _ in range(hits):
            for i, limit in enumerate(limits):
                if backend.decide("one-key", [limit], 1)[0].allowed:
                    with lock:
                        counts[i] += 1

    workers = [threading.Thread(target=run) for _ in range(threads)]
    go.wait(60)
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    backend.close()
    out.put(counts)


def _fleet(url: str, now_s: float | None) -> list[int]:
    """8 processes × 4 threads on one key; the admitted count per algorithm."""
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(url, now_s, 4, 4, go, out)) for _ in range(8)]
    for proc in procs:
        proc.start()
    go.set()
    totals = [0] * len(ALGORITHMS)
    for _ in procs:
        for i, n in enumerate(out.get(timeout=120)):
            totals[i] += n
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    return totals


@pytest.mark.slow
def test_fleet_admits_exactly_the_capacity(redis_url: str) -> None:
    """8 processes × 4 threads sharing one key are admitted exactly L times, every algorithm.

    Each of the 5 algorithms gets 8 × 4 × 4 = 128 requests for a capacity of 60, all at the
    same (given) instant, so exactly 60 must pass.
    """
    totals = _fleet(redis_url, 1_000_000.0)
    assert dict(zip(ALGORITHMS, totals, strict=True)) == dict.fromkeys(ALGORITHMS, CAPACITY)


@pytest.mark.slow
def test_fleet_on_the_server_clock_is_exact(redis_url: str, redis_client: Any) -> None:
    """With Redis TIME as the clock, one fleet still gets exactly L, and every key has a TTL."""
    totals = _fleet(redis_url, None)
    # 60/day refills one unit every 24 min: nothing refills during the test. (The windowed
    # algorithms could see a UTC midnight pass; the buckets and the log cannot.)
    got = dict(zip(ALGORITHMS, totals, strict=True))
    for name in ("sliding_log", "token_bucket", "leaky_bucket"):
        assert got[name] == CAPACITY, name
    keys = list(redis_client.scan_iter("*"))
    assert len(keys) == len(ALGORITHMS)
    assert all(redis_client.pttl(key) > 0 for key in keys)


def test_script_flush_during_load_raises_nothing(redis_url: str, redis_client: Any) -> None:
    """SCRIPT FLUSH while 6 threads decide: no error reaches the caller, counts stay exact."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 5000.0, timeout=5)
    limit = Limit("150/hour", algorithm="token_bucket")
    errors: list[BaseException] = []
    admitted = []
    stop = threading.Event()

    def run() -> None:
        n = 0
        try:
            for _ in range(60):
                n += backend.decide("k", [limit], 1)[0].allowed
        except BaseException as exc:  # recorded, then asserted on
            errors.append(exc)
        admitted.append(n)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    flushes = 0
    while any(t.is_alive() for t in threads) and not stop.is_set():
        redis_client.script_flush()
        flushes += 1
        stop.wait(0.002)
    for thread in threads:
        thread.join()
    backend.close()
    assert errors == []
    assert flushes > 1
    assert sum(admitted) == 150


def test_no_key_is_left_without_a_ttl(redis_url: str, redis_client: Any) -> None:
    """After many decisions over every algorithm and many keys, every key carries a TTL."""
    backend = RedisBackend.from_url(redis_url, timeout=5)
    limiter = Limiter(backend)
    limits = [Limit("3/minute", algorithm=a) for a in ALGORITHMS]
    limits.append(Limit("2/minute", algorithm="leaky_bucket", mode="police"))
    for i in range(200):
        for limit in limits:
            limiter.hit(f"client-{i % 40}", limit, cost=1 + i % 2)
        limiter.hit(f"client-{i % 40}", *limits)
    keys = list(redis_client.scan_iter("*"))
    assert len(keys) == 40 * len(limits)
    ttls = [redis_client.pttl(key) for key in keys]
    assert all(0 < ttl <= 120_000 for ttl in ttls), sorted(ttls)[:5]
    backend.close()


def test_outage_fails_fast_then_recovers(redis_proc: RedisServer, redis_url: str) -> None:
    """Redis killed: BackendError; the breaker then fails fast; after restart, it recovers."""
    breaker_clock = FakeClock()
    backend = RedisBackend.from_url(
        redis_url,
        timeout=5,
        breaker_threshold=3,
        breaker_cooldown=2.0,
        breaker_clock=breaker_clock,
    )
    limit = Limit("5/second")
    assert backend.decide("k", [limit], 1)[0].allowed
    redis_proc.stop()
    for _ in range(3):
        with pytest.raises(BackendError, match="unavailable"):
            backend.decide("k", [limit], 1)
    assert backend.breaker.is_open
    redis_proc.start()  # back, but the breaker is still cooling down: no call reaches Redis
    with pytest.raises(BackendError, match="circuit open"):
        backend.decide("k", [limit], 1)
    breaker_clock.advance(2.0)
    assert backend.decide("k", [limit], 1)[0].allowed  # the probe; same backend object
    assert not backend.breaker.is_open
    assert backend.decide("k", [limit], 1)[0].remaining == 3
    backend.close()


def test_failed_probe_reopens_the_breaker(redis_proc: RedisServer, redis_url: str) -> None:
    """A probe made while Redis is still down opens the breaker for another cool-down."""
    breaker_clock = FakeClock()
    backend = RedisBackend.from_url(
        redis_url, breaker_threshold=1, breaker_cooldown=1.0, breaker_clock=breaker_clock
    )
    redis_proc.stop()
    with pytest.raises(BackendError, match="unavailable"):
        backend.decide("k", [Limit("1/second")], 1)
    breaker_clock.advance(1.0)
    with pytest.raises(BackendError, match="unavailable"):  # the probe goes to Redis, fails
        backend.decide("k", [Limit("1/second")], 1)
    with pytest.raises(BackendError, match="circuit open"):
        backend.decide("k", [Limit("1/second")], 1)
    redis_proc.start()
    backend.close()


def test_hung_server_times_out(redis_proc: RedisServer, redis_url: str) -> None:
    """A server that stops answering (SIGSTOP) gives BackendError after the timeout."""
    backend = RedisBackend.from_url(redis_url, timeout=0.2)
    assert backend.decide("k", [Limit("5/second")], 1)[0].allowed
    assert redis_proc.process is not None
    os.kill(redis_proc.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(BackendError, match="unavailable"):
            backend.decide("k", [Limit("5/second")], 1)
    finally:
        os.kill(redis_proc.process.pid, signal.SIGCONT)
    backend.close()


def test_backend_from_url_and_unix_socket() -> None:
    """backend_from_url gives a RedisBackend for redis:// and unix:// URLs."""
    with tempfile.TemporaryDirectory() as tmp:
        sock = str(Path(tmp) / "redis.sock")
        with redis_server("--unixsocket", sock, "--unixsocketperm", "700") as server:
            for url in (server.url, f"unix://{sock}?db=0"):
                backend = backend_from_url(url, timeout=5)
                assert isinstance(backend, RedisBackend)
                limiter = Limiter(backend)
                assert limiter.hit(url, "1/minute").allowed
                assert not limiter.hit(url, "1/minute").allowed
                backend.close()


async def test_concurrent_ahit_is_exact(redis_url: str) -> None:
    """300 concurrent tasks on one key are admitted exactly L times, every algorithm."""
    # A generous timeout: 300 calls at once queue for new connections on a busy CI machine.
    backend = RedisBackend.from_url(redis_url, clock=lambda: 7000.0, timeout=5)
    limiter = Limiter(backend)
    for algorithm in ALGORITHMS:
        limit = Limit("40/minute", algorithm=algorithm)
        decisions = await asyncio.gather(*(limiter.ahit("k", limit) for _ in range(300)))
        assert sum(d.allowed for d in decisions) == 40, algorithm
    await backend.aclose()


async def test_concurrent_calls_share_one_pipeline(redis_url: str, redis_client: Any) -> None:
    """64 concurrent adecide calls go out as two pipelines of 32 (max_batch), not 64 trips,
    through redis-py's public pipeline API."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    sizes: list[int] = []
    make_pipeline = client.pipeline

    def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            sizes.append(len(pipe))  # the commands queued in this pipeline
            return await execute(*a, **k)

        pipe.execute = counted
        return pipe

    client.pipeline = counting_pipeline  # type: ignore[method-assign]
    backend = RedisBackend(async_client=client, clock=lambda: 1.0, timeout=5)
    limit = Limit("50/minute")
    await backend.adecide("warm-up", [limit], 1)  # a batch of one: EVALSHA, NOSCRIPT, EVAL
    assert sizes == []  # a batch of one is a plain execute_command
    redis_client.config_resetstat()
    decisions = await asyncio.gather(*(backend.adecide(f"k{i % 4}", [limit], 1) for i in range(64)))
    assert sizes == [32, 32]
    assert sum(d[0].allowed for d in decisions) == 64
    assert sorted(d[0].remaining for d in decisions)[:4] == [34, 34, 34, 34]
    assert redis_client.info("commandstats")["cmdstat_evalsha"]["calls"] == 64
    await client.aclose()


async def test_async_noscript_and_outage(redis_proc: RedisServer, redis_url: str) -> None:
    """asyncio: SCRIPT FLUSH is transparent; a dead server gives BackendError, then recovery."""
    import redis

    breaker_clock = FakeClock()
    backend = RedisBackend.from_url(
        redis_url,
        timeout=5,
        breaker_threshold=2,
        breaker_cooldown=1.0,
        breaker_clock=breaker_clock,
    )
    limit = Limit("10/second", algorithm="sliding_window")
    first = await asyncio.gather(*(backend.adecide("k", [limit], 1) for _ in range(3)))
    assert all(d[0].allowed for d in first)
    with redis.Redis.from_url(redis_url) as admin:
        admin.script_flush()
    again = await asyncio.gather(*(backend.adecide("k", [limit], 1) for _ in range(3)))
    assert all(d[0].allowed for d in again)
    redis_proc.stop()
    for _ in range(2):
        with pytest.raises(BackendError, match="unavailable"):
            await backend.adecide("k", [limit], 1)
    with pytest.raises(BackendError, match="circuit open"):
        await backend.adecide("k", [limit], 1)
    redis_proc.start()
    breaker_clock.advance(1.0)
    assert (await backend.adecide("k", [limit], 1))[0].allowed
    await backend.aclose()


def test_one_backend_serves_several_event_loops(redis_url: str) -> None:
    """The same backend object works from two successive event loops (asyncio.run twice)."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 3.0, timeout=5)
    limit = Limit("3/minute")

    async def hit() -> bool:
        try:
            return (await backend.adecide("k", [limit], 1))[0].allowed
        finally:
            await backend.aclose()

    assert [asyncio.run(hit()) for _ in range(4)] == [True, True, True, False]
    assert backend.decide("k", [limit], 1)[0].remaining == 0
    backend.close()


def test_one_round_trip_per_decision(redis_url: str, redis_client: Any) -> None:
    """A decision over three limits is one EVALSHA and nothing else, sync and asyncio."""
    backend = RedisBackend.from_url(redis_url, timeout=5)
    limits = [Limit("5/second"), Limit("9/minute", algorithm="token_bucket"), Limit("99/hour")]
    backend.decide("warm-up", limits, 1)  # NOSCRIPT, then EVAL caches the script
    redis_client.config_resetstat()
    for i in range(10):
        backend.decide(f"k{i}", limits, 1)

    async def five() -> None:
        await asyncio.gather(*(backend.adecide(f"a{i}", limits, 1) for i in range(5)))
        await backend.aclose()

    asyncio.run(five())
    stats = redis_client.info("commandstats")
    calls = {name: value["calls"] for name, value in stats.items()}
    assert calls.pop("cmdstat_config|resetstat") == 1
    assert calls.pop("cmdstat_evalsha") == 15
    # Inside the script: one TIME per decision, one GET and one SET PX per limit.
    assert (calls.pop("cmdstat_time"), calls.pop("cmdstat_get"), calls.pop("cmdstat_set")) == (
        15,
        45,
        45,
    )
    handshake = {"cmdstat_client|setinfo", "cmdstat_hello"}  # a new asyncio connection
    assert set(calls) <= handshake, calls
    backend.close()


def test_memory_per_tracked_key(redis_url: str, redis_client: Any, server_kind: str) -> None:
    """Redis attributes at most 90 bytes to a tracked key, for every O(1) algorithm."""
    backend = RedisBackend.from_url(redis_url, timeout=5)
    limits = [
        Limit("100/hour"),
        Limit("1000/second", algorithm="sliding_window"),
        Limit("100/hour", algorithm="token_bucket", burst=500),
        Limit("10/minute", algorithm="leaky_bucket"),
    ]
    for limit in limits:
        backend.decide("203.0.113.7", [limit], 1)
        key = backend.key_for("203.0.113.7", limit)
        assert redis_client.memory_usage(key, samples=0) <= 90, limit
        # Valkey 9 keeps a number written by a script as a short string (embstr), in the
        # same 40 bytes as Redis's int: the bound above is what counts.
        if limit.algorithm.endswith("window") and server_kind == "redis":
            assert redis_client.object("encoding", key) == b"int"
    backend.close()


async def test_adecide_each_is_atomic_across_clients_when_pipelined(redis_url: str) -> None:
    """Concurrent adecide_each calls (auto-pipelined) over two clients' keys and two costs
    admit exactly what the tighter item allows, and a rejection consumes nothing."""
    backend = RedisBackend.from_url(
        redis_url, prefix="each:", clock=lambda: 500.0, ttl_pad_ms=10**7, timeout=5
    )
    by_ip, by_key = Limit("10/hour", name="ip"), Limit("6/hour", name="key")
    items = [("203.0.113.7", by_ip, 1), ("api-key-1", by_key, 2)]
    try:
        results = await asyncio.gather(*(backend.adecide_each(items) for _ in range(5)))
        admitted = [all(d.allowed for d in decisions) for decisions in results]
        assert sum(admitted) == 3  # the key's 6 units at a cost of 2
        [ip_state] = await backend.adecide("203.0.113.7", [by_ip], 0, False)
        assert ip_state.remaining == 10 - 3  # the two rejected calls took nothing
    finally:
        await backend.aclose()

"""Faults on a real redis-server: a paused server, OOM, an evicting maxmemory-policy, bugs.

Each test can fail on the first version of the backend: it waited 0.5-1 s per request on a
paused Redis (no bound on the whole decision), turned every exception into a BackendError,
and said nothing about an evicting ``maxmemory-policy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ratelimit import BackendError, Limit, RedisBackend, backend_from_url
from ratelimit.backends.redis import DEFAULT_TIMEOUT
from tests.conftest import FakeClock
from tests.support.redis_server import RedisServer, redis_server

pytestmark = pytest.mark.redis

TIMEOUT = 0.1
#: A correctness bound, not a benchmark: a decision on a stopped Redis gives up after about
#: ``timeout``, not never. Loose on purpose: a busy CI machine must not fail it.
BOUND = 3.0
LIMIT = Limit("100/minute")


@pytest.fixture
def paused(redis_proc: RedisServer) -> Iterator[Callable[[], None]]:
    """A function that stops the test server (it accepts connections and never answers),
    resumed when the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(redis_proc.frozen())


def _backend(url: str, **kwargs: Any) -> RedisBackend:
    kwargs.setdefault("timeout", TIMEOUT)
    kwargs.setdefault("breaker_clock", FakeClock())
    return RedisBackend.from_url(url, **kwargs)


def test_timeout_defaults_to_a_tenth_and_the_url_or_argument_sets_it(redis_url: str) -> None:
    """timeout: an explicit argument wins, else the URL's ?timeout=, else 0.1 s."""
    assert DEFAULT_TIMEOUT == 0.1
    assert RedisBackend.from_url(redis_url).timeout == 0.1
    with_query = f"{redis_url}?timeout=0.05"
    backend = backend_from_url(with_query)
    assert isinstance(backend, RedisBackend) and backend.timeout == 0.05
    assert backend.decide("k", [LIMIT], 1)[0].allowed  # ?timeout= is not passed to redis-py
    backend.close()
    explicit = backend_from_url(with_query, timeout=0.3)
    assert isinstance(explicit, RedisBackend) and explicit.timeout == 0.3


async def test_paused_redis_costs_one_timeout_then_the_breaker_fails_fast(
    redis_url: str, paused: Any
) -> None:
    """asyncio, Redis stopped: each decision gives up after about the timeout (well within
    ``BOUND``), with kind "timeout"; once the breaker is open, decisions fail at once
    ("circuit_open")."""
    kinds: list[str] = []
    backend = _backend(redis_url, breaker_threshold=2, on_error_kind=kinds.append)
    try:
        assert (await backend.adecide("k", [LIMIT], 1))[0].allowed  # connected, warm
        paused()
        for _ in range(2):
            started = time.perf_counter()
            with pytest.raises(BackendError) as caught:
                await backend.adecide("k", [LIMIT], 1)
            assert time.perf_counter() - started < BOUND
            assert caught.value.kind == "timeout"
        assert backend.breaker.is_open and not backend.is_up
        with pytest.raises(BackendError, match="circuit open"):  # raised before any I/O
            await backend.adecide("k", [LIMIT], 1)
        assert kinds == ["timeout", "timeout", "circuit_open"]
        assert backend.last_error_kind == "circuit_open"
    finally:
        await backend.aclose()


async def test_paused_redis_bounds_concurrent_and_fresh_connections(
    redis_url: str, paused: Any
) -> None:
    """asyncio, Redis stopped before the first call (so connecting stalls too): 50 concurrent
    decisions all fail within the bound, each one counted."""
    backend = _backend(redis_url, breaker_threshold=1000)
    paused()
    try:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(backend.adecide(f"k{i}", [LIMIT], 1) for i in range(50)), return_exceptions=True
        )
        elapsed = time.perf_counter() - started
        assert all(isinstance(r, BackendError) for r in results), results[:3]
        assert elapsed < BOUND
        assert backend.breaker.failed_decisions == 50
    finally:
        await backend.aclose()


def test_paused_redis_bounds_a_sync_decision(redis_url: str, paused: Any) -> None:
    """Sync, Redis stopped: a decision on a warm connection gives up after about the
    timeout (the socket timeout), and the breaker then fails fast."""
    backend = _backend(redis_url, breaker_threshold=1)
    try:
        assert backend.decide("k", [LIMIT], 1)[0].allowed
        paused()
        started = time.perf_counter()
        with pytest.raises(BackendError) as caught:
            backend.decide("k", [LIMIT], 1)
        assert time.perf_counter() - started < BOUND
        assert caught.value.kind == "timeout"
        with pytest.raises(BackendError, match="circuit open"):
            backend.decide("k", [LIMIT], 1)
    finally:
        backend.close()


@pytest.fixture
def out_of_memory(redis_client: Any) -> Iterator[None]:
    """The test server at maxmemory 1 byte with noeviction: every write is refused (OOM)."""
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", "1")
    yield
    redis_client.config_set("maxmemory", "0")


async def test_oom_is_a_backend_error(redis_url: str, out_of_memory: None) -> None:
    """A Redis out of memory refuses the script's writes: BackendError of kind "oom", sync
    and asyncio (fed to the breaker like any outage)."""
    backend = _backend(redis_url)
    try:
        with pytest.raises(BackendError, match=r"OutOfMemoryError|OOM") as caught:
            backend.decide("k", [LIMIT], 1)
        assert caught.value.kind == "oom"
        with pytest.raises(BackendError) as async_caught:
            await backend.adecide("k", [LIMIT], 1)
        assert async_caught.value.kind == "oom"
        assert backend.breaker.failed_decisions == 2
    finally:
        backend.close()
        await backend.aclose()


def test_a_bug_is_not_an_outage_sync(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-Redis exception from the client (a TypeError: a bug) propagates unchanged,
    and the breaker does not count it."""
    backend = _backend(redis_url, breaker_threshold=1)
    assert backend.decide("k", [LIMIT], 1)[0].allowed
    client = backend._sync_client()

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("a bug")

    monkeypatch.setattr(client, "execute_command", broken)
    with pytest.raises(TypeError, match="a bug"):
        backend.decide("k", [LIMIT], 1)
    assert not backend.breaker.is_open and backend.breaker.failed_decisions == 0
    backend.close()


async def test_a_bug_is_not_an_outage_async(redis_url: str) -> None:
    """asyncio: a TypeError from the client reaches every caller of the batch as it is,
    single or pipelined, and the breaker does not count it."""
    import redis.asyncio

    class Broken(redis.asyncio.Redis):
        async def execute_command(self, *args: Any, **options: Any) -> Any:
            raise TypeError("a bug")

        def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
            raise AttributeError("another bug")

    client = Broken.from_url(redis_url)
    backend = RedisBackend(async_client=client, timeout=TIMEOUT, breaker_threshold=1)
    try:
        with pytest.raises(TypeError, match="a bug"):
            await backend.adecide("k", [LIMIT], 1)
        results = await asyncio.gather(
            *(backend.adecide(f"k{i}", [LIMIT], 1) for i in range(3)), return_exceptions=True
        )
        assert [type(r) for r in results] == [AttributeError] * 3
        assert not backend.breaker.is_open and backend.breaker.failed_decisions == 0
    finally:
        await client.aclose()


def _policy_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith("ratelimit")
        and r.levelno == logging.WARNING
        and "maxmemory-policy" in r.getMessage()
    ]


@pytest.fixture(scope="module")
def evicting_server() -> Iterator[RedisServer]:
    """A redis-server that evicts any key under memory pressure (allkeys-lru)."""
    with redis_server("--maxmemory-policy", "allkeys-lru") as server:
        yield server


def test_evicting_policy_logs_one_warning(
    evicting_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """maxmemory-policy allkeys-lru: one WARNING at the first decision, naming the policy
    and noeviction; none for the next decisions."""
    caplog.set_level(logging.DEBUG, logger="ratelimit")
    backend = _backend(evicting_server.url)
    for _ in range(5):
        backend.decide("k", [LIMIT], 1)
    [record] = _policy_warnings(caplog)
    assert "allkeys-lru" in record.getMessage() and "noeviction" in record.getMessage()
    backend.close()


async def test_evicting_policy_logs_one_warning_async(
    evicting_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The same once from asyncio (checked in the background after the first decision),
    also for a volatile-* policy: every counter has a TTL, so those evict them too."""
    evicting_server.command("CONFIG", "SET", "maxmemory-policy", "volatile-ttl")
    caplog.set_level(logging.INFO, logger="ratelimit")
    backend = _backend(evicting_server.url)
    try:
        for _ in range(3):
            await asyncio.gather(*(backend.adecide("k", [LIMIT], 1) for _ in range(4)))
    finally:
        await backend.aclose()  # waits for the background check
        evicting_server.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    [record] = _policy_warnings(caplog)
    assert "volatile-ttl" in record.getMessage()


def test_noeviction_or_no_config_command_logs_nothing(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """noeviction: no warning. A server that refuses CONFIG (renamed away, as on managed
    Redis): no warning either, one DEBUG line, and decisions work."""
    caplog.set_level(logging.DEBUG, logger="ratelimit")
    backend = _backend(redis_url)
    backend.decide("k", [LIMIT], 1)
    backend.close()
    with redis_server("--rename-command", "CONFIG", '""') as locked:
        other = _backend(locked.url)
        assert other.decide("k", [LIMIT], 1)[0].allowed
        other.close()
    assert _policy_warnings(caplog) == []
    assert any("CONFIG GET maxmemory-policy failed" in r.getMessage() for r in caplog.records)


async def test_a_script_error_is_a_backend_error_but_no_outage(
    redis_url: str, redis_client: Any
) -> None:
    """A key of the wrong type under our prefix makes the script fail: a BackendError of
    kind "script" for that decision, sync and asyncio, but Redis answered, so the breaker
    stays closed and other keys are decided as usual."""
    backend = _backend(redis_url, breaker_threshold=1)
    redis_client.rpush(backend.key_for("bad", LIMIT), "not a counter")
    try:
        for _ in range(3):
            with pytest.raises(BackendError) as caught:
                backend.decide("bad", [LIMIT], 1)
            assert caught.value.kind == "script"
            with pytest.raises(BackendError) as async_caught:
                await backend.adecide("bad", [LIMIT], 1)
            assert async_caught.value.kind == "script"
        assert not backend.breaker.is_open
        assert backend.decide("good", [LIMIT], 1)[0].allowed
        assert (await backend.adecide("good", [LIMIT], 1))[0].allowed
    finally:
        backend.close()
        await backend.aclose()

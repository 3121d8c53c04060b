"""Deadlines on a busy event loop, against a real Redis (SPEC §4, "A flood is not an outage").

The event loop is kept busy at every turn (a callback that blocks 30 ms, again and again),
as a worker parsing a flood of requests is. A healthy Redis must still decide every call,
exactly, with no breaker opening; a stopped Redis on such a loop is an overload — shed, not
blamed on Redis (the breaker stays closed).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from ratelimit import Limit, Rate, RedisBackend
from ratelimit.errors import BackendError
from tests.support.redis_server import RedisServer, redis_server

pytestmark = pytest.mark.redis


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own (it may be stopped)."""
    with redis_server() as server:
        yield server


def _keep_busy(until: asyncio.Future[object]) -> None:
    """Block the loop 30 ms per turn until ``until`` is done."""
    loop = asyncio.get_running_loop()

    def turn() -> None:
        time.sleep(0.03)
        if not until.done():
            loop.call_soon(turn)

    loop.call_soon(turn)


async def test_a_busy_loop_still_decides_exactly_on_a_healthy_redis(
    own_redis: RedisServer,
) -> None:
    """200 decisions at once under a 50/hour limit, with a 10 ms timeout, on a loop busy at
    every turn: exactly 50 admitted, none failed, the breaker closed."""
    backend = RedisBackend.from_url(own_redis.url, timeout=0.01)
    limit = Limit(Rate.parse("50/hour"), "sliding_log")
    try:
        calls = asyncio.gather(
            *(backend.adecide("client", [limit], 1) for _ in range(200)), return_exceptions=True
        )
        _keep_busy(calls)
        results = await calls
    finally:
        await backend.aclose()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    admitted = sum(1 for r in results if not isinstance(r, BaseException) and r[0].allowed)
    assert admitted == 50
    assert not backend.breaker.is_open


async def test_a_stopped_redis_on_a_busy_loop_is_an_overload_not_an_outage(
    own_redis: RedisServer,
) -> None:
    """Redis stopped while the loop is busy at every turn: the decisions fail as
    ``overload`` once their wall-time bound passes, and the breaker stays closed (nothing
    showed Redis at fault)."""
    backend = RedisBackend.from_url(own_redis.url, timeout=0.01, overload_after=0.3)
    limit = Limit(Rate.parse("50/hour"), "fixed_window")
    await backend.adecide("warm", [limit], 1)  # connected before Redis stops
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        calls = asyncio.gather(
            *(backend.adecide("client", [limit], 1) for _ in range(6)), return_exceptions=True
        )
        _keep_busy(calls)
        results = await calls
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
        await backend.aclose()
    kinds = {r.kind for r in results if isinstance(r, BackendError)}
    assert kinds == {"overload"}, results
    assert not backend.breaker.is_open

"""Shares on a real Redis: the Lua mirror, share = 1 against today's decisions, 8 processes,
and the faults (Redis down, flushed)."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit import BackendError, Limit, RedisBackend
from ratelimit.backends.shares import State, grant
from tests.support.redis_server import redis_server

pytestmark = pytest.mark.redis

ALGOS = ["fixed_window", "sliding_window", "token_bucket", "leaky_bucket"]


def _limit(algorithm: str, rate: str, share: int | None, name: str = "s") -> Limit:
    mode = "police" if algorithm == "leaky_bucket" else None
    return Limit(rate, algorithm=algorithm, share=share, mode=mode, name=name)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    algorithm=st.sampled_from(ALGOS),
    steps=st.lists(
        st.tuples(st.integers(0, 2500), st.integers(1, 4), st.integers(0, 20)),
        min_size=1,
        max_size=40,
    ),
)
def test_lua_mirrors_the_python_grant(
    redis_client: Any, algorithm: str, steps: list[tuple[int, int, int]]
) -> None:
    """share.lua's rows and stored states equal shares.grant()'s on random sequences."""
    backend = RedisBackend(redis_client, clock=lambda: 0.0)
    limit = _limit(algorithm, "9/3s", 8)
    key = backend.share_key("mirror", limit)
    redis_client.delete(key)
    state: State | None = None
    now = 7_000_000
    from ratelimit.backends.redis_script import SHARE_SCRIPT
    from ratelimit.backends.shares import _params

    for dt, cost, want in steps:
        now += dt
        args = [str(now).encode(), b"g", b"0", *_params(limit), b"%d" % cost, b"%d" % want]
        row = redis_client.eval(SHARE_SCRIPT, 1, key, *args)[0].decode().split()
        stored = redis_client.get(key)
        gen = int(stored.split()[0]) if stored else 0
        g = grant(*(int(a) for a in _params(limit)), state, now, cost, want, gen)
        gen_seq = (g.state[0], g.state[1]) if g.state else (0, 0)
        expect = [int(g.allowed), g.remaining, g.reset, g.retry, g.granted, g.end - now, g.tag]
        assert [int(v) for v in row] == [*expect, *gen_seq]
        if g.state is not None:
            state = g.state
            assert tuple(int(v) for v in stored.split()) == state


@pytest.mark.parametrize("algorithm", ALGOS)
def test_share_one_decides_like_today(redis_client: Any, algorithm: str) -> None:
    """With share = 1, RedisBackend's decisions equal those without share (decide.lua)."""
    t = [5_000.0]
    backend = RedisBackend(redis_client, clock=lambda: t[0])
    shared, plain = _limit(algorithm, "5/2s", 1, "one"), _limit(algorithm, "5/2s", None, "one")
    for i in range(60):
        t[0] += (i * 37 % 11) / 10
        cost = 1 + i % 3
        a = backend.decide("s1", [shared], cost)[0]
        b = backend.decide("s1", [plain], cost)[0]
        assert a._replace(policy=plain) == b


def _worker(url: str, go: Any, out: Any) -> None:
    backend = RedisBackend.from_url(url, clock=lambda: 1_000_000.0, timeout=10)
    counts = []
    for algorithm in ALGOS:
        limit = _limit(algorithm, "300/day", 16, f"fleet-{algorithm}")
        go.wait(60)
        counts.append(sum(backend.decide("one-key", [limit], 1)[0].allowed for _ in range(100)))
    out.put((counts, backend.shares.held()))
    backend.close()


@pytest.mark.slow
def test_eight_processes_never_exceed_the_limit(redis_url: str) -> None:
    """8 processes with share = 16, 800 requests for 300: at most 300 admitted, at least
    300 − 8 × 15, and what was not admitted is exactly what the workers held."""
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(redis_url, go, out)) for _ in range(8)]
    for proc in procs:
        proc.start()
    go.set()
    totals = [0] * len(ALGOS)
    held = 0
    for _ in procs:
        counts, h = out.get(timeout=120)
        held += h
        totals = [a + b for a, b in zip(totals, counts, strict=True)]
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    for total in totals:
        assert 300 - 8 * 15 <= total <= 300
    assert held <= 8 * 15 * len(ALGOS)


def test_redis_down_spends_the_share_then_fails() -> None:
    """With Redis gone, a worker admits what it holds, then raises BackendError."""
    with redis_server() as server:
        backend = RedisBackend.from_url(server.url, clock=lambda: 10_000.0, timeout=0.2)
        limit = _limit("fixed_window", "1000/hour", 16)
        for _ in range(1 + 2 + 4 + 8):  # targets 1, 2, 4, 8: the next grant takes 16
            assert backend.decide("k", [limit], 1)[0].allowed
        assert backend.decide("k", [limit], 1)[0].allowed
        held = backend.shares.held()
        assert held == 15
        server.stop()
        for _ in range(held):
            assert backend.decide("k", [limit], 1)[0].allowed
        with pytest.raises(BackendError):
            backend.decide("k", [limit], 1)
        server.start()


async def test_a_stopped_redis_fails_a_grant_and_its_waiters_at_once() -> None:
    """Redis stops answering (SIGSTOP) while a worker's share is spent: 20 concurrent requests
    miss, one grant is asked for all of them, and every one fails with a BackendError of kind
    "timeout" within the bound — none waits for a grant of its own, none is admitted."""
    with redis_server() as server:
        backend = RedisBackend.from_url(server.url, timeout=0.1, breaker_threshold=1000)
        limit = _limit("fixed_window", "100000/hour", 16, "stopped")
        for _ in range(40):  # the share is taken and spent
            assert (await backend.adecide("k", [limit], 1))[0].allowed
        asked = backend.shares.asked
        held = backend.shares.holds("k", limit)
        with server.frozen():
            started = time.monotonic()
            got = await asyncio.gather(
                *(backend.adecide("k", [limit], 1) for _ in range(held + 20)),
                return_exceptions=True,
            )
            elapsed = time.monotonic() - started
        admitted = [g for g in got if not isinstance(g, BaseException)]
        failed = [g for g in got if isinstance(g, BackendError)]
        assert len(admitted) == held and all(d[0].allowed for d in admitted)  # what it held
        assert len(failed) == 20 and {e.kind for e in failed} == {"timeout"}
        assert backend.shares.asked == asked + 1  # one grant for all of them
        assert elapsed < 3.0  # about the timeout, certainly not one timeout each
        await backend.aclose()


async def test_out_of_memory_fails_a_grant_and_its_waiters(
    redis_url: str, redis_client: Any
) -> None:
    """A Redis out of memory refuses the grant's write: the requests waiting for it fail with
    the same BackendError (kind "oom"), and nothing is admitted beyond what was held."""
    backend = RedisBackend.from_url(redis_url, breaker_threshold=1000)
    limit = _limit("sliding_window", "100000/hour", 16, "oom")
    assert (await backend.adecide("warm", [limit], 1))[0].allowed  # connected, script loaded
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", "1")
    try:
        got = await asyncio.gather(
            *(backend.adecide("fresh", [limit], 1) for _ in range(20)), return_exceptions=True
        )
    finally:
        redis_client.config_set("maxmemory", "0")
    assert all(isinstance(g, BackendError) and g.kind == "oom" for g in got), got[:3]
    assert backend.shares.holds("fresh", limit) == 0
    await backend.aclose()


def test_a_flushed_redis_refuses_returns(redis_url: str, redis_client: Any) -> None:
    """Units held across a FLUSHALL are not given back into the new state on close."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 20_000.0)
    limit = _limit("sliding_window", "1000/hour", 16, "flushed")
    for _ in range(16):
        backend.decide("k", [limit], 1)
    assert backend.shares.held() > 0
    redis_client.flushall()
    other = RedisBackend.from_url(redis_url, clock=lambda: 20_000.0)
    assert other.decide("k", [limit], 1)[0].allowed
    before = redis_client.get(backend.share_key("k", limit))
    backend.close()
    assert redis_client.get(backend.share_key("k", limit)) == before
    assert backend.shares.counts["returned"] == 0 and backend.shares.counts["expired"] >= 1
    other.close()


def test_close_gives_unused_units_back_once(redis_url: str, redis_client: Any) -> None:
    """close() returns what a worker holds to its window, once: the fleet gets it back."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 30_000.0)
    limit = _limit("token_bucket", "100/minute", 16, "returned")
    for _ in range(8):
        backend.decide("k", [limit], 1)
    held = backend.shares.held()
    assert held > 0
    probe = RedisBackend.from_url(redis_url, clock=lambda: 30_000.0)
    before = probe.decide("k", [limit], 0, consume=False)[0].remaining
    backend.close()
    backend.close()
    after = probe.decide("k", [limit], 0, consume=False)[0].remaining
    assert after == before + held
    assert backend.shares.counts["returned"] == 1
    probe.close()


def test_mixed_call_throws_away_the_cost_when_a_plain_limit_refuses(redis_url: str) -> None:
    """A share limit beside a refusing limit without share admits nothing and holds no more
    than share − 1."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 40_000.0)
    shared = _limit("fixed_window", "1000/hour", 4, "mixed-a")
    tight = Limit("2/hour", algorithm="sliding_log", name="mixed-b")
    got = [all(backend.decide("m", [shared, tight], 1)) for _ in range(10)]
    assert got.count(True) == 2
    assert backend.shares.held() <= 3
    backend.close()


def _script_calls(client: Any) -> int:
    """EVALSHA + EVAL calls since the last ``CONFIG RESETSTAT`` (``INFO commandstats``)."""
    stats = client.info("commandstats")
    return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))


@pytest.mark.parametrize(("rate", "n"), [("100000/hour", 256), ("50/hour", 200)])
async def test_concurrent_adecide_coalesce_on_redis(
    redis_url: str, redis_client: Any, rate: str, n: int
) -> None:
    """Many concurrent ``adecide`` on one key and one worker: at most one script call per
    8 decisions (``INFO commandstats``), and never more admitted than the limit."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 70_000.0)
    limit = _limit("fixed_window", rate, 16, f"co-{n}")
    await backend.adecide("warm", [limit], 1)  # connected, script loaded
    redis_client.config_resetstat()
    got = await asyncio.gather(*(backend.adecide("k", [limit], 1) for _ in range(n)))
    calls = _script_calls(redis_client)
    admitted = sum(d[0].allowed for d in got)
    capacity = limit.capacity
    assert calls * 8 <= n
    assert admitted <= min(n, capacity)
    assert admitted >= min(n, capacity) - 15
    await backend.aclose()


def test_a_flushed_or_failed_over_redis_bounds_the_overshoot(
    redis_url: str, redis_client: Any
) -> None:
    """State lost under a worker (FLUSHALL, or a failover to a replica that missed the
    grants): it spends what it held, then takes shares of the new state; in the window at
    most the limit plus what was granted before the loss is admitted, and nothing old is
    given back into the new state."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 80_000.0)
    limit = _limit("fixed_window", "40/hour", 16, "lost")
    before = sum(backend.decide("k", [limit], 1)[0].allowed for _ in range(20))
    granted_before = before + backend.shares.held()
    redis_client.flushall()
    after = sum(backend.decide("k", [limit], 1)[0].allowed for _ in range(100))
    assert before + after <= 40 + granted_before
    assert after >= 40 - 15  # the new state's budget is used, less at most one share
    stored = redis_client.get(backend.share_key("k", limit))
    gen = int(stored.split()[0])
    backend.close()
    assert int(redis_client.get(backend.share_key("k", limit)).split()[0]) == gen


async def test_lifespan_shutdown_gives_shares_back(redis_url: str) -> None:
    """The ASGI middleware gives a worker's unused units back at ``lifespan.shutdown``."""
    from ratelimit.asgi import RateLimitMiddleware
    from tests.metrics.conftest import Request
    from tests.redis.test_warmup import _app, _start

    backend = RedisBackend.from_url(redis_url, clock=lambda: 90_000.0)
    config = {"rules": [{"name": "s", "path": "/s", "limit": "1000/hour", "share": 16}]}
    app = RateLimitMiddleware(_app, config=config, backend=backend)
    plan = app.engine.plan("GET", "/s")
    assert plan is not None
    for _ in range(8):
        await app.engine.arun(plan, Request("GET", "/s", "192.0.2.9", {}))
    held = backend.shares.held()
    assert held > 0
    probe = RedisBackend.from_url(redis_url, clock=lambda: 90_000.0)
    limits = plan.groups[0].limits
    key = plan.groups[0].key(Request("GET", "/s", "192.0.2.9", {}))
    left = probe.decide(key, list(limits), 0, consume=False)[0].remaining
    await _start(app)
    assert backend.shares.held() == 0 and backend.shares.counts["returned"] == 1
    assert probe.decide(key, list(limits), 0, consume=False)[0].remaining == left + held
    probe.close()
    await backend.aclose()


def test_a_reload_gives_shares_back(redis_url: str, tmp_path: Any) -> None:
    """``Engine.reload`` gives the unused units back before the new rules take shares."""
    from ratelimit.http.engine import Engine
    from tests.metrics.conftest import hit

    path = tmp_path / "ratelimit.toml"
    rule = '[[rules]]\nname = "s"\npath = "/s"\nlimit = "{}"\nshare = 16\n'
    path.write_text(rule.format("1000/hour"))
    backend = RedisBackend.from_url(redis_url, clock=lambda: 95_000.0)
    engine = Engine(str(path), backend=backend)
    for _ in range(8):
        assert hit(engine, "/s").kind == "allowed"
    assert backend.shares.held() > 0
    path.write_text(rule.format("2000/hour"))
    assert engine.reload()
    assert backend.shares.held() == 0 and backend.shares.counts["returned"] == 1
    backend.close()


def test_reset_forgets_the_share_state_and_what_is_held(redis_url: str) -> None:
    """``reset`` of a client deletes its share states in Redis and drops what this worker
    holds of them: the client starts over with the full limit."""
    backend = RedisBackend.from_url(redis_url, clock=lambda: 130_000.0)
    limit = _limit("fixed_window", "20/hour", 8, "reset")
    assert sum(backend.decide("k", [limit], 1)[0].allowed for _ in range(30)) == 20
    backend.reset("k", [limit])
    assert backend.shares.held() == 0
    assert sum(backend.decide("k", [limit], 1)[0].allowed for _ in range(30)) >= 20 - 7
    backend.close()

"""Charges (the cost known after the response) on Redis: the charge script mirrors the
algorithms' ``charge`` exactly, debts included (a differential test against the memory
backend), and a debt is read by the decision script as the Python algorithms read it."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit import ConfigError, Limit, MemoryBackend, RedisBackend
from ratelimit.http.engine import Engine
from ratelimit.http.policies import charges as charges_module
from tests.conftest import FakeClock
from tests.core.strategies import limits as any_limit
from tests.policies.test_policies import Request, run
from tests.support.redis_server import redis_server

PAD = 10 * 24 * 3600 * 1000  # fake time: keep Redis from expiring keys in real time
_prefixes = itertools.count()
CHARGED = ["fixed_window", "sliding_window", "token_bucket", "leaky_bucket"]

Step = tuple[str, int, str, int, int]  # (op, ms, key, cost or delta, elapsed ms)


def _backend(client: Any, clock: FakeClock) -> RedisBackend:
    return RedisBackend(client, clock=clock, prefix=f"c{next(_prefixes)}:", ttl_pad_ms=PAD)


def _memory(clock: FakeClock) -> MemoryBackend:
    return MemoryBackend(clock=clock)


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Limit], list[Step]]:
    """1 or 2 limits of the algorithms that carry a debt, and a timeline of decisions and
    charges (small and huge, given back too) on two keys, on a clock that never goes back."""
    count = draw(st.integers(1, 2))
    limits = [
        dataclasses.replace(draw(any_limit(draw(st.sampled_from(CHARGED)))), name=f"limit{i}")
        for i in range(count)
    ]
    longest = max(limit.rate.period_ms for limit in limits)
    now = draw(st.integers(0, 5 * longest))
    steps: list[Step] = []
    for gap, key, charge, amount, elapsed in draw(
        st.lists(
            st.tuples(
                st.integers(0, 2 * longest) | st.just(0),
                st.sampled_from(["a", "b"]),
                st.booleans(),
                st.integers(-30, 60) | st.sampled_from([10**6, 10**15, -(10**15)]),
                st.integers(0, 2 * longest) | st.just(0),
            ),
            min_size=1,
            max_size=40,
        )
    ):
        now += gap
        if charge:
            steps.append(("charge", now, key, amount, min(elapsed, now)))
        else:
            steps.append(("decide", now, key, max(1, amount % 5), 0))
    return limits, steps


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=timelines())
def test_redis_charges_equal_memory_charges(
    script_client: Any, case: tuple[list[Limit], list[Step]]
) -> None:
    """Driven by the same timeline of decisions and charges, Redis and memory agree on every
    decision: a debt means the same on both."""
    limits, steps = case
    clock = FakeClock()
    memory = MemoryBackend(clock=clock)
    redis_backend = _backend(script_client, clock)
    for i, (op, ms, key, amount, elapsed) in enumerate(steps):
        clock.set_ms(ms)
        if op == "charge":
            memory.charge(key, limits, amount, elapsed)
            redis_backend.charge(key, limits, amount, elapsed)
            amount, op = 0, "probe"
        want = memory.decide(key, limits, amount, op == "decide")
        got = redis_backend.decide(key, limits, amount, op == "decide")
        assert [tuple(d[:6]) for d in got] == [tuple(d[:6]) for d in want], (
            f"step {i} ({op}) at {ms} ms, key {key}"
        )


@pytest.mark.parametrize("algorithm", CHARGED)
def test_a_debt_is_paid_before_the_next_admission(script_client: Any, algorithm: str) -> None:
    """10/second, 2 reserved then 25 used: 15 owed past the limit. Nothing is admitted until
    the debt is paid, the first rejection's Retry-After says when, and a client honouring
    it is admitted then — on Redis as in memory."""
    mode = "police" if algorithm == "leaky_bucket" else None
    limit = Limit("10/second", algorithm, mode=mode, name="tokens")
    for make in (_memory, lambda clock: _backend(script_client, clock)):
        clock = FakeClock(1000.0)
        backend: Any = make(clock)  # type: ignore[no-untyped-call]
        assert backend.decide("k", [limit], 2)[0].allowed
        backend.charge("k", [limit], 23, 0)
        first = backend.decide("k", [limit], 1)[0]
        assert not first.allowed and first.remaining == 0
        assert first.retry_after >= 1.5  # 15 owed at 10 a second, at the least
        clock.advance(first.retry_after - 0.001)
        assert not backend.decide("k", [limit], 1)[0].allowed
        clock.advance(0.001)
        assert backend.decide("k", [limit], 1)[0].allowed


@pytest.mark.parametrize("algorithm", CHARGED)
def test_a_give_back_frees_what_was_not_used(script_client: Any, algorithm: str) -> None:
    """Reserve 8 of 10, use 3: the 5 come back (same window), on both backends."""
    mode = "police" if algorithm == "leaky_bucket" else None
    limit = Limit("10/minute", algorithm, mode=mode, name="tokens")
    for make in (_memory, lambda clock: _backend(script_client, clock)):
        clock = FakeClock(60.0)
        backend: Any = make(clock)  # type: ignore[no-untyped-call]
        assert backend.decide("k", [limit], 8)[0].remaining == 2
        assert not backend.decide("k", [limit], 5)[0].allowed
        backend.charge("k", [limit], -5, 0)
        assert backend.decide("k", [limit], 7)[0].allowed


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_a_give_back_never_lands_in_a_later_window(script_client: Any, algorithm: str) -> None:
    """A request decided in one window gives back nothing once that window has ended: the
    new window's count is not lowered by it."""
    limit = Limit("10/minute", algorithm, name="tokens")
    for make in (_memory, lambda clock: _backend(script_client, clock)):
        clock = FakeClock(60.0)
        backend: Any = make(clock)  # type: ignore[no-untyped-call]
        assert backend.decide("k", [limit], 5)[0].allowed
        clock.advance(60.0)
        before = backend.decide("k", [limit], 0, False)[0].remaining
        backend.charge("k", [limit], -5, 60_000)
        assert backend.decide("k", [limit], 0, False)[0].remaining == before


@pytest.mark.parametrize(
    "limit",
    [
        Limit("10/minute", "sliding_log", name="log"),
        Limit("10/minute", "token_bucket", share=4, name="shared"),
    ],
)
def test_a_limit_without_a_debt_form_takes_no_charge(script_client: Any, limit: Limit) -> None:
    """The sliding log and a limit with a share have no form for a debt: charging them on
    Redis is a ConfigError (the config refuses such rules at load; this guards the API)."""
    backend = _backend(script_client, FakeClock())
    with pytest.raises(ConfigError, match="takes no charge"):
        backend.charge("k", [limit], 3, 0)


def test_the_sliding_log_takes_no_charge_in_memory() -> None:
    """The memory backend refuses to charge a sliding log too."""
    with pytest.raises(TypeError, match="cannot carry a debt"):
        MemoryBackend().charge("k", [Limit("10/minute", "sliding_log", name="log")], 3, 0)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "asyncio"])
def test_redis_stopped_before_the_settle_drops_the_charges_with_one_warning(
    asynchronous: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests admitted on a live Redis, which then stops before their responses end: every
    settle returns (no exception: the failure is the backend's, bounded by its timeout and
    breaker) and one WARNING says the charges were dropped — not one per request."""
    monkeypatch.setattr(charges_module, "_last_failure", -1e9)
    rule = {
        "name": "tokens",
        "path": "/v1/**",
        "limit": "20000/minute",
        "algorithm": "token_bucket",
        "cost": 100,
        "charge": "response-header:x-tokens",
    }
    with redis_server() as server:
        backend = RedisBackend.from_url(server.url, timeout=0.2)
        engine = Engine({"rules": [rule]}, backend=backend)
        outcomes = [run(engine, Request("POST", "/v1/chat")) for _ in range(20)]
        assert all(o.pending is not None for o in outcomes)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="ratelimit"):
            for outcome in outcomes:
                assert outcome.pending is not None
                if asynchronous:
                    asyncio.run(engine.asettle(outcome.pending, 200, [(b"x-tokens", b"900")]))
                else:
                    engine.settle(outcome.pending, 200, [(b"x-tokens", b"900")])
        server.start()
        backend.close()
    dropped = [r for r in caplog.records if "charge was dropped" in r.getMessage()]
    assert len(dropped) == 1

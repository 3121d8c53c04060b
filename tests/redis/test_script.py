"""The Lua script: parity with the memory backend, key layout, TTLs, atomicity, NOSCRIPT.

These run against a real redis-server when the binary is there, else against fakeredis with
Lua (so they never skip).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratelimit import BackendError, ConfigError, Limit, Limiter, MemoryBackend, RedisBackend
from ratelimit.algorithms import ALGORITHMS
from ratelimit.backends.redis_script import SCRIPT, key_tag, read_lua
from tests.conftest import FakeClock
from tests.core.scenarios import SCENARIOS
from tests.core.strategies import limits as any_limit

#: Fake time does not follow real time, and Redis expires keys in real time: pad the TTLs
#: (the state carries its own times, so this never changes a decision).
PAD = 10 * 24 * 3600 * 1000
_prefixes = itertools.count()


def _backend(client: Any, clock: FakeClock) -> RedisBackend:
    return RedisBackend(client, clock=clock, prefix=f"t{next(_prefixes)}:", ttl_pad_ms=PAD)


def _fields(decisions: list[Any]) -> list[tuple[Any, ...]]:
    return [tuple(d[:6]) for d in decisions]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Limit], list[tuple[int, str, int, bool]]]:
    """1 to 3 limits (distinct names) and a timeline of (ms, key, cost, consume) steps.

    Either two keys on a clock that never goes back, or one key on a clock that now and then
    goes back. (With two keys and a clock going back, the memory backend may already have
    dropped a state that had expired at a later time, as Redis would by TTL: not comparable.)
    """
    count = draw(st.integers(1, 3))
    limits = [dataclasses.replace(draw(any_limit()), name=f"limit{i}") for i in range(count)]
    longest = max(limit.rate.period_ms for limit in limits)
    goes_back = draw(st.booleans())
    keys = ["a"] if goes_back else ["a", "b"]
    lowest_gap = -longest // 4 if goes_back else 0
    now = draw(st.integers(0, 5 * longest))
    steps = []
    for gap, key, cost, consume in draw(
        st.lists(
            st.tuples(
                st.integers(lowest_gap, 2 * longest) | st.just(0),
                st.sampled_from(keys),
                st.integers(1, 4) | st.just(1),
                st.booleans() | st.just(True),
            ),
            min_size=1,
            max_size=50,
        )
    ):
        now = max(0, now + gap)
        if cost == 4 and not consume:
            cost = 0  # a cost-0 probe, as Limiter.peek sends: dry runs only
        steps.append((now, key, cost, consume))
    return limits, steps


@settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenarios())
def test_redis_decisions_equal_memory_decisions(
    script_client: Any, case: tuple[list[Limit], list[tuple[int, str, int, bool]]]
) -> None:
    """Driven by the same random timeline, Redis and memory give identical decisions."""
    limits, steps = case
    clock = FakeClock()
    memory = MemoryBackend(clock=clock)
    redis_backend = _backend(script_client, clock)
    for i, (ms, key, cost, consume) in enumerate(steps):
        clock.set_ms(ms)
        want = memory.decide(key, limits, cost, consume)
        got = redis_backend.decide(key, limits, cost, consume)
        assert _fields(got) == _fields(want), f"step {i} at {ms} ms, key {key}, cost {cost}"
        assert [d.policy for d in got] == limits


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_redis_follows_scenario_table(script_client: Any, name: str) -> None:
    """Redis reproduces every row of the hand-written scenario tables."""
    limit, steps = SCENARIOS[name]
    clock = FakeClock()
    limiter = Limiter(_backend(script_client, clock))
    for row, step in enumerate(steps):
        clock.set_ms(step.t)
        decision = limiter.hit("client", limit, cost=step.cost)
        got = (decision.allowed, decision.remaining, decision.retry_after, decision.delay)
        assert got == (step.allowed, step.remaining, step.retry, step.delay), f"row {row}"
        if step.reset is not None:
            assert decision.reset_after == step.reset, f"{name} row {row}: reset_after"
        assert decision.policy is limit


def test_script_holds_every_algorithm_file() -> None:
    """The shipped script is the dispatcher with each rate algorithm's .lua file inserted as
    a branch (its ``-- @include`` lines replaced by the files they name), twice (the
    one-limit path and the loop over several limits), and no shim."""
    for name in ALGORITHMS:
        body = read_lua(f"{name}.lua")
        assert not re.search(r"^\s*-- @include ", body, re.MULTILINE), name
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        script = [line.strip() for line in SCRIPT.splitlines()]
        starts = [i for i, line in enumerate(script) if line == lines[0]]
        assert len(starts) == 2, name
        for start in starts:
            assert [x for x in script[start:] if x][: len(lines)] == lines, name
    assert "-- @algorithms\n" not in SCRIPT
    assert "struct or" not in SCRIPT  # Redis ships struct; the fakeredis stand-in is tests-only


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_cost_above_capacity_is_never_admitted(script_client: Any, algorithm: str) -> None:
    """A cost larger than the capacity is rejected with retry_after = inf, consuming nothing."""
    clock = FakeClock()
    backend = _backend(script_client, clock)
    limit = Limit("3/second", algorithm=algorithm)
    [decision] = backend.decide("k", [limit], 4)
    assert not decision.allowed
    assert decision.retry_after == float("inf")
    assert decision.remaining == 3
    assert script_client.exists(backend.key_for("k", limit)) == 0


def test_rejection_by_one_limit_consumes_nothing(script_client: Any) -> None:
    """When one limit rejects, the other limits of the decision keep their state."""
    clock = FakeClock()
    backend = _backend(script_client, clock)
    wide = Limit("10/second", algorithm="token_bucket", name="wide")
    narrow = Limit("1/minute", name="narrow")
    assert all(d.allowed for d in backend.decide("k", [wide, narrow], 1))
    before = script_client.get(backend.key_for("k", wide))
    decisions = backend.decide("k", [wide, narrow], 1)
    assert [d.allowed for d in decisions] == [True, False]
    assert script_client.get(backend.key_for("k", wide)) == before
    assert backend.decide("k", [wide], 1)[0].remaining == 8


def test_dry_run_writes_nothing(script_client: Any) -> None:
    """consume=False (Limiter.peek) reports the decision but stores no state."""
    clock = FakeClock()
    backend = _backend(script_client, clock)
    limit = Limit("2/second", algorithm="sliding_log")
    [decision] = backend.decide("k", [limit], 1, consume=False)
    assert decision.allowed and decision.remaining == 1
    assert script_client.exists(backend.key_for("k", limit)) == 0
    limiter = Limiter(backend)
    limiter.hit("k", limit)
    assert limiter.peek("k", limit).remaining == 1


def test_limiter_hit_peek_reset(script_client: Any) -> None:
    """Limiter.hit counts, peek looks, reset forgets: through the Redis backend."""
    clock = FakeClock()
    limiter = Limiter(_backend(script_client, clock))
    assert [limiter.hit("ip", "2/minute").allowed for _ in range(3)] == [True, True, False]
    assert limiter.peek("ip", "2/minute").remaining == 0
    limiter.reset("ip", "2/minute")
    assert limiter.peek("ip", "2/minute").remaining == 2


@pytest.mark.parametrize(
    ("algorithm", "expected_ms"),
    [
        ("fixed_window", 600),  # to the window's end
        ("sliding_window", 1600),  # the count weighs on the next window too
        ("sliding_log", 1000),  # the last entry leaves the log
        ("token_bucket", 500),  # one token back at 2/s
        ("leaky_bucket", 500),  # one unit drained at 2/s
    ],
)
def test_ttl_is_the_time_until_fresh(script_client: Any, algorithm: str, expected_ms: int) -> None:
    """Every write sets a TTL equal to the time until the state is a fresh key's again."""
    clock = FakeClock()
    clock.set_ms(1_000_400)
    backend = RedisBackend(script_client, clock=clock)
    limit = Limit("2/second", algorithm=algorithm)
    backend.decide("k", [limit], 1)
    ttl = script_client.pttl(backend.key_for("k", limit))
    # PTTL counts down in real time from the moment of the write: allow what a slow CI needs.
    assert expected_ms - 5000 < ttl <= expected_ms


def test_key_layout_and_hostile_client_keys(script_client: Any) -> None:
    """Keys are prefix{hash}limit; braces, binary and long client keys get distinct counters."""
    clock = FakeClock()
    backend = RedisBackend(script_client, clock=clock, prefix="app:")
    limit = Limit("1/minute")
    hostile = ["{a}", "}{", "{", "a}b{c", "\x00\xff\n", "\udcff", "x" * 5000, "", "{}"]
    keys = [backend.key_for(k, limit) for k in hostile]
    assert len(set(keys)) == len(hostile)
    for key in keys:
        assert key.startswith(b"app:{")
        tag = key[4 : key.index(b"}") + 1]
        assert len(tag) == 18 and tag.count(b"{") == 1 and tag.count(b"}") == 1
        assert len(key) <= 28  # the 32-byte allocation class (see docs/backends.md)
    for k in hostile:
        assert backend.decide(k, [limit], 1)[0].allowed
    for k in hostile:
        assert not backend.decide(k, [limit], 1)[0].allowed
    assert backend.decide(b"\x00{raw}", [limit], 1)[0].allowed


def test_all_keys_of_a_client_share_one_tag(script_client: Any) -> None:
    """Every limit of one client key uses the same {tag}, so a decision stays in one slot."""
    backend = RedisBackend(script_client)
    tag = key_tag("203.0.113.7")
    limits = [Limit("1/second"), Limit("5/minute", algorithm="token_bucket"), Limit("9/hour")]
    for limit in limits:
        assert tag in backend.key_for("203.0.113.7", limit)


@pytest.mark.parametrize(
    "limit",
    [
        Limit("100/minute"),
        Limit("1000/second", algorithm="sliding_window"),
        Limit("10/second", algorithm="token_bucket", burst=20),
        Limit("1000/hour", algorithm="leaky_bucket"),
    ],
)
def test_state_is_compact(script_client: Any, limit: Limit) -> None:
    """Window states are one decimal integer; bucket states one string of at most 12 bytes."""
    backend = RedisBackend(script_client)
    backend.decide("k", [limit], 1)
    value = script_client.get(backend.key_for("k", limit))
    if limit.algorithm.endswith("window"):
        assert value.isdigit() and int(value) < 2**63 and not value.startswith(b"0")
    else:
        assert len(value) <= 12


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_window_state_written_as_text_is_still_counted(script_client: Any, algorithm: str) -> None:
    """A same-window write is an INCRBY; a state Redis holds as text (which INCRBY refuses,
    here the same number in exponent form) is read and replaced with SET ... KEEPTTL."""
    clock = FakeClock()
    clock.set_ms(2_000_000)
    backend = _backend(script_client, clock)
    limit = Limit("5/second", algorithm=algorithm)
    key = backend.key_for("k", limit)
    assert backend.decide("k", [limit], 1)[0].remaining == 4
    assert backend.decide("k", [limit], 1)[0].remaining == 3  # INCRBY
    value = int(script_client.get(key))
    script_client.set(key, f"{value:.15e}", keepttl=True)
    assert backend.decide("k", [limit], 1)[0].remaining == 2  # SET ... KEEPTTL
    assert int(script_client.get(key)) == value + 1
    assert script_client.pttl(key) > 0


def test_server_clock_is_used_without_a_clock(script_client: Any) -> None:
    """With no clock given, the script stamps states with the Redis server's TIME."""
    backend = RedisBackend(script_client)
    limit = Limit("5/second", algorithm="token_bucket")
    backend.decide("k", [limit], 1)
    last_ms, _ = struct.unpack(">6s2s", script_client.get(backend.key_for("k", limit)))
    seconds, micros = script_client.time()
    server_ms = seconds * 1000 + micros // 1000
    assert abs(int.from_bytes(last_ms, "big") - server_ms) < 60_000


def test_noscript_is_handled_transparently(script_client: Any) -> None:
    """After SCRIPT FLUSH the next decision reloads the script and succeeds."""
    clock = FakeClock()
    backend = _backend(script_client, clock)
    limit = Limit("3/second")
    assert backend.decide("k", [limit], 1)[0].remaining == 2
    script_client.script_flush()
    assert backend.decide("k", [limit], 1)[0].remaining == 1
    assert backend.decide("k", [limit], 1)[0].remaining == 0


def test_bad_settings_are_config_errors(script_client: Any) -> None:
    """Bad prefixes, timeouts, URLs and pads fail at start-up with ConfigError."""
    with pytest.raises(ConfigError, match="prefix"):
        RedisBackend(script_client, prefix="{app}")
    with pytest.raises(ConfigError, match="ttl_pad_ms"):
        RedisBackend(script_client, ttl_pad_ms=-1)
    with pytest.raises(ConfigError, match="timeout"):
        RedisBackend.from_url("redis://localhost", timeout=0)
    with pytest.raises(ConfigError, match="host:port"):
        RedisBackend.from_url("redis+cluster://localhost")
    with pytest.raises(ConfigError, match="service"):
        RedisBackend.from_url("redis+sentinel://localhost:26379")
    with pytest.raises(ConfigError):
        RedisBackend()


def test_negative_clock_is_a_backend_error(script_client: Any) -> None:
    """A clock before the epoch cannot be stored and is reported, not silently wrapped."""
    backend = RedisBackend(script_client, clock=lambda: -1.0)
    with pytest.raises(BackendError, match="clock"):
        backend.decide("k", [Limit("1/second")], 1)


@st.composite
def big_cases(draw: st.DrawFn) -> tuple[Limit, list[tuple[int, int]]]:
    """A limit with a large rate (up to 2**53 scaled) and large costs, on a forward clock."""
    algorithm = draw(st.sampled_from(ALGORITHMS[:2] + ALGORITHMS[3:]))  # the log is O(L)
    period_ms = draw(st.sampled_from([1, 1000, 3_600_000]))
    limit = draw(st.integers(1, 2**53 // period_ms // 2))
    burst = None
    if algorithm in ("token_bucket", "leaky_bucket"):
        burst = draw(st.none() | st.integers(1, 2**53 // period_ms))
    rate_limit = Limit(f"{limit}/{period_ms / 1000}s", algorithm=algorithm, burst=burst)
    now = draw(st.integers(0, 2**40))
    steps = []
    for gap, cost in draw(
        st.lists(st.tuples(st.integers(0, 3 * period_ms), st.integers(1, 2 * limit)), max_size=20)
    ):
        now += gap
        steps.append((now, cost))
    return rate_limit, steps


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=big_cases())
def test_large_rates_and_costs_stay_exact(
    script_client: Any, case: tuple[Limit, list[tuple[int, int]]]
) -> None:
    """Near the 2**53 bound of Lua's doubles, Redis still decides exactly like memory."""
    limit, steps = case
    clock = FakeClock()
    memory = MemoryBackend(clock=clock)
    redis_backend = _backend(script_client, clock)
    for i, (ms, cost) in enumerate(steps):
        clock.set_ms(ms)
        want = memory.decide("k", [limit], cost)
        got = redis_backend.decide("k", [limit], cost)
        assert _fields(got) == _fields(want), f"step {i} at {ms} ms, cost {cost}"


def test_max_delay_reaches_the_script() -> None:
    """A leaky bucket's max_delay is passed to the script as the largest level to queue on."""
    from ratelimit.backends.redis_script import LimitSpec

    shaped = LimitSpec(Limit("2/second", algorithm="leaky_bucket", max_delay=0.5))
    free = LimitSpec(Limit("2/second", algorithm="leaky_bucket"))
    assert shaped.args[5] == b"1000"  # 500 ms × 2 per 1000 ms, in level units scaled by P
    assert free.args[5] == b"-1"


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_decide_each_matches_memory_across_keys_and_costs(
    script_client: Any, data: st.DataObject
) -> None:
    """decide_each (several clients' keys, one cost each, one atomic script run) gives the
    memory backend's decisions and, like it, consumes nothing unless every item admits."""
    count = data.draw(st.integers(2, 3))
    limits = [dataclasses.replace(data.draw(any_limit()), name=f"each{i}") for i in range(count)]
    clock = FakeClock()
    memory = MemoryBackend(clock=clock)
    redis_backend = _backend(script_client, clock)
    assert redis_backend.atomic_across_keys
    now = data.draw(st.integers(0, 10**6))
    for _ in range(data.draw(st.integers(1, 25))):
        now += data.draw(st.integers(0, 2 * max(limit.rate.period_ms for limit in limits)))
        clock.set_ms(now)
        items = [
            (data.draw(st.sampled_from(["a", "b", "c"])), limit, data.draw(st.integers(1, 3)))
            for limit in limits
        ]
        consume = data.draw(st.booleans())
        want = memory.decide_each(items, consume)
        got = redis_backend.decide_each(items, consume)
        assert _fields(got) == _fields(want), f"at {now} ms: {items}"


def test_leaky_bucket_delay_agrees_past_two_to_the_53(script_client: Any) -> None:
    """A rate whose limit × 1000 passes 2^53 (found by Hypothesis): the shaping delay is the
    same double on both sides (computed as level / rate / 1000 in Python and Lua)."""
    clock = FakeClock()
    clock.set_ms(0)
    memory, redis_backend = MemoryBackend(clock=clock), _backend(script_client, clock)
    limit = Limit("94557999988739/0.001s", algorithm="leaky_bucket")
    for _ in range(2):
        want = memory.decide("k", [limit], 1)
        assert _fields(redis_backend.decide("k", [limit], 1)) == _fields(want)

"""Shares simulated: N workers on a fake clock against the pure mirror of ``share.lua``.

Each simulated worker is a real :class:`ShareBook`; "Redis" is a dict of states run through
:func:`ratelimit.backends.shares.grant`. Hypothesis draws arrivals, costs and crashes; the
SPEC §2 upper bounds are checked on what the workers admitted (exact integers), and the
under-admission on what Redis granted and nobody spent.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit import ConfigError, Limit
from ratelimit.backends.shares import CODES, ShareBook, State, give_back, grant, hold_ms
from ratelimit.decision import Decision

ALGOS = ["fixed_window", "sliding_window", "token_bucket", "leaky_bucket"]


def _limit(algorithm: str, rate: str, share: int, burst: int | None = None) -> Limit:
    mode = "police" if algorithm == "leaky_bucket" else None
    return Limit(rate, algorithm=algorithm, share=share, burst=burst, mode=mode, name="s")


class FakeRedis:
    """``share.lua`` in Python: the mirror functions over a dict, with a grant log."""

    def __init__(self) -> None:
        self.states: dict[bytes, State] = {}
        self.log: list[tuple[int, int, int]] = []  # (now, tag, units granted)
        self.gen = 0

    def run(self, keys: list[bytes], args: list[bytes], now: int) -> list[bytes]:
        mode = args[1]
        rows: list[tuple[Any, ...]] = []
        for i, key in enumerate(keys):
            v = [int(a) for a in args[3 + 7 * i : 10 + 7 * i]]
            self.gen += 1
            g = grant(*v[:5], self.states.get(key), now, v[5], v[6], self.gen)
            rows.append((key, g))
        ok = all(g.allowed for _, g in rows)
        if mode == b"g" and ok:
            for key, g in rows:
                assert g.state is not None
                self.states[key] = g.state
                self.log.append((now, g.tag, g.granted))
        out = []
        for _, g in rows:
            gen, seq = (g.state[0], g.state[1]) if g.state else (0, 0)
            life = g.end - now
            vals = (int(g.allowed), g.remaining, g.reset, g.retry, g.granted, life, g.tag, gen, seq)
            out.append(" ".join(str(x) for x in vals).encode())
        return out


def _decide(book: ShareBook, redis: FakeRedis, limit: Limit, cost: int, now: int) -> Decision:
    flow = book.flow([("client", limit, cost)], True, now / 1000, now)
    reply: Any = None
    try:
        while True:
            name, args = flow.send(reply)
            assert name == "share"
            reply = redis.run(*args, now)
    except StopIteration as stop:
        decisions: list[Decision] = stop.value
        return decisions[0]


def _book() -> ShareBook:
    return ShareBook(lambda key, limit: key.encode() + b":" + limit.id.encode())


def _check_bounds(limit: Limit, admitted: list[tuple[int, int]]) -> None:
    """SPEC §2 upper bounds on ``(time ms, cost)`` admissions, exact integers."""
    lim, period, cap = limit.rate.limit, limit.rate.period_ms, limit.capacity
    if limit.algorithm == "fixed_window":
        per: dict[int, int] = {}
        for t, c in admitted:
            per[t // period] = per.get(t // period, 0) + c
        assert all(n <= lim for n in per.values()), per
        return
    if limit.algorithm == "sliding_window":
        counts: dict[int, int] = {}
        for t, c in admitted:  # the weighted counter's invariant at every admission
            window, elapsed = divmod(t, period)
            counts[window] = counts.get(window, 0) + c
            prev = counts.get(window - 1, 0)
            assert prev * (period - elapsed) + counts[window] * period <= lim * period
    for i, (a, _) in enumerate(admitted):  # any span Δ: at most capacity + ⌊Δ·r⌋
        total = 0
        for b, c in admitted[i:]:
            total += c
            assert total <= cap + (b - a) * lim // period, (a, b, total)


@settings(max_examples=60, deadline=None)
@given(
    algorithm=st.sampled_from(ALGOS),
    limit_n=st.integers(1, 60),
    period_s=st.sampled_from([1, 2, 10]),
    share=st.integers(1, 16),
    workers=st.integers(1, 6),
    events=st.lists(
        st.tuples(st.integers(0, 400), st.integers(0, 5), st.integers(1, 3), st.booleans()),
        min_size=1,
        max_size=150,
    ),
)
def test_workers_never_admit_more_than_the_limit(
    algorithm: str,
    limit_n: int,
    period_s: int,
    share: int,
    workers: int,
    events: list[tuple[int, int, int, bool]],
) -> None:
    """N workers with shares and random arrivals and crashes never exceed the §2 bounds, and
    no worker holds more than share − 1 units after a decision."""
    limit = _limit(algorithm, f"{limit_n}/{period_s}s", share)
    redis = FakeRedis()
    books = [_book() for _ in range(workers)]
    now = 10_000_000
    admitted: list[tuple[int, int]] = []
    for dt, who, cost, crash in events:
        now += dt
        w = who % workers
        if crash and dt % 7 == 0:  # the worker dies: what it held is lost, never spent
            books[w] = _book()
            continue
        decision = _decide(books[w], redis, limit, 1 if cost > limit_n else cost, now)
        assert 0 <= decision.remaining <= limit.capacity
        if decision.allowed:
            admitted.append((now, 1 if cost > limit_n else cost))
        assert books[w].held() <= max(0, share - 1)
    _check_bounds(limit, admitted)


@settings(max_examples=40, deadline=None)
@given(
    algorithm=st.sampled_from(ALGOS),
    share=st.integers(2, 16),
    workers=st.integers(1, 8),
    order=st.lists(st.integers(0, 7), min_size=300, max_size=300),
)
def test_under_admission_is_at_most_workers_times_share(
    algorithm: str, share: int, workers: int, order: list[int]
) -> None:
    """A flood at one instant from W workers admits at least capacity − W × (share − 1)."""
    limit = _limit(algorithm, "200/hour", share)
    redis = FakeRedis()
    books = [_book() for _ in range(workers)]
    admitted = 0
    for who in order:
        admitted += _decide(books[who % workers], redis, limit, 1, 5_000_000).allowed
    assert admitted <= 200
    assert admitted >= 200 - workers * (share - 1)
    assert sum(b.held() for b in books) == 200 - admitted


@settings(max_examples=60, deadline=None)
@given(
    algorithm=st.sampled_from(ALGOS),
    steps=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 4)), min_size=1, max_size=60),
)
def test_share_one_decides_like_the_algorithm(algorithm: str, steps: list[tuple[int, int]]) -> None:
    """With share = 1 every decision equals the plain algorithm's (SPEC differential)."""
    limit = _limit(
        algorithm,
        "7/10s",
        1,
        burst=5 if algorithm != "fixed_window" and algorithm != "sliding_window" else None,
    )
    plain = Limit(limit.rate, algorithm, burst=limit.burst, mode=limit.mode, name="s")
    impl = plain.impl
    state: Any = None
    redis, book = FakeRedis(), _book()
    now = 1_000_000
    for dt, cost in steps:
        now += dt
        new, want = impl.step(state, now, cost)
        if new is not None:
            state = new
        got = _decide(book, redis, limit, cost, now)
        assert got._replace(policy=plain) == want


def test_a_bucket_share_is_capped_by_what_it_hides() -> None:
    """A bucket emptied by a share does not refill past capacity − held while it is held."""
    limit = _limit("token_bucket", "10/second", 16, burst=100)
    hold = hold_ms(limit)
    g = grant(4, 10, 1000, 100, hold, None, 0, 1, 16, 1)
    assert g.granted == 13  # 1 + min(15, 99 // 8)
    assert g.state is not None
    later = grant(4, 10, 1000, 100, hold, g.state, hold - 1, 100, 100, 1)
    # refilled nearly full, but capped at capacity − the 12 units granted ahead of their cost
    assert not later.allowed and later.remaining == 100 - 12
    # the cap lifts when the epoch ends (1 ms), then the 12 tokens refill (1200 ms)
    assert later.retry == 1 + 1200


def test_give_back_goes_only_into_its_own_window_and_state() -> None:
    """Unused units go back into the window and generation they came from, never later."""
    g = grant(1, 10, 1000, 10, 0, None, 500, 1, 8, 42)
    assert g.state is not None and g.granted == 2  # the cost and (10 − 1) // 8 = 1 more
    g = grant(1, 100, 1000, 100, 0, None, 500, 1, 8, 42)
    assert g.state is not None and g.granted == 8
    back = give_back(1, 100, 1000, 100, 0, g.state, 900, 7, g.tag, 42, 1)
    assert back is not None and back[0][3] == 1
    assert give_back(1, 100, 1000, 100, 0, g.state, 1000, 7, g.tag, 42, 1) is None  # later
    assert give_back(1, 100, 1000, 100, 0, g.state, 900, 7, g.tag, 43, 1) is None  # flushed
    assert give_back(1, 100, 1000, 100, 0, g.state, 900, 7, g.tag, 42, 2) is None  # lost


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"algorithm": "sliding_log"}, "sliding_log"),
        ({"algorithm": "leaky_bucket"}, "shape"),
        ({"algorithm": "concurrency"}, "concurrency"),
    ],
)
def test_algorithms_that_cannot_share_refuse_it(options: dict[str, Any], words: str) -> None:
    """sliding_log, shaping leaky buckets and concurrency refuse share, saying why."""
    with pytest.raises(ConfigError, match=words):
        Limit("5/minute", share=4, **options)


def test_codes_cover_the_sharing_algorithms() -> None:
    """Every algorithm that takes a share has a code in share.lua."""
    assert set(CODES) == set(ALGOS)

"""Shares simulated: N workers on a fake clock against the pure mirror of ``share.lua``.

Each simulated worker is a real :class:`ShareBook`; "Redis" is a dict of states run through
:func:`ratelimit.backends.shares.grant`. Hypothesis draws arrivals, costs and crashes; the
SPEC §2 upper bounds are checked on what the workers admitted (exact integers), and the
under-admission on what Redis granted and nobody spent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit import BackendError, ConfigError, Limit
from ratelimit.backends.shares import (
    CODES,
    ShareBook,
    State,
    adecide,
    give_back,
    grant,
    hold_ms,
)
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


# -- coalescing, reservations, honest remaining (asyncio, simulated Redis) ------------------


class AsyncFakeRedis(FakeRedis):
    """:class:`FakeRedis` behind an awaitable call that takes ``turns`` loop turns, counting
    the calls (the round trips a real Redis would see)."""

    def __init__(self, turns: list[int] | None = None) -> None:
        super().__init__()
        self.calls = 0
        self.turns = turns or [1]
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def call(self, name: str, args: Any, now: int) -> Any:
        """One round trip: a few loop turns, then the script (or the configured failure)."""
        assert name == "share"
        self.calls += 1
        for _ in range(self.turns[self.calls % len(self.turns)]):
            await asyncio.sleep(0)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return self.run(*args, now)


def _raise(error: BackendError) -> BackendError:
    return error


async def _adecide(
    book: ShareBook,
    redis: AsyncFakeRedis,
    limit: Limit,
    now: int,
    cost: int = 1,
    bound: float = 5.0,
    report: Any = _raise,
) -> Decision:
    async def call(name: str, args: Any) -> Any:
        return await redis.call(name, args, now)

    def clock() -> tuple[float, int]:
        return now / 1000, now

    # as RedisBackend does: held units first, then the hand-off or a grant
    items = [("client", limit, cost)]
    missed = book.take(items, True, clock()[0], asyncio.get_running_loop(), bound)
    if isinstance(missed, list):
        return missed[0]
    decisions = await adecide(book, items, True, missed, clock(), call, clock, bound, report)
    return decisions[0]


async def test_concurrent_misses_share_one_grant() -> None:
    """64 requests missing at once on one worker make at most 1/8 as many Redis calls, and
    admit no more than Redis granted."""
    limit = _limit("fixed_window", "10000/hour", 16)
    redis, book = AsyncFakeRedis(), _book()
    got = await asyncio.gather(*(_adecide(book, redis, limit, 5_000_000) for _ in range(64)))
    assert all(d.allowed for d in got)
    granted = sum(units for _, _, units in redis.log)
    assert 64 + book.held() == granted
    assert redis.calls <= 64 // 8
    assert book.coalesced >= 64 - redis.calls


@settings(max_examples=40, deadline=None)
@given(
    algorithm=st.sampled_from(ALGOS),
    limit_n=st.integers(1, 80),
    share=st.integers(1, 16),
    workers=st.integers(1, 4),
    per_worker=st.integers(1, 60),
    turns=st.lists(st.integers(0, 4), min_size=1, max_size=8),
    costs=st.lists(st.integers(1, 3), min_size=1, max_size=8),
)
def test_concurrent_workers_never_admit_more_than_granted(
    algorithm: str,
    limit_n: int,
    share: int,
    workers: int,
    per_worker: int,
    turns: list[int],
    costs: list[int],
) -> None:
    """W workers, each with many concurrent requests that coalesce on its grants: admitted ≤
    granted ≤ limit, no worker ends holding more than share − 1, and nothing granted is
    lost (what is not admitted is held)."""
    limit = _limit(algorithm, f"{limit_n}/hour", share)
    redis = AsyncFakeRedis(turns)
    books = [_book() for _ in range(workers)]

    async def run() -> list[tuple[Decision, int]]:
        jobs = []
        for n in range(per_worker * workers):
            cost = min(limit_n, costs[n % len(costs)])
            jobs.append((n % workers, cost))

        async def one(w: int, cost: int) -> tuple[Decision, int]:
            return await _adecide(books[w], redis, limit, 7_000_000, cost), cost

        return await asyncio.gather(*(one(w, c) for w, c in jobs))

    results = asyncio.run(run())
    admitted = sum(cost for d, cost in results if d.allowed)
    granted = sum(units for _, _, units in redis.log)
    held = sum(b.held() for b in books)
    assert admitted + held == granted <= limit.capacity
    assert all(b.held() <= share - 1 for b in books)
    assert all(0 <= d.remaining <= limit.capacity for d, _ in results)


async def test_a_failed_grant_fails_its_waiters_once() -> None:
    """When the grant in flight fails, every request waiting for it fails with its own
    BackendError (each reported), after one call to Redis."""
    limit = _limit("token_bucket", "100/second", 16)
    redis, book = AsyncFakeRedis([3]), _book()
    redis.fail = BackendError("Redis unavailable (timeout)", kind="timeout")
    reported: list[str] = []

    def report(error: BackendError) -> BackendError:
        reported.append(error.kind)
        return error

    got = await asyncio.gather(
        *(_adecide(book, redis, limit, 1_000, report=report) for _ in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(e, BackendError) for e in got)
    assert redis.calls == 1 and reported == ["timeout"] * 9
    assert book.held() == 0


async def test_a_wait_past_its_bound_asks_redis_itself() -> None:
    """A request whose wait for a grant reaches its bound asks Redis itself; both grants
    together keep the worker below its share."""
    limit = _limit("fixed_window", "1000/hour", 8)
    redis, book = AsyncFakeRedis(), _book()
    redis.gate = asyncio.Event()
    first = asyncio.ensure_future(_adecide(book, redis, limit, 9_000_000))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(_adecide(book, redis, limit, 9_000_000, bound=0.0))
    for _ in range(5):
        await asyncio.sleep(0)
    assert redis.calls == 2
    redis.gate.set()
    assert (await first).allowed and (await second).allowed
    assert book.held() <= 7


async def test_waiters_refused_with_the_grant_ask_nothing() -> None:
    """A one-limit request refused by Redis refuses the requests of no smaller cost that
    waited for it, without calling Redis again."""
    limit = _limit("fixed_window", "3/hour", 4)
    redis, book = AsyncFakeRedis(), _book()
    for _ in range(3):
        assert (await _adecide(book, redis, limit, 3_000_000)).allowed
    calls = redis.calls
    got = await asyncio.gather(*(_adecide(book, redis, limit, 3_000_000) for _ in range(20)))
    assert not any(d.allowed for d in got)
    assert redis.calls == calls + 1
    assert all(d.retry_after > 0 for d in got)


def test_units_counted_on_by_a_refused_request_go_back() -> None:
    """Held units reserved by a request that another limit refuses are put back into the
    share (never lost, never admitted twice)."""
    shared = _limit("fixed_window", "1000/hour", 8)
    plain = Limit("1/hour", name="tight")
    redis, book = FakeRedis(), _book()
    for _ in range(4):
        _decide(book, redis, shared, 1, 1_000_000)
    held = book.held()
    assert held > 0
    items = [("client", shared, 1), ("client", plain, 1)]
    flow = book.flow(items, True, 1_000.0, 1_000_000)
    name, args = flow.send(None)
    assert name == "plain" and args[1] is True
    assert book.held() == held - 1  # reserved while the other limit is asked
    refused = Decision(False, 1, 0, 10.0, 10.0, 0.0, plain)
    with pytest.raises(StopIteration) as stop:
        flow.send([refused])
    assert [d.allowed for d in stop.value.value] == [True, False]
    assert book.held() == held


@settings(max_examples=40, deadline=None)
@given(
    algorithm=st.sampled_from(ALGOS),
    share=st.integers(1, 16),
    workers=st.integers(1, 5),
    events=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 4)), min_size=1, max_size=120),
)
def test_remaining_never_overstates_what_the_fleet_has_left(
    algorithm: str, share: int, workers: int, events: list[tuple[int, int]]
) -> None:
    """``remaining`` of every admission is at most what Redis has left plus what all the
    workers hold, right after the decision."""
    limit = _limit(algorithm, "40/10s", share)
    redis = FakeRedis()
    books = [_book() for _ in range(workers)]
    now = 2_000_000
    key = b"client:" + limit.id.encode()
    for dt, who in events:
        now += dt
        decision = _decide(books[who % workers], redis, limit, 1, now)
        probe = grant(
            CODES[limit.algorithm],
            40,
            10_000,
            limit.capacity,
            hold_ms(limit),
            redis.states.get(key),
            now,
            0,
            0,
            0,
        )
        fleet = probe.remaining + sum(b.held() for b in books)
        if decision.allowed:
            assert decision.remaining <= fleet


def test_a_cached_rejection_never_hides_held_units() -> None:
    """The rejection cache does not answer a request the worker's held units cover."""
    from ratelimit.http.rejections import RejectionCache

    limit = _limit("fixed_window", "10/minute", 4)
    held = {"k": 0}
    cache = RejectionCache(clock=lambda: 100.0, holds=lambda key, lim: held[key])
    cache.remember("k", Decision(False, 10, 0, 30.0, 30.0, 0.0, limit), 1)
    assert cache.lookup([("k", [limit], 1)]) is not None
    held["k"] = 2
    assert cache.lookup([("k", [limit], 1)]) is None
    assert len(cache) == 0


def test_threads_that_miss_together_wait_for_one_grant() -> None:
    """On threads, requests that miss while a grant is in flight wait on its event instead
    of calling Redis: 8 threads make at most 4 calls (targets 1, 2, 4, 8), all admitted."""
    import threading

    from ratelimit.backends.shares import drive

    limit = _limit("fixed_window", "10000/hour", 16)
    redis, book = FakeRedis(), _book()
    gate = threading.Event()
    calls: list[int] = []
    lock = threading.Lock()

    def call(name: str, args: Any) -> Any:
        with lock:
            calls.append(1)
        gate.wait(10)
        with lock:
            return redis.run(*args, 4_000_000)

    def one(out: list[Decision]) -> None:
        flow = book.flow([("client", limit, 1)], True, 4_000.0, 4_000_000)
        out.extend(drive(flow, call, lambda: (4_000.0, 4_000_000), 10.0, _raise))

    out: list[Decision] = []
    threads = [threading.Thread(target=one, args=(out,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for _ in range(1000):  # until the 7 others wait on the first one's grant
        if book.coalesced >= 7:
            break
        threading.Event().wait(0.01)
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(out) == 8 and all(d.allowed for d in out)
    assert len(calls) <= 4
    assert book.held() <= 15

"""In-process backend: a dict per limit, one lock, lazy expiry, bounded by ``max_keys``.

State lives in this process only: with several worker processes each has its own budget
(use :class:`~ratelimit.RedisBackend` to share limits across processes or hosts).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ratelimit.algorithms import Algorithm
from ratelimit.algorithms.concurrency import Concurrency
from ratelimit.algorithms.registry import algorithm_of
from ratelimit.decision import Decision, combine
from ratelimit.errors import ConfigError
from ratelimit.limits import Limit, as_limits, check_cost, tiered_key

__all__ = ["MemoryBackend"]


def _concurrency(limit: Limit) -> Concurrency:
    impl = algorithm_of(limit)
    if not isinstance(impl, Concurrency):
        raise ConfigError(f"{limit} is not a concurrency limit (algorithm = 'concurrency')")
    return impl


#: How many least-recently-used entries an insert looks at for expiry (bounded work per call).
_EXPIRE_PER_INSERT = 2


class _Table:
    """The states of one limit id: client key → state, least recently used first."""

    __slots__ = ("data", "impl")

    def __init__(self, impl: Algorithm) -> None:
        self.impl = impl
        self.data: dict[str, Any] = {}


def _impl(table: _Table, limit: Limit) -> Algorithm:
    """The table's algorithm for ``limit``: built again for another ``Limit`` object of the
    same id (decisions name the very limit asked about, and a limit that kept its name but
    changed — a config reload — is enforced at its new rate)."""
    impl = table.impl
    if impl.policy is not limit:
        impl = table.impl = algorithm_of(limit)
    return impl


class MemoryBackend:
    """Thread-safe and asyncio-safe in-memory state for the :class:`~ratelimit.Limiter`.

    Args:
        max_keys: the most (limit, key) counters kept. Past it, the least recently used
            counter of the largest limit table is evicted (an evicted key starts fresh).
        clock: seconds as a float, monotonic; injectable for tests.

    No background thread: expired counters are dropped lazily, as new keys arrive (each
    insert drops up to two expired least-recently-used entries of its table) or by
    :meth:`purge_expired`.
    """

    def __init__(
        self, max_keys: int = 1_000_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if isinstance(max_keys, bool) or not isinstance(max_keys, int) or max_keys < 1:
            raise ConfigError(f"max_keys must be a whole number of at least 1, got {max_keys!r}")
        self.max_keys = max_keys
        self._clock = clock
        # The default clock read as integer nanoseconds: cheaper than round(float * 1000).
        self._monotonic_ns = time.monotonic_ns if clock is time.monotonic else None
        self._tables: dict[str, _Table] = {}
        self._size = 0
        self._lock = threading.Lock()
        #: ``Limiter.hit`` for this backend, in one Python frame (see :meth:`_bind_hit`).
        self.limiter_hit: Callable[..., Decision] = self._bind_hit()

    def __len__(self) -> int:
        """The number of counters currently held."""
        return self._size

    @property
    def clock(self) -> Callable[[], float]:
        """The clock (seconds as a float); settable, for example to a
        :class:`ratelimit.testing.FakeClock` on a running application. A
        :class:`~ratelimit.Limiter` built over this backend before the change keeps the old
        clock: build it after, or pass ``clock=`` to the backend."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        with self._lock:
            self._clock = clock
            self._monotonic_ns = time.monotonic_ns if clock is time.monotonic else None
            self.limiter_hit = self._bind_hit()

    def clear(self) -> None:
        """Forget every counter: every client of every limit starts fresh."""
        with self._lock:
            self._tables.clear()
            self._size = 0

    def now_ms(self) -> int:
        """The backend clock in whole milliseconds."""
        if self._monotonic_ns is not None:
            return self._monotonic_ns() // 1_000_000
        return round(self._clock() * 1000)

    def _bind_hit(self) -> Callable[..., Decision]:
        """Build :attr:`limiter_hit`: ``Limiter.hit`` for this backend in one Python frame.

        A decision costs little more than a few Python calls, so the call layers show: a
        :class:`~ratelimit.Limiter` over this backend binds this function as its ``hit``
        in its place (about a third faster than Limiter.hit → decide → step). It takes the
        usual case, one ``Limit`` and a whole cost, inline; anything else goes the general way.
        """
        tables, lock, clock, monotonic_ns = (
            self._tables,
            self._lock,
            self._clock,
            self._monotonic_ns,
        )
        new_table, added, decide = self._table, self._added, self.decide

        def hit(key: str, *limits: Limit | str, cost: int = 1, tier: str | None = None) -> Decision:
            if tier is not None:
                key = tiered_key(key, tier)
            if len(limits) != 1 or type(limit := limits[0]) is not Limit or type(cost) is not int:
                check_cost(cost)
                return combine(decide(key, as_limits(limits), cost, True))
            if cost < 1:
                check_cost(cost)
            now = monotonic_ns() // 1_000_000 if monotonic_ns else round(clock() * 1000)
            lock.acquire()  # acquire/release: measurably cheaper than `with` here
            try:
                try:
                    table = tables[limit.id]
                except KeyError:
                    table = new_table(limit)
                data = table.data
                state = data.pop(key, None)  # popped and put back: most recently used last
                impl = table.impl
                if impl.policy is not limit:
                    impl = _impl(table, limit)
                new_state, decision = impl.step(state, now, cost)
                if new_state is not None:
                    data[key] = new_state
                    if state is None:
                        added(table, now)
                elif state is not None:
                    data[key] = state
                return decision
            finally:
                lock.release()

        return hit

    def decide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        """Decide for ``key`` under every limit at once (see :class:`Backend`)."""
        if consume and len(limits) == 1:
            return [self.limiter_hit(key, limits[0], cost=cost)]
        return self.decide_each([(key, limit, cost) for limit in limits], consume)

    def decide_each(
        self, items: Sequence[tuple[str, Limit, int]], consume: bool = True
    ) -> list[Decision]:
        """Decide several ``(key, limit, cost)`` items in one atomic step: when every item is
        admitted and ``consume`` is true, every item consumes; otherwise none does.

        The HTTP engine uses it when the rules matching a request identify the client in
        different ways (say by address and by API key) or cost different amounts.
        """
        now = self.now_ms()
        with self._lock:
            tables = [self._tables.get(limit.id) or self._table(limit) for _, limit, _ in items]
            states = [table.data.get(key) for table, (key, _, _) in zip(tables, items, strict=True)]
            steps = [
                _impl(table, limit).step(state, now, cost)
                for table, (_, limit, cost), state in zip(tables, items, states, strict=True)
            ]
            admitted = consume and all(decision.allowed for _, decision in steps)
            for table, (key, _, _), state, (new_state, _) in zip(
                tables, items, states, steps, strict=True
            ):
                data = table.data
                if admitted:
                    data.pop(key, None)  # written last: most recently used
                    data[key] = new_state
                    if state is None:
                        self._added(table, now)
                elif state is not None:
                    data[key] = data.pop(key)
            return [decision for _, decision in steps]

    async def adecide_each(
        self, items: Sequence[tuple[str, Limit, int]], consume: bool = True
    ) -> list[Decision]:
        """:meth:`decide_each` for asyncio code."""
        return self.decide_each(items, consume)

    async def adecide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        """:meth:`decide` for asyncio code (never blocks beyond the lock's microseconds)."""
        return self.decide(key, limits, cost, consume)

    def charge(self, key: str, limits: Sequence[Limit], delta: int, elapsed_ms: int) -> None:
        """Charge ``delta`` more units (``delta < 0``: give back) to ``key`` under every limit
        at once, even past the limit: a debt (see :class:`Backend`). ``elapsed_ms`` is the time
        since the request was decided (a give-back lands only in its window)."""
        now = self.now_ms()
        since = now - elapsed_ms
        with self._lock:
            for limit in limits:
                table = self._tables.get(limit.id) or self._table(limit)
                data = table.data
                state = data.pop(key, None)
                impl = _impl(table, limit)
                new_state = impl.charge(state, now, delta, since)
                if new_state is None:  # nothing changes
                    if state is not None:
                        data[key] = state
                elif impl.expires_at(new_state) <= now:  # as good as fresh: forgotten
                    if state is not None:
                        self._size -= 1
                else:
                    data[key] = new_state
                    if state is None:
                        self._added(table, now)

    async def acharge(self, key: str, limits: Sequence[Limit], delta: int, elapsed_ms: int) -> None:
        """:meth:`charge` for asyncio code."""
        self.charge(key, limits, delta, elapsed_ms)

    def acquire(self, key: str, limit: Limit, token: str) -> Decision:
        """Take a lease of the concurrency ``limit`` for ``key`` under ``token`` (unique per
        request); a rejected decision when every slot is held. See
        :mod:`ratelimit.algorithms.concurrency`."""
        impl = _concurrency(limit)
        now = self.now_ms()
        with self._lock:
            table = self._tables.get(limit.id) or self._table(limit)
            state = table.data.get(key)
            new_state, decision = impl.acquire(state, now, token)
            if new_state is not None:
                table.data.pop(key, None)
                table.data[key] = new_state
                if state is None:
                    self._added(table, now)
            return decision

    def release(self, key: str, limit: Limit, token: str) -> None:
        """Give back ``token``'s lease of ``limit`` for ``key`` (nothing if it expired)."""
        impl = _concurrency(limit)
        now = self.now_ms()
        with self._lock:
            table = self._tables.get(limit.id)
            if table is None or key not in table.data:
                return
            left = impl.release(table.data[key], now, token)
            if left is None:
                del table.data[key]
                self._size -= 1
            else:
                table.data[key] = left

    async def aacquire(self, key: str, limit: Limit, token: str) -> Decision:
        """:meth:`acquire` for asyncio code."""
        return self.acquire(key, limit, token)

    async def arelease(self, key: str, limit: Limit, token: str) -> None:
        """:meth:`release` for asyncio code."""
        self.release(key, limit, token)

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        """Forget ``key``'s counters under ``limits``: it starts fresh."""
        with self._lock:
            for limit in limits:
                table = self._tables.get(limit.id)
                if table is not None and table.data.pop(key, None) is not None:
                    self._size -= 1

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        """:meth:`reset` for asyncio code."""
        self.reset(key, limits)

    def get_state(self, key: str, limit: Limit) -> Any:
        """The raw stored state of ``key`` under ``limit`` (``None`` when fresh); for tools."""
        with self._lock:
            table = self._tables.get(limit.id)
            return None if table is None else table.data.get(key)

    def purge_expired(self) -> int:
        """Drop every counter whose state is back to fresh; returns how many were dropped."""
        now = self.now_ms()
        dropped = 0
        with self._lock:
            for table in self._tables.values():
                expires_at = table.impl.expires_at
                dead = [k for k, state in table.data.items() if expires_at(state) <= now]
                for k in dead:
                    del table.data[k]
                dropped += len(dead)
            self._size -= dropped
        return dropped

    def _table(self, limit: Limit) -> _Table:
        table = self._tables[limit.id] = _Table(algorithm_of(limit))
        return table

    def _added(self, table: _Table, now: int) -> None:
        """Account for a new counter in ``table``: expire a little, evict past ``max_keys``."""
        self._size += 1
        data = table.data
        expires_at = table.impl.expires_at
        for _ in range(_EXPIRE_PER_INSERT):
            oldest = next(iter(data))  # never empty: the new key is in it, and not expired
            if expires_at(data[oldest]) > now:
                break
            del data[oldest]
            self._size -= 1
        while self._size > self.max_keys:
            largest = max(self._tables.values(), key=lambda t: len(t.data))
            del largest.data[next(iter(largest.data))]
            self._size -= 1

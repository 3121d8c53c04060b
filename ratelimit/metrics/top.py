"""Top offenders: the client identities each rule rejected most over the last minutes.

In process, each rule keeps one :class:`SpaceSaving` sketch per minute (the last
:data:`MINUTES` of them): bounded memory whatever the number of clients — a sketch holds at
most ``capacity`` identities, and a flood of distinct ones (a botnet, random API keys)
evicts the smallest counts, never grows it. The counts are exact while a rule rejects at
most ``capacity`` distinct identities in a minute, and overestimate by at most the
evicted minimum otherwise (the space-saving guarantee: any identity with more than
``rejections / capacity`` rejections in a minute is in the list).

With a Redis backend, rejections also go to Redis so that every worker's are merged:
one sorted set per rule and minute (``<prefix>top:<rule>:<minute>``, member = identity,
score = rejections) with a TTL of :data:`MINUTES` minutes, trimmed to ``capacity`` members,
written only when a request is rejected. Writes are coalesced: at most one round trip is
in flight per process, and what is rejected meanwhile goes in the next one (a flood of
rejections costs Redis a pipeline now and then, not one command per 429). A failing Redis
loses those counts quietly (DEBUG log); it never fails a request.

So that "nobody was rejected" can be told apart from "nobody records rejections", every
recording worker also keeps a marker key alive, ``<prefix>top:recording`` (the Unix time of
its last report, with the sorted sets' TTL): set with every write, and at most once every
:data:`BEAT` seconds while requests arrive (a heartbeat in the same coalesced write path).
Workers with no ``[metrics]`` option record nothing and write no marker, so when the marker
is absent ``ratelimit top`` says that rejections are not being recorded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["BEAT", "MINUTES", "RedisTop", "SpaceSaving", "TopOffenders", "merge_top"]

logger = logging.getLogger("ratelimit.metrics")

#: How many minutes of rejections are kept (the status page's longest window).
MINUTES = 15
#: Identities kept per rule and minute.
CAPACITY = 100
#: Identities kept per rule and minute in Redis, and read back per minute.
REDIS_CAPACITY = 1000
#: Seconds between two heartbeats of a recording worker (the ``recording`` marker key).
BEAT = 60.0
#: The most (rule, identity) pairs waiting for the next Redis write (more are dropped).
_PENDING_MAX = 10_000

#: ``(rule_name, identity, rejections)``, most rejected first.
TopList = list[tuple[str, str, int]]


class SpaceSaving:
    """The space-saving heavy-hitters sketch (Metwally et al., 2005) with ``capacity`` slots.

    :meth:`add` counts an item; when the sketch is full, a new item takes the slot of the
    smallest count and inherits it (+1), so counts never underestimate and the error of an
    item is at most that inherited minimum. Not thread-safe (callers lock).
    """

    __slots__ = ("capacity", "counts")

    def __init__(self, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.counts: dict[str, int] = {}

    def add(self, item: str, count: int = 1) -> None:
        """Count ``item`` ``count`` more times."""
        counts = self.counts
        if item in counts:
            counts[item] += count
        elif len(counts) < self.capacity:
            counts[item] = count
        else:
            smallest = min(counts, key=counts.__getitem__)
            counts[item] = counts.pop(smallest) + count

    def top(self, n: int) -> list[tuple[str, int]]:
        """The ``n`` largest ``(item, count)`` pairs, largest first (ties by item)."""
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def merge_top(rows: Iterable[tuple[str, str, int]], rule: str | None, n: int) -> TopList:
    """Sum ``(rule, identity, count)`` rows and keep the ``n`` largest (of ``rule`` only, if
    given), most first; ties by rule, then identity."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for name, identity, count in rows:
        if rule is None or name == rule:
            totals[name, identity] += count
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [(name, identity, count) for (name, identity), count in ranked[:n]]


class TopOffenders:
    """Per rule, one :class:`SpaceSaving` sketch per minute over the last ``minutes``.

    ``clock`` gives seconds (wall time by default; injectable for tests). Thread-safe.
    """

    def __init__(
        self,
        *,
        minutes: int = MINUTES,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.minutes = minutes
        self.capacity = capacity
        self.clock = clock
        self._lock = threading.Lock()
        #: rule → {minute index → sketch}
        self._sketches: dict[str, dict[int, SpaceSaving]] = {}

    def add(self, rule: str, identity: str) -> None:
        """Count one rejection of ``identity`` by ``rule``."""
        minute = int(self.clock() // 60)
        with self._lock:
            by_minute = self._sketches.get(rule)
            if by_minute is None:
                by_minute = self._sketches[rule] = {}
            sketch = by_minute.get(minute)
            if sketch is None:
                for old in [m for m in by_minute if m <= minute - self.minutes]:
                    del by_minute[old]
                sketch = by_minute[minute] = SpaceSaving(self.capacity)
            sketch.add(identity)

    def top(self, rule: str | None = None, n: int = 10, minutes: int | None = None) -> TopList:
        """The ``n`` identities rejected most over the last ``minutes`` (default: all kept)."""
        span = self.minutes if minutes is None else min(minutes, self.minutes)
        first = int(self.clock() // 60) - span + 1
        with self._lock:
            rows = [
                (name, identity, count)
                for name, by_minute in self._sketches.items()
                for minute, sketch in by_minute.items()
                if minute >= first
                for identity, count in sketch.counts.items()
            ]
        return merge_top(rows, rule, n)


def _redis_kind(exc: BaseException) -> str | None:
    from ratelimit.backends.redis import error_kind

    return error_kind(exc)


class RedisTop:
    """Rejections of every worker, merged in Redis (see the module docstring).

    ``backend`` is a :class:`~ratelimit.backends.redis.RedisBackend`: its clients, key
    prefix and circuit breaker are used (no write is attempted while its circuit is open).
    ``clock`` (wall seconds) picks the minute; every worker's clock should roughly agree.
    """

    def __init__(
        self,
        backend: Any,
        *,
        minutes: int = MINUTES,
        capacity: int = REDIS_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.minutes = minutes
        self.capacity = capacity
        self.clock = clock
        self.prefix: str = getattr(backend, "prefix", "rl:") + "top:"
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], int] = {}
        self._flushing = False
        #: A heartbeat waits for the next write; when the next one is due (clock seconds).
        self._beat_due = False
        self._next_beat = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        #: Rejections dropped because Redis failed or too many were waiting (for tests).
        self.dropped = 0

    # -- keys ------------------------------------------------------------------------------

    def key(self, rule: str, minute: int) -> str:
        """The sorted set holding ``rule``'s rejections of ``minute`` (``epoch // 60``)."""
        return f"{self.prefix}{rule}:{minute}"

    @property
    def index_key(self) -> str:
        """The set of the rule names that have rejected recently."""
        return f"{self.prefix}rules"

    @property
    def marker_key(self) -> str:
        """The key a recording worker keeps alive: the Unix time of its last report."""
        return f"{self.prefix}recording"

    # -- writing ---------------------------------------------------------------------------

    def add(self, rule: str, identity: str) -> None:
        """Count one rejection; written to Redis now or with the write in flight.

        In a thread (WSGI, sync Django) the caller whose turn it is writes, blocking for at
        most the backend's timeout; in asyncio code the write runs as a task.
        """
        with self._lock:
            pending = self._pending
            slot = (rule, identity)
            if slot in pending:
                pending[slot] += 1
            elif len(pending) < _PENDING_MAX:
                pending[slot] = 1
            else:
                self.dropped += 1
            if self._flushing:
                return
            self._flushing = True
        self._start_flush()

    def beat(self) -> None:
        """Say "this worker records rejections" (the marker key), at most every :data:`BEAT`
        seconds: called for every request the recorder sees, it costs a clock read until a
        heartbeat is due, which then goes out with the next write (or as one of its own)."""
        now = self.clock()
        if now < self._next_beat:
            return
        self._next_beat = now + BEAT
        with self._lock:
            self._beat_due = True
            if self._flushing:
                return
            self._flushing = True
        self._start_flush()

    def _start_flush(self) -> None:
        """Write what waits: now in a thread, as a task in asyncio code."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush_sync()
            return
        task = loop.create_task(self._flush_async())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _take(self) -> dict[tuple[str, str], int] | None:
        """What to write next, or ``None`` (and the writer's turn ends) when nothing waits."""
        with self._lock:
            batch = self._pending
            if not batch and not self._beat_due:
                self._flushing = False
                return None
            self._pending = {}
            self._beat_due = False
            return batch

    def _skip(self, batch: dict[tuple[str, str], int]) -> bool:
        breaker = getattr(self.backend, "breaker", None)
        if breaker is not None and breaker.is_open:
            self.dropped += sum(batch.values())
            return True
        return False

    def _queue(self, pipe: Any, batch: dict[tuple[str, str], int]) -> None:
        minute = int(self.clock() // 60)
        ttl = (self.minutes + 1) * 60
        rules: set[str] = set()
        for (rule, identity), count in batch.items():
            key = self.key(rule, minute)
            pipe.zincrby(key, count, identity)
            rules.add(rule)
        for rule in rules:
            key = self.key(rule, minute)
            pipe.zremrangebyrank(key, 0, -(self.capacity + 1))
            pipe.expire(key, ttl)
        if rules:
            pipe.sadd(self.index_key, *sorted(rules))
            pipe.expire(self.index_key, ttl)
        pipe.set(self.marker_key, str(int(self.clock())), ex=ttl)

    def _failed(self, exc: BaseException, batch: dict[tuple[str, str], int]) -> None:
        """Drop ``batch`` after a Redis failure (or a backend with no client for this side:
        a ConfigError); anything else is a bug and propagates."""
        from ratelimit.errors import ConfigError

        if _redis_kind(exc) is None and not isinstance(exc, ConfigError):
            raise exc
        self.dropped += sum(batch.values())
        logger.debug("top offenders: Redis write failed, %d rejections lost: %s", len(batch), exc)

    def _flush_sync(self) -> None:
        while (batch := self._take()) is not None:
            if self._skip(batch):
                continue
            try:
                pipe = self.backend._sync_client().pipeline(transaction=False)
                self._queue(pipe, batch)
                pipe.execute()
            except Exception as exc:
                try:
                    self._failed(exc, batch)
                except BaseException:
                    with self._lock:
                        self._flushing = False
                    raise

    async def _flush_async(self) -> None:
        while (batch := self._take()) is not None:
            if self._skip(batch):
                continue
            try:
                pipe = self.backend._side().client.pipeline(transaction=False)
                self._queue(pipe, batch)
                async with asyncio.timeout(getattr(self.backend, "timeout", 0.1)):
                    await pipe.execute()
            except Exception as exc:
                try:
                    self._failed(exc, batch)
                except BaseException:
                    with self._lock:
                        self._flushing = False
                    raise

    async def drain(self) -> None:
        """Wait for the writes in flight in this event loop (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- reading ---------------------------------------------------------------------------

    def _minutes(self, minutes: int | None) -> range:
        span = self.minutes if minutes is None else min(minutes, self.minutes)
        now = int(self.clock() // 60)
        return range(now - span + 1, now + 1)

    @staticmethod
    def _text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def _rows(self, rules: list[str], minutes: range, replies: list[Any]) -> list[Any]:
        rows = []
        pairs = [(rule, m) for rule in rules for m in minutes]
        for (rule, _), reply in zip(pairs, replies, strict=True):
            for member, score in reply or ():
                rows.append((rule, self._text(member), int(score)))
        return rows

    def top(self, rule: str | None = None, n: int = 10, minutes: int | None = None) -> TopList:
        """The ``n`` identities rejected most over the last ``minutes``, across every worker
        writing to this Redis (raises :class:`~ratelimit.BackendError` if Redis fails)."""
        client = self.backend._sync_client()
        try:
            rules = (
                [rule]
                if rule is not None
                else sorted(map(self._text, client.smembers(self.index_key)))
            )
            span = self._minutes(minutes)
            pipe = client.pipeline(transaction=False)
            for name in rules:
                for minute in span:
                    pipe.zrevrange(self.key(name, minute), 0, self.capacity - 1, withscores=True)
            replies = pipe.execute() if rules else []
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from exc
        return merge_top(self._rows(rules, span, replies), rule, n)

    async def atop(
        self, rule: str | None = None, n: int = 10, minutes: int | None = None
    ) -> TopList:
        """:meth:`top` for asyncio code."""
        client = self.backend._side().client
        try:
            async with asyncio.timeout(max(1.0, getattr(self.backend, "timeout", 0.1))):
                if rule is not None:
                    rules = [rule]
                else:
                    rules = sorted(map(self._text, await client.smembers(self.index_key)))
                span = self._minutes(minutes)
                pipe = client.pipeline(transaction=False)
                for name in rules:
                    for minute in span:
                        pipe.zrevrange(
                            self.key(name, minute), 0, self.capacity - 1, withscores=True
                        )
                replies = await pipe.execute() if rules else []
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from exc
        return merge_top(self._rows(rules, span, replies), rule, n)

    def recorded_at(self) -> float | None:
        """When a worker last reported that it records rejections (Unix seconds), or
        ``None``: no worker writing to this Redis has recorded in the last :data:`MINUTES`
        minutes (they have no ``[metrics]`` option, or got no request). Raises
        :class:`~ratelimit.BackendError` if Redis fails."""
        try:
            value = self.backend._sync_client().get(self.marker_key)
        except Exception as exc:
            error = self._error(exc)
            if error is None:
                raise
            raise error from exc
        return None if value is None else float(self._text(value))

    @staticmethod
    def _error(exc: BaseException) -> BaseException | None:
        """The BackendError for a Redis failure, ``None`` for anything else (re-raised)."""
        from ratelimit.errors import BackendError

        kind = _redis_kind(exc)
        if kind is None:
            return None
        return BackendError(f"Redis unavailable ({kind}): {type(exc).__name__}: {exc}", kind=kind)

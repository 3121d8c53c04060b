"""``RedisBackend``: limits shared by every process and host, one round trip per decision.

All the limits of a decision are checked by one Lua script (``EVALSHA``; after ``NOSCRIPT``
the script is sent with ``EVAL``, transparently), atomically: admitted only if every limit
admits, then every limit's state is written with a TTL equal to the time until it is fresh
again. The clock is the Redis server's ``TIME`` (one clock for the whole fleet) unless a
``clock`` is given. The scripts mirror :mod:`ratelimit.algorithms` exactly, so decisions are
identical to :class:`~ratelimit.MemoryBackend`'s.

Sync calls use a ``redis.Redis`` (or ``RedisCluster``, or a Sentinel master) client;
``adecide`` uses a ``redis.asyncio`` client per event loop, and batches the calls made
concurrently in one loop into one pipeline (:mod:`ratelimit.backends.pipelining`). Both share
key building, argument packing and reply decoding (:mod:`ratelimit.backends.redis_script`);
only the I/O call differs.

Failures (refused connections, timeouts, a Cluster that is down, ...) raise
:class:`~ratelimit.BackendError`. A circuit breaker stops waiting on Redis after
``breaker_threshold`` consecutive failures: for ``breaker_cooldown`` seconds calls fail at
once, then one call probes, and its success closes the breaker (no restart needed).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import NoScriptError, ResponseError

from ratelimit.backends.circuit import CircuitBreaker
from ratelimit.backends.pipelining import AutoPipeline
from ratelimit.backends.redis_script import (
    SCRIPT,
    SCRIPT_SHA,
    LimitSpec,
    decode,
    key_tag,
    limit_spec,
    pack_evalsha,
    script_args,
)
from ratelimit.backends.redis_url import ClientFactories, client_factories
from ratelimit.decision import Decision
from ratelimit.errors import BackendError, ConfigError
from ratelimit.limits import Limit

__all__ = ["RedisBackend"]

#: Default connect and socket timeout, seconds: a rate limiter must not hold requests long.
DEFAULT_TIMEOUT = 0.5
DEFAULT_PREFIX = "rl:"


def _translate(exc: BaseException) -> tuple[BackendError, bool]:
    """(the BackendError to raise for ``exc``, whether it is an outage for the breaker)."""
    if isinstance(exc, BackendError):
        return exc, False
    if isinstance(exc, ResponseError) and not _is_cluster_trouble(exc):
        return BackendError(f"Redis rejected the rate-limit script: {exc}"), False
    if isinstance(exc, asyncio.CancelledError):
        return BackendError("the Redis call was cancelled"), False
    return BackendError(f"Redis unavailable: {type(exc).__name__}: {exc}"), True


def _is_cluster_trouble(exc: BaseException) -> bool:
    text = str(exc)
    return text.startswith(("CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "READONLY"))


class _AsyncSide:
    """The asyncio client of one event loop and its auto-pipeline."""

    __slots__ = ("client", "extras", "owned", "pipeline", "raw")

    def __init__(
        self, client: Any, owned: bool, breaker: CircuitBreaker, extras: list[Any] | None = None
    ) -> None:
        self.client = client
        self.owned = owned
        self.extras = extras or []
        #: Whether batches are written as raw RESP (not a Cluster client): pre-pack calls.
        self.raw = getattr(client, "connection_pool", None) is not None
        self.pipeline = AutoPipeline(client, SCRIPT_SHA, SCRIPT, breaker, _translate)


class RedisBackend:
    """Rate-limit state in Redis (single server, Cluster or Sentinel), sync and asyncio.

    Build it from a URL with :meth:`from_url` (or :func:`ratelimit.backend_from_url`), or
    from ready-made redis-py clients.

    Args:
        client: a sync client (``redis.Redis``, ``redis.cluster.RedisCluster``, a Sentinel
            master) for :meth:`decide`; may be ``None`` if only asyncio is used.
        async_client: an asyncio client (``redis.asyncio.Redis`` or its ``RedisCluster``)
            for :meth:`adecide`, used from the one event loop it belongs to.
        clock: seconds as a float; when given, decisions use it instead of Redis ``TIME``
            (tests, simulations, or a fleet with a trusted common clock).
        prefix: prepended to every key (no ``{`` or ``}``: the hash tag is ours).
        ttl_pad_ms: milliseconds added to every TTL. Leave it at 0 (TTLs then equal the time
            until the state is fresh); a test clock that runs slower than real time needs
            some, since Redis expires keys in real time. The state carries its own times, so
            a longer TTL never changes a decision.
        breaker_threshold: consecutive failures that open the circuit breaker.
        breaker_cooldown: seconds the breaker stays open before one call probes Redis.
        breaker_clock: the breaker's clock (seconds, monotonic), injectable for tests.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        async_client: Any = None,
        clock: Callable[[], float] | None = None,
        prefix: str = DEFAULT_PREFIX,
        ttl_pad_ms: int = 0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 1.0,
        breaker_clock: Callable[[], float] = time.monotonic,
        _factories: ClientFactories | None = None,
        _cluster: bool | None = None,
    ) -> None:
        if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
            raise ConfigError(f"Redis key prefix must be text without '{{' or '}}', got {prefix!r}")
        if clock is not None and not callable(clock):
            raise ConfigError(f"clock must be a callable returning seconds, got {clock!r}")
        if isinstance(ttl_pad_ms, bool) or not isinstance(ttl_pad_ms, int) or ttl_pad_ms < 0:
            raise ConfigError(f"ttl_pad_ms must be a whole number ≥ 0, got {ttl_pad_ms!r}")
        if client is None and async_client is None and _factories is None:
            raise ConfigError("RedisBackend needs a client, an async_client, or a URL (from_url)")
        self.prefix = prefix
        self._prefix = prefix.encode()
        if _cluster is None:
            _cluster = any("Cluster" in type(c).__name__ for c in (client, async_client))
        #: Whether :meth:`decide_each` may join the keys of different clients in one atomic
        #: script run: everywhere but Redis Cluster, where they live in different slots.
        self.atomic_across_keys = not _cluster
        self._clock = clock
        self._pad = str(ttl_pad_ms).encode()
        self.breaker = CircuitBreaker(breaker_threshold, breaker_cooldown, breaker_clock)
        self._client = client
        self._client_extras: list[Any] = []
        self._async_client = async_client
        self._factories = _factories
        self._lock = threading.Lock()
        self._sides: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncSide] = (
            weakref.WeakKeyDictionary()
        )
        self._shared_side: _AsyncSide | None = None
        # The side used last, to skip the weak-dictionary lookup (one loop is the usual case).
        self._last: tuple[asyncio.AbstractEventLoop, _AsyncSide] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        ttl_pad_ms: int = 0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 1.0,
        breaker_clock: Callable[[], float] = time.monotonic,
        **options: Any,
    ) -> RedisBackend:
        """A backend for ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` or
        ``redis+sentinel://`` URLs (see :mod:`ratelimit.backends.redis_url`).

        ``timeout`` (seconds) bounds connecting and every reply. Other keyword ``options``
        go to the redis-py client constructors (for example ``max_connections``). Nothing
        connects until the first decision, so an app starts even while Redis is down.
        """
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(f"Redis timeout must be a positive number of seconds: {timeout!r}")
        if not isinstance(url, str):
            raise ConfigError(f"invalid Redis URL {url!r}")
        return cls(
            clock=clock,
            prefix=prefix,
            ttl_pad_ms=ttl_pad_ms,
            breaker_threshold=breaker_threshold,
            breaker_cooldown=breaker_cooldown,
            breaker_clock=breaker_clock,
            _factories=client_factories(url, float(timeout), options),
            _cluster=urlsplit(url).scheme.lower() == "redis+cluster",
        )

    # -- what both paths share -------------------------------------------------------------

    def key_for(self, key: str | bytes, limit: Limit) -> bytes:
        """The Redis key holding ``key``'s state under ``limit``."""
        return self._prefix + key_tag(key) + limit_spec(limit).suffix

    def _request(
        self, key: str | bytes, limits: Sequence[Limit], cost: int, consume: bool
    ) -> tuple[list[LimitSpec], list[bytes], list[bytes]]:
        base = self._prefix + key_tag(key)
        if len(limits) == 1:
            specs = [limit_spec(limits[0])]
            keys = [base + specs[0].suffix]
        else:
            specs = [limit_spec(limit) for limit in limits]
            keys = [base + spec.suffix for spec in specs]
        return specs, keys, script_args(specs, self._now_arg(), cost, consume, self._pad)

    def _request_each(
        self, items: Sequence[tuple[str, Limit, int]], consume: bool
    ) -> tuple[list[LimitSpec], list[bytes], list[bytes]]:
        specs = [limit_spec(limit) for _, limit, _ in items]
        keys = [
            self._prefix + key_tag(key) + spec.suffix
            for (key, _, _), spec in zip(items, specs, strict=True)
        ]
        costs = {cost for _, _, cost in items}
        cost: int | bytes = (
            costs.pop() if len(costs) == 1 else b",".join(b"%d" % c for _, _, c in items)
        )
        return specs, keys, script_args(specs, self._now_arg(), cost, consume, self._pad)

    def _now_arg(self) -> bytes:
        """The clock argument of the script: empty for Redis ``TIME``, else ms as text."""
        clock = self._clock
        if clock is None:
            return b""
        ms = round(clock() * 1000)
        if not 0 <= ms < 1 << 48:
            raise BackendError(f"the clock gave {ms} ms: the Redis backend needs 0 ≤ t < 2**48")
        return b"%d" % ms

    def _failed(self, exc: BaseException) -> BackendError:
        """The BackendError to raise for a client error, counting outages for the breaker."""
        error, outage = _translate(exc)
        if outage:
            self.breaker.failure()
        return error

    # -- sync ------------------------------------------------------------------------------

    def _sync_client(self) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    if self._factories is None:
                        raise ConfigError("this RedisBackend has no sync client (async only)")
                    try:
                        self._client, self._client_extras = self._factories[0]()
                    except ConfigError:
                        raise
                    except Exception as exc:
                        raise self._failed(exc) from exc
                client = self._client
        return client

    def _call(self, keys: list[bytes], args: list[bytes]) -> Any:
        self.breaker.check()
        client = self._client or self._sync_client()
        try:
            try:
                reply = client.execute_command("EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)
            except NoScriptError:  # SCRIPT FLUSH, a restart or a new node: EVAL caches it
                reply = client.execute_command("EVAL", SCRIPT, len(keys), *keys, *args)
        except Exception as exc:
            raise self._failed(exc) from exc
        self.breaker.success()
        return reply

    def decide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        """Decide for ``key`` under every limit at once (see :class:`~ratelimit.Backend`)."""
        specs, keys, args = self._request(key, limits, cost, consume)
        return decode(specs, self._call(keys, args))

    def decide_each(
        self, items: Sequence[tuple[str, Limit, int]], consume: bool = True
    ) -> list[Decision]:
        """Decide several ``(key, limit, cost)`` items in one atomic script run (all admit and
        all consume, or none consumes). Not on Redis Cluster, where keys of different clients
        live in different slots: see :attr:`atomic_across_keys`."""
        specs, keys, args = self._request_each(items, consume)
        return decode(specs, self._call(keys, args))

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        """Forget ``key``'s counters under ``limits`` (one ``DEL``, one slot)."""
        keys = [self.key_for(key, limit) for limit in limits]
        self.breaker.check()
        try:
            self._sync_client().delete(*keys)
        except BackendError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        """Close the sync client if this backend created it."""
        client, self._client = self._client, None
        if client is not None and self._factories is not None:
            client.close()
            for extra in self._client_extras:
                extra.close()
            self._client_extras = []

    # -- asyncio ---------------------------------------------------------------------------

    def _side(self) -> _AsyncSide:
        if self._async_client is not None:
            side = self._shared_side
            if side is None:
                side = self._shared_side = _AsyncSide(self._async_client, False, self.breaker)
            return side
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        side = self._sides.get(loop)
        if side is None:
            if self._factories is None:
                raise ConfigError("this RedisBackend has no asyncio client: pass async_client=")
            client, extras = self._factories[1]()
            side = self._sides[loop] = _AsyncSide(client, True, self.breaker, extras)
        self._last = (loop, side)
        return side

    async def adecide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        """:meth:`decide` for asyncio code: auto-pipelined with concurrent calls."""
        specs, keys, args = self._request(key, limits, cost, consume)
        self.breaker.check()
        side = self._side()
        packed = pack_evalsha(specs, keys, args) if side.raw else None
        reply = await side.pipeline.call(keys, args, packed)
        return decode(specs, reply)

    async def adecide_each(
        self, items: Sequence[tuple[str, Limit, int]], consume: bool = True
    ) -> list[Decision]:
        """:meth:`decide_each` for asyncio code (auto-pipelined like :meth:`adecide`)."""
        specs, keys, args = self._request_each(items, consume)
        self.breaker.check()
        side = self._side()
        packed = pack_evalsha(specs, keys, args) if side.raw else None
        return decode(specs, await side.pipeline.call(keys, args, packed))

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        """:meth:`reset` for asyncio code."""
        keys = [self.key_for(key, limit) for limit in limits]
        self.breaker.check()
        try:
            await self._side().client.delete(*keys)
        except Exception as exc:
            raise self._failed(exc) from exc

    async def aclose(self) -> None:
        """Close the asyncio client this backend created for the running event loop."""
        loop = asyncio.get_running_loop()
        side = self._sides.pop(loop, None)
        if self._last is not None and self._last[0] is loop:
            self._last = None
        if side is not None and side.owned:
            await side.client.aclose()
            for extra in side.extras:
                await extra.aclose()

    def __repr__(self) -> str:
        clock = "Redis TIME" if self._clock is None else "given clock"
        return f"<RedisBackend prefix={self.prefix!r} clock={clock}>"

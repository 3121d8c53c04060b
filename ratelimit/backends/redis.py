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
only the I/O call differs. Only redis-py's public API is used (``execute_command``,
``pipeline(transaction=False)``), so every redis-py the project admits works.

``timeout`` (default 0.1 s) bounds each decision's wait **on Redis**, connecting included:
for sync calls, the socket timeouts of the clients a URL builds (they time the wire); for
asyncio, a :class:`~ratelimit.backends.deadline.Deadline` armed when the call is handed to
redis-py, which counts only the time the event loop was free to read the reply — a worker
busy with a flood does not blame Redis for its own lateness (SPEC §4). A decision that a
process too busy to decide cannot finish within ``overload_after`` seconds of wall time fails
with ``kind="overload"``: not an outage (the breaker ignores it), and the middleware sheds
the request with a 503 whatever ``on_error`` says.

Failures raise :class:`~ratelimit.BackendError` with a :attr:`~ratelimit.BackendError.kind`
— and only backend failures do: redis-py errors (refused connections, timeouts, OOM,
READONLY, CLUSTERDOWN, LOADING, a script error, ...), ``OSError`` and timeouts. Any other
exception (a bug, a ``TypeError``) propagates unchanged. A circuit breaker stops waiting on
Redis after ``breaker_threshold`` consecutive failures: for ``breaker_cooldown`` seconds
calls fail at once, then one call probes, and its success closes the breaker (no restart
needed). The breaker logs one WARNING per outage and one INFO at recovery
(:mod:`ratelimit.backends.circuit`).

A server that cannot run Lua scripts at all (Valkey can unload its Lua engine: ``MODULE
UNLOAD lua``, or be built without it) cannot serve this backend: that is a configuration
error, not an outage. :meth:`RedisBackend.check` (run when the HTTP engine starts, and by
``ratelimit check --backend``) raises :class:`~ratelimit.ConfigError` saying so; should the
scripting go away later, every decision raises that ``ConfigError`` (logged once at ERROR)
instead of taking the ``on_error`` path — never a silent fail-open.

On its first successful call, the backend reads ``CONFIG GET maxmemory-policy`` once and
logs a WARNING unless it is ``noeviction``: every key has a TTL, so an evicting policy
(``volatile-*`` included) can drop live counters and silently under-enforce the limits.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.exceptions as rex

from ratelimit.backends.circuit import CircuitBreaker
from ratelimit.backends.pipelining import AutoPipeline, late
from ratelimit.backends.pipelining import overload_after as default_overload_after
from ratelimit.backends.redis_leases import (
    LEASE_SCRIPT,
    LEASE_SHA,
    acquire_args,
    decode_acquire,
    release_args,
)
from ratelimit.backends.redis_script import (
    CHARGE_SCRIPT,
    CHARGE_SHA,
    SCRIPT,
    SCRIPT_SHA,
    SHARE_SCRIPT,
    SHARE_SHA,
    LimitSpec,
    charge_args,
    decode,
    key_tag,
    limit_spec,
    script_args,
)
from ratelimit.backends.redis_url import (
    ClientFactories,
    client_factories,
    parse_redis_url,
    redact,
)
from ratelimit.backends.shares import ShareBook
from ratelimit.backends.shares import adecide as adecide_shares
from ratelimit.backends.shares import drive as drive_shares
from ratelimit.decision import Decision
from ratelimit.errors import BackendError, ConfigError, RateLimitError
from ratelimit.limits import Limit

__all__ = [
    "ANSWERED_KINDS",
    "DEFAULT_TIMEOUT",
    "NOT_OUTAGE_KINDS",
    "RedisBackend",
    "error_kind",
    "is_outage",
    "scripting_unavailable",
]

#: Default bound on one decision's wait for Redis, seconds, connecting included.
DEFAULT_TIMEOUT = 0.1
DEFAULT_PREFIX = "rl:"

logger = logging.getLogger("ratelimit.backend")
T = TypeVar("T")

#: Redis error codes (the first word of an error reply) → kind. redis-py turns some codes
#: into classes and strips them from the text, so the classes are matched first.
_CODES = {
    "OOM": "oom",
    "READONLY": "readonly",
    "NOSCRIPT": "script",
    "BUSY": "busy",  # a script has been running too long: the server answers nothing else
    "CLUSTERDOWN": "cluster",
    "TRYAGAIN": "cluster",
    "MASTERDOWN": "cluster",
    "MOVED": "cluster",
    "ASK": "cluster",
    "CROSSSLOT": "cluster",
    "LOADING": "loading",
}
_CLASSES: tuple[tuple[type[BaseException], str], ...] = (
    (rex.BusyLoadingError, "loading"),  # a ConnectionError subclass: before it
    (rex.TimeoutError, "timeout"),
    (TimeoutError, "timeout"),  # asyncio.timeout, socket timeouts (OSError below)
    (rex.ConnectionError, "connection"),
    (rex.OutOfMemoryError, "oom"),
    (rex.ReadOnlyError, "readonly"),
    (rex.NoScriptError, "script"),
    (rex.ClusterError, "cluster"),
    (rex.RedisClusterException, "cluster"),
    (rex.TryAgainError, "cluster"),
    (rex.AskError, "cluster"),
    (rex.ClusterCrossSlotError, "cluster"),
    (OSError, "connection"),
)


def scripting_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is a server's reply saying it cannot run Lua scripts at all: Valkey
    with its Lua engine unloaded (``Could not find scripting engine 'lua'``), or a server
    without ``EVAL`` / ``EVALSHA`` (``unknown command``). ``NOSCRIPT`` is not that: the
    script is only missing from the cache."""
    if not isinstance(exc, rex.ResponseError) or isinstance(exc, rex.NoScriptError):
        return False
    text = str(exc).lower()
    if "could not find scripting engine" in text:
        return True
    command = text.partition(", with args")[0]
    return "unknown command" in command and ("eval" in command or "script" in command)


def error_kind(exc: BaseException) -> str | None:
    """The :attr:`BackendError.kind` of a client exception, or ``None`` when ``exc`` is not
    a backend failure (a bug, a wrong argument, a server without Lua scripting: those must
    propagate, not fail open)."""
    if isinstance(exc, BackendError):
        return exc.kind
    if scripting_unavailable(exc):
        return None
    for cls, kind in _CLASSES:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, rex.ResponseError):
        text = str(exc)
        code = text.split(" ", 1)[0]
        if code in _CODES:
            return _CODES[code]
        if "script" in text.lower():  # "ERR Error running script ...", "user_script:1: ..."
            return "script"
        return "other"
    if isinstance(exc, rex.RedisError):
        return "other"
    return None


#: Kinds that mean Redis is up and answered (the script failed on a key of the wrong type,
#: say): a BackendError for this decision, but no outage for the circuit breaker.
ANSWERED_KINDS = frozenset({"script", "other"})
#: Kinds that say nothing against Redis: it answered, or this process was too busy to hear
#: it (``overload``).
NOT_OUTAGE_KINDS = ANSWERED_KINDS | {"overload"}


def is_outage(error: BackendError) -> bool:
    """Whether ``error`` says Redis is unreachable or unhealthy (it counts for the breaker)."""
    return error.kind not in NOT_OUTAGE_KINDS


def _translate(exc: BaseException) -> BackendError | None:
    """The BackendError to raise for a client exception, or None to let it propagate."""
    if isinstance(exc, BackendError):
        return exc
    kind = error_kind(exc)
    if kind is None:
        return None
    text = str(exc) or ("no reply in time" if kind == "timeout" else "no details")
    return BackendError(f"Redis unavailable ({kind}): {type(exc).__name__}: {text}", kind=kind)


def _policies(reply: Any) -> list[str]:
    """Every ``maxmemory-policy`` value in a ``CONFIG GET`` reply (a dict, a flat list, or a
    Cluster's dict per node)."""
    found: list[str] = []

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if text(key) == "maxmemory-policy" and isinstance(item, bytes | str):
                    found.append(text(item))
                else:
                    walk(item)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, bytes | str) and text(item) == "maxmemory-policy":
                    if i + 1 < len(value):
                        found.append(text(value[i + 1]))
                else:
                    walk(item)

    walk(reply)
    return found


class _AsyncSide:
    """The asyncio client of one event loop and its auto-pipeline."""

    __slots__ = ("charges", "client", "extras", "owned", "pipeline", "shares")

    def __init__(
        self, client: Any, owned: bool, backend: RedisBackend, extras: list[Any] | None = None
    ) -> None:
        self.client = client
        self.owned = owned
        self.extras = extras or []
        self.pipeline = AutoPipeline(
            client,
            SCRIPT_SHA,
            SCRIPT,
            backend.breaker,
            _translate,
            is_outage,
            backend.timeout,
            on_success=lambda: backend._first_async_success(client),
            give_up=backend.overload_after,
        )
        #: The script of shares, batched the same way.
        self.shares = AutoPipeline(
            client,
            SHARE_SHA,
            SHARE_SCRIPT,
            backend.breaker,
            _translate,
            is_outage,
            backend.timeout,
            give_up=backend.overload_after,
        )
        #: The script of charges (after responses), batched the same way.
        self.charges = AutoPipeline(
            client,
            CHARGE_SHA,
            CHARGE_SCRIPT,
            backend.breaker,
            _translate,
            is_outage,
            backend.timeout,
            give_up=backend.overload_after,
        )


def _check_timeout(timeout: object) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise ConfigError(f"Redis timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


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
        timeout: seconds one decision may wait on Redis (default 0.1): sync clients built
            from a URL get it as their connect and socket timeouts; asyncio calls count it
            in the event loop's responsive time (see the module docstring). Clients you pass
            keep their own socket timeouts.
        overload_after: seconds of wall time after which an asyncio decision this process
            was too busy to finish fails with ``kind="overload"`` (default: 10 ×
            ``timeout``, at least 2 s).
        ttl_pad_ms: milliseconds added to every TTL. Leave it at 0 (TTLs then equal the time
            until the state is fresh); a test clock that runs slower than real time needs
            some, since Redis expires keys in real time. The state carries its own times, so
            a longer TTL never changes a decision.
        breaker_threshold: consecutive failures that open the circuit breaker.
        breaker_cooldown: seconds the breaker stays open before one call probes Redis.
        breaker_clock: the breaker's clock (seconds, monotonic), injectable for tests.
        on_error_kind: called with the :attr:`~ratelimit.BackendError.kind` of every failed
            decision (``"circuit_open"`` for the fast ones), e.g. to count
            ``ratelimit_backend_errors_total{kind}``. Also settable as an attribute.
        on_state: called with ``False`` when the circuit opens and ``True`` when it closes
            (``ratelimit_backend_up``). Also settable as an attribute.
        on_share: called with ``("taken" | "returned" | "expired", units)`` for every share
            of a limit with ``share`` (``ratelimit_shares_total{event}``); see
            :attr:`shares`. Also settable as ``backend.shares.on_event``.

    Limits with ``share = N`` are decided through :attr:`shares` (a
    :class:`~ratelimit.backends.shares.ShareBook`): up to ``N`` units taken in one call,
    then admitted in process; :meth:`close` / :meth:`aclose` give the unused rest back.

    :attr:`breaker` (``breaker.is_open``), :attr:`is_up` and :attr:`last_error_kind` tell the
    current health.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        async_client: Any = None,
        clock: Callable[[], float] | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = DEFAULT_TIMEOUT,
        ttl_pad_ms: int = 0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 1.0,
        breaker_clock: Callable[[], float] = time.monotonic,
        on_error_kind: Callable[[str], None] | None = None,
        on_state: Callable[[bool], None] | None = None,
        overload_after: float | None = None,
        on_share: Callable[[str, int], None] | None = None,
        _factories: ClientFactories | None = None,
        _cluster: bool | None = None,
        _name: str = "Redis",
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
        self.timeout = _check_timeout(timeout)
        #: Wall seconds after which an asyncio decision fails as ``overload``.
        self.overload_after = (
            default_overload_after(self.timeout)
            if overload_after is None
            else _check_timeout(overload_after)
        )
        if _cluster is None:
            _cluster = any("Cluster" in type(c).__name__ for c in (client, async_client))
        #: Whether :meth:`decide_each` may join the keys of different clients in one atomic
        #: script run: everywhere but Redis Cluster, where they live in different slots.
        self.atomic_across_keys = not _cluster
        self._clock = clock
        self._pad = str(ttl_pad_ms).encode()
        self.breaker = CircuitBreaker(
            breaker_threshold, breaker_cooldown, breaker_clock, name=_name, on_state=on_state
        )
        #: Called with the kind of every failed decision (see the class docstring).
        self.on_error_kind = on_error_kind
        #: The kind of the last failure (``None`` until one happens).
        self.last_error_kind: str | None = None
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
        self._policy_checked = False
        self._no_scripting_logged = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: The shares this backend holds (limits with ``share``), and their counters.
        self.shares = ShareBook(self.share_key, on_share, pad=self._pad)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        prefix: str = DEFAULT_PREFIX,
        timeout: float | None = None,
        ttl_pad_ms: int = 0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 1.0,
        breaker_clock: Callable[[], float] = time.monotonic,
        on_error_kind: Callable[[str], None] | None = None,
        on_state: Callable[[bool], None] | None = None,
        overload_after: float | None = None,
        **options: Any,
    ) -> RedisBackend:
        """A backend for ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` or
        ``redis+sentinel://`` URLs, or their Valkey names ``valkey://``, ``valkeys://``,
        ``valkey+cluster://`` and ``valkey+sentinel://`` (see
        :mod:`ratelimit.backends.redis_url`).

        ``timeout`` (seconds) bounds connecting and every reply: when ``None``, the URL's
        ``?timeout=``, else 0.1. Other keyword ``options`` go to the redis-py client
        constructors (for example ``max_connections``). Nothing connects until the first
        decision, so an app starts even while Redis is down.
        """
        if not isinstance(url, str):
            raise ConfigError(f"invalid backend URL {url!r}: expected text")
        target = parse_redis_url(url)
        if timeout is None:
            timeout = target.timeout if target.timeout is not None else DEFAULT_TIMEOUT
        seconds = _check_timeout(timeout)
        return cls(
            clock=clock,
            prefix=prefix,
            timeout=seconds,
            ttl_pad_ms=ttl_pad_ms,
            breaker_threshold=breaker_threshold,
            breaker_cooldown=breaker_cooldown,
            breaker_clock=breaker_clock,
            on_error_kind=on_error_kind,
            on_state=on_state,
            overload_after=overload_after,
            _factories=client_factories(target, seconds, options),
            _cluster=target.scheme == "redis+cluster",
            _name=f"{target.server} {redact(url)}",
        )

    @property
    def on_state(self) -> Callable[[bool], None] | None:
        """Called with ``False`` when the circuit opens, ``True`` when it closes."""
        return self.breaker.on_state

    @on_state.setter
    def on_state(self, callback: Callable[[bool], None] | None) -> None:
        self.breaker.on_state = callback

    @property
    def is_up(self) -> bool:
        """Whether decisions currently reach Redis (the circuit is closed)."""
        return not self.breaker.is_open

    # -- what both paths share -------------------------------------------------------------

    def key_for(self, key: str | bytes, limit: Limit) -> bytes:
        """The Redis key holding ``key``'s state under ``limit``."""
        return self._prefix + key_tag(key) + limit_spec(limit).suffix

    def share_key(self, key: str | bytes, limit: Limit) -> bytes:
        """The Redis key holding ``key``'s state under a ``limit`` with ``share`` (its own
        format: :mod:`ratelimit.backends.shares`)."""
        return self._prefix + key_tag(key) + limit_spec(limit).suffix + b"~"

    def _share_now(self) -> tuple[float, int | None]:
        """The shares' clock: (local seconds, the script's ms or ``None`` for Redis TIME)."""
        if self._clock is None:
            return time.monotonic(), None
        ms = int(self._now_arg())
        return ms / 1000, ms

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

    @property
    def clock(self) -> Callable[[], float] | None:
        """The clock of the decisions (seconds), or ``None`` for Redis ``TIME``; settable,
        for example to a :class:`ratelimit.testing.FakeClock`."""
        return self._clock

    @clock.setter
    def clock(self, clock: Callable[[], float] | None) -> None:
        if clock is not None and not callable(clock):
            raise ConfigError(f"clock must be a callable returning seconds, got {clock!r}")
        self._clock = clock

    def clear(self, batch: int = 1000) -> int:
        """Delete every key under this backend's :attr:`prefix` (counters, leases, top
        lists), ``SCAN``-ning ``batch`` keys at a time: for tests and tools, not for a busy
        production database. Returns how many keys were deleted.

        Raises:
            ConfigError: the prefix is empty (that would match every key of the database).
        """
        if not self.prefix:
            raise ConfigError("refusing to clear a RedisBackend with an empty prefix")
        pattern = re.sub(rb"([*?\[\]\\])", rb"\\\1", self._prefix) + b"*"
        self._check()
        client = self._sync_client()
        deleted = 0
        try:
            keys: list[bytes] = []
            for key in client.scan_iter(match=pattern, count=batch):
                keys.append(key)
                if len(keys) >= batch:
                    deleted += client.delete(*keys)
                    keys = []
            if keys:
                deleted += client.delete(*keys)
        except Exception as exc:
            error = self._failed(exc)
            if error is None:
                raise
            raise error from exc
        return deleted

    # -- failures and health --------------------------------------------------------------

    def _report(self, error: BackendError) -> BackendError:
        """Note a failed decision's kind (for metrics) and hand the error back."""
        self.last_error_kind = error.kind
        callback = self.on_error_kind
        if callback is not None:
            callback(error.kind)
        return error

    def _check(self) -> None:
        """Fail at once while the circuit is open (a failed decision like any other)."""
        try:
            self.breaker.check()
        except BackendError as error:
            raise self._report(error) from None

    def _no_scripting(self, exc: BaseException) -> ConfigError:
        """The ConfigError for a server without Lua scripting (logged once, at ERROR)."""
        message = (
            f"{self.breaker.name} cannot run Lua scripts ({type(exc).__name__}: {exc}): "
            "the rate limiter needs Lua scripting (EVAL / EVALSHA) and this server does not "
            "offer it. On Valkey, load its Lua engine again (it was unloaded with MODULE "
            "UNLOAD lua, or the server was built without it); on Redis, allow EVAL, EVALSHA "
            "and SCRIPT."
        )
        if not self._no_scripting_logged:
            self._no_scripting_logged = True
            logger.error("%s", message)
        return ConfigError(message)

    def _failed(self, exc: BaseException) -> RateLimitError | None:
        """The BackendError for a client exception, fed to the breaker; a ConfigError for a
        server without Lua scripting; ``None`` when ``exc`` is neither (the caller re-raises
        it unchanged)."""
        if scripting_unavailable(exc):
            return self._no_scripting(exc)
        error = _translate(exc)
        if error is None:
            return None
        if error is not exc:
            error.__cause__ = exc
        if is_outage(error):
            self.breaker.failure(error)
        return self._report(error)

    def _first_success(self, client: Any) -> None:
        """After the first sync call that worked: check ``maxmemory-policy`` once."""
        if self._policy_checked:
            return
        self._policy_checked = True
        try:
            reply = client.config_get("maxmemory-policy")
        except Exception as exc:
            if error_kind(exc) is None:
                raise
            logger.debug("CONFIG GET maxmemory-policy failed (not allowed here?): %s", exc)
            return
        self._warn_policy(reply)

    def _first_async_success(self, client: Any) -> None:
        """After the first asyncio batch that worked: check ``maxmemory-policy`` once, in
        the background (no decision waits for it)."""
        if self._policy_checked:
            return
        self._policy_checked = True
        task = asyncio.ensure_future(self._acheck_policy(client))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _acheck_policy(self, client: Any) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                reply = await client.config_get("maxmemory-policy")
        except Exception as exc:
            if error_kind(exc) is None:
                raise
            logger.debug("CONFIG GET maxmemory-policy failed (not allowed here?): %s", exc)
            return
        self._warn_policy(reply)

    def check(self) -> None:
        """Check that the server can serve this backend: it answers, and it runs Lua scripts.

        Loads the scripts (``SCRIPT LOAD``, on every master of a Cluster), so that the first
        decisions need no ``EVAL``. Raises :class:`~ratelimit.ConfigError` when the server
        cannot run Lua scripts (Valkey without its Lua engine: the backend cannot work
        there), :class:`~ratelimit.BackendError` when the server cannot be reached (which
        may pass: decisions then take the ``on_error`` path until it answers). Bounded by
        :attr:`timeout`; does not count for the circuit breaker. The HTTP engine runs it
        when it builds its backend from a URL.
        """
        client = self._sync_client()
        try:
            for script in (SCRIPT, LEASE_SCRIPT):
                client.script_load(script)
        except Exception as exc:
            error = self._check_failed(exc)
            if error is exc:
                raise
            raise error from exc

    async def acheck(self, bound: float | None = None) -> None:
        """:meth:`check` for asyncio code (with the event loop's client), bounded by
        ``bound`` seconds (default :attr:`timeout`)."""
        client = self._side().client
        try:
            async with asyncio.timeout(self.timeout if bound is None else bound):
                for script in (SCRIPT, LEASE_SCRIPT):
                    await client.script_load(script)
        except Exception as exc:
            error = self._check_failed(exc)
            if error is exc:
                raise
            raise error from exc

    def _check_failed(self, exc: Exception) -> Exception:
        """What :meth:`check` raises for ``exc``: a ConfigError for a server without Lua, a
        BackendError for one that does not answer, else ``exc`` itself (a bug)."""
        if scripting_unavailable(exc):
            return self._no_scripting(exc)
        return _translate(exc) or exc

    async def awarm(self) -> None:
        """Warm this event loop's client up before traffic: connect (a Cluster client reads
        its slot map) and load the scripts (:meth:`acheck`), bounded by
        :attr:`overload_after` — a start-up is not a flood, and a cold Cluster client needs
        several round trips. Raises like :meth:`acheck`; never counts for the breaker."""
        await self.acheck(self.overload_after)

    def _warn_policy(self, reply: Any) -> None:
        evicting = sorted({p for p in _policies(reply) if p != "noeviction"})
        if evicting:
            logger.warning(
                "%s has maxmemory-policy %s: when Redis reaches maxmemory it can evict live "
                "rate-limit counters (every one has a TTL, so volatile-* policies evict them "
                "too), and the limits are then silently under-enforced. Set "
                "maxmemory-policy noeviction (writes then fail with OOM, which goes to "
                "on_error), or use a Redis of its own for rate limiting.",
                self.breaker.name,
                "/".join(evicting),
            )
        else:
            logger.debug("%s: maxmemory-policy %s", self.breaker.name, _policies(reply))

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
                    except Exception as exc:  # a Cluster client connects when built
                        error = self._failed(exc)
                        if error is None:
                            raise
                        raise error from exc
                client = self._client
        return client

    def _call(
        self,
        keys: list[bytes],
        args: list[bytes],
        sha: str = SCRIPT_SHA,
        script: str = SCRIPT,
    ) -> Any:
        """One script run (the decision script unless told otherwise), errors mapped."""
        self._check()
        client = self._client or self._sync_client()
        try:
            try:
                reply = client.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            except rex.NoScriptError:  # SCRIPT FLUSH, a restart or a new node: EVAL caches it
                reply = client.execute_command("EVAL", script, len(keys), *keys, *args)
        except Exception as exc:
            error = self._failed(exc)
            if error is None:
                raise
            raise error from exc
        self.breaker.success()
        if not self._policy_checked:
            self._first_success(client)
        return reply

    def decide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        """Decide for ``key`` under every limit at once (see :class:`~ratelimit.Backend`)."""
        for limit in limits:
            if limit.share is not None:
                return self._shared([(key, lim, cost) for lim in limits], consume)
        specs, keys, args = self._request(key, limits, cost, consume)
        return decode(specs, self._call(keys, args))

    def _shared(self, items: list[tuple[str, Limit, int]], consume: bool) -> list[Decision]:
        """A decision with limits that take shares: :meth:`ShareBook.flow` on the sync API
        (waits for a grant in flight bounded by :attr:`overload_after`)."""
        now = self._share_now()
        fast = self.shares.take(items, consume, now[0])
        if isinstance(fast, list):
            return fast
        flow = self.shares.flow(items, consume, *now)
        return drive_shares(
            flow, self._share_call, self._share_now, self.overload_after, self._report
        )

    def _share_call(self, name: str, args: tuple[Any, ...]) -> Any:
        if name == "share":
            keys, argv = args
            return self._call(keys, argv, SHARE_SHA, SHARE_SCRIPT)
        specs, keys, argv = self._request_each(*args)
        return decode(specs, self._call(keys, argv))

    def return_shares(self) -> None:
        """Give the unused units of every share back to Redis (each at most once; a share
        whose window or epoch has ended is dropped). Called by :meth:`close` and on a config
        reload (:meth:`end_shares`). Failures are logged, never raised: the units then stay
        counted (after the first failure the rest are not tried)."""
        failed = False
        for key, args, units in self.shares.returns(*self._share_now()):
            accepted = False
            if not failed:
                try:
                    reply = self._call([key], args, SHARE_SHA, SHARE_SCRIPT)
                    accepted = bool(reply and reply[0] == 1)
                except BackendError as exc:
                    logger.debug("returning a share failed: %s", exc)
                    failed = True
            self.shares.returned(units, accepted)

    def end_shares(self) -> None:
        """Give every share back (a config reload): on a task of the running event loop
        when called from asyncio code, else blocking (:meth:`return_shares`)."""
        if not self.shares.held():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.return_shares()
            return
        task = loop.create_task(self.areturn_shares())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def decide_each(
        self, items: Sequence[tuple[str, Limit, int]], consume: bool = True
    ) -> list[Decision]:
        """Decide several ``(key, limit, cost)`` items in one atomic script run (all admit and
        all consume, or none consumes). Not on Redis Cluster, where keys of different clients
        live in different slots: see :attr:`atomic_across_keys`."""
        for _, limit, _ in items:
            if limit.share is not None:
                return self._shared(list(items), consume)
        specs, keys, args = self._request_each(items, consume)
        return decode(specs, self._call(keys, args))

    def charge(self, key: str, limits: Sequence[Limit], delta: int, elapsed_ms: int) -> None:
        """Charge ``delta`` more units (``delta < 0``: give back) to ``key`` under every limit
        in one script run, even past the limit: a debt (see :class:`~ratelimit.Backend`)."""
        keys, args = self._charge_request(key, limits, delta, elapsed_ms)
        self._call(keys, args, CHARGE_SHA, CHARGE_SCRIPT)

    def _charge_request(
        self, key: str, limits: Sequence[Limit], delta: int, elapsed_ms: int
    ) -> tuple[list[bytes], list[bytes]]:
        for limit in limits:
            if limit.share is not None or limit.algorithm in ("sliding_log", "concurrency"):
                raise ConfigError(
                    f"{limit}: a {limit.algorithm} limit"
                    f"{' with share' if limit.share is not None else ''} takes no charge"
                )
        base = self._prefix + key_tag(key)
        specs = [limit_spec(limit) for limit in limits]
        keys = [base + spec.suffix for spec in specs]
        return keys, charge_args(specs, self._now_arg(), delta, elapsed_ms, self._pad)

    def reset(self, key: str, limits: Sequence[Limit]) -> None:
        """Forget ``key``'s counters under ``limits`` (one ``DEL``, one slot)."""
        keys = [self.key_for(key, limit) for limit in limits] + self.shares.forget(key, limits)
        self._check()
        client = self._sync_client()
        try:
            client.delete(*keys)
        except Exception as exc:
            error = self._failed(exc)
            if error is None:
                raise
            raise error from exc

    # -- concurrency leases (ratelimit.backends.redis_leases) --------------------------------

    def lease_key(self, key: str, limit: Limit) -> bytes:
        """The Redis key of ``key``'s leases under the concurrency ``limit``."""
        return self._prefix + key_tag(key) + b":lease:" + limit.id.encode()

    def _run_lease(self, key: bytes, args: list[bytes]) -> Any:
        return self._call([key], args, LEASE_SHA, LEASE_SCRIPT)

    async def _bounded(self, side: _AsyncSide, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()`` on a task of its own under a :class:`Deadline` (which measures
        Redis, not this loop); a call the deadline ended raises its BackendError."""
        deadline = side.pipeline.deadline()
        task = asyncio.ensure_future(call())
        deadline.start(task)
        try:
            return await task
        except asyncio.CancelledError:
            if deadline.reason is None:  # the caller itself was cancelled
                raise
            raise late(deadline.reason, self.timeout, self.overload_after) from None

    async def _arun_lease(self, key: bytes, args: list[bytes]) -> Any:
        return await self._arun([key], args, LEASE_SHA, LEASE_SCRIPT)

    async def _arun(self, keys: list[bytes], args: list[bytes], sha: str, script: str) -> Any:
        """One script run on the asyncio client (not pipelined), bounded like a lease call."""
        self._check()
        side = self._side()
        client = side.client
        n = len(keys)

        async def run() -> Any:
            try:
                return await client.execute_command("EVALSHA", sha, n, *keys, *args)
            except rex.NoScriptError:
                return await client.execute_command("EVAL", script, n, *keys, *args)

        try:
            reply = await self._bounded(side, run)
        except Exception as exc:
            error = self._failed(exc)
            if error is None:
                raise
            raise error from exc
        self.breaker.success()
        return reply

    def acquire(self, key: str, limit: Limit, token: str) -> Decision:
        """Take a lease of the concurrency ``limit`` for ``key`` (see
        :meth:`MemoryBackend.acquire <ratelimit.MemoryBackend.acquire>`): one script run."""
        args = acquire_args(self._now_arg(), token, limit)
        return decode_acquire(self._run_lease(self.lease_key(key, limit), args), limit)

    def release(self, key: str, limit: Limit, token: str) -> None:
        """Give back ``token``'s lease (a lease not given back expires by itself)."""
        self._run_lease(self.lease_key(key, limit), release_args(self._now_arg(), token))

    async def aacquire(self, key: str, limit: Limit, token: str) -> Decision:
        """:meth:`acquire` for asyncio code (bounded by :attr:`timeout`)."""
        args = acquire_args(self._now_arg(), token, limit)
        return decode_acquire(await self._arun_lease(self.lease_key(key, limit), args), limit)

    async def arelease(self, key: str, limit: Limit, token: str) -> None:
        """:meth:`release` for asyncio code."""
        await self._arun_lease(self.lease_key(key, limit), release_args(self._now_arg(), token))

    def close(self) -> None:
        """Give back the unused units of shares, and close the sync client if this backend
        created it."""
        if self.shares.held() and (self._client is not None or self._factories is not None):
            self.return_shares()
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
                side = self._shared_side = _AsyncSide(self._async_client, False, self)
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
            side = self._sides[loop] = _AsyncSide(client, True, self, extras)
        self._last = (loop, side)
        return side

    async def _acall(self, keys: list[bytes], args: list[bytes]) -> Any:
        """One auto-pipelined script call. Its batch's deadline bounds the wait (``timeout``
        of Redis's time, ``overload_after`` of wall time): no timer of its own."""
        self._check()
        try:
            return await self._side().pipeline.call(keys, args)
        except BackendError as error:  # the batch failed (already fed to the breaker)
            raise self._report(error) from error.__cause__
        except rex.ResponseError as exc:  # handed over as it is: not a backend failure
            if scripting_unavailable(exc):
                raise self._no_scripting(exc) from exc
            raise

    async def adecide(
        self, key: str, limits: Sequence[Limit], cost: int, consume: bool = True
    ) -> list[Decision]:
        """:meth:`decide` for asyncio code: auto-pipelined with concurrent calls."""
        for limit in limits:
            if limit.share is not None:
                shared = self._ashared([(key, lim, cost) for lim in limits], consume)
                return shared if isinstance(shared, list) else await shared
        specs, keys, args = self._request(key, limits, cost, consume)
        return decode(specs, await self._acall(keys, args))

    def _ashared(
        self, items: list[tuple[str, Limit, int]], consume: bool
    ) -> list[Decision] | Awaitable[list[Decision]]:
        """:meth:`_shared` on the asyncio API: the decisions at once when the units this
        worker holds cover them (most decisions: no coroutine of the share machinery), else
        an awaitable of them (concurrent misses wait for one grant)."""
        now = self._share_now()
        bound = self.overload_after
        fast = self.shares.take(items, consume, now[0], asyncio.get_running_loop(), bound)
        if isinstance(fast, list):
            return fast
        return adecide_shares(
            self.shares, items, consume, fast, now, self._ashare_call, self._share_now, bound,
            self._report,
        )  # fmt: skip

    async def _ashare_call(self, name: str, args: tuple[Any, ...]) -> Any:
        if name == "share":
            keys, argv = args
            self._check()
            try:
                return await self._side().shares.call(keys, argv)
            except BackendError as error:  # the batch failed (already fed to the breaker)
                raise self._report(error) from error.__cause__
        specs, keys, argv = self._request_each(*args)
        return decode(specs, await self._acall(keys, argv))

    async def areturn_shares(self) -> None:
        """:meth:`return_shares` for asyncio code (called by :meth:`aclose` and at ASGI
        ``lifespan.shutdown``): the returns go out together, auto-pipelined, so a failing
        Redis costs one deadline, not one per share."""
        returns = self.shares.returns(*self._share_now())
        if not returns:
            return
        try:
            self._check()
            side = self._side()
        except (BackendError, ConfigError) as exc:
            logger.debug("returning shares failed: %s", exc)
            for *_, units in returns:
                self.shares.returned(units, False)
            return
        calls = [side.shares.call([key], args) for key, args, _ in returns]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        for (*_, units), reply in zip(returns, replies, strict=True):
            if isinstance(reply, BaseException):
                logger.debug("returning a share failed: %s", reply)
            accepted = not isinstance(reply, BaseException) and bool(reply) and reply[0] == 1
            self.shares.returned(units, accepted)

    async def adecide_each(
        self, items: Sequence[tuple[str, Limit, int]], consume: bool = True
    ) -> list[Decision]:
        """:meth:`decide_each` for asyncio code (auto-pipelined like :meth:`adecide`)."""
        for _, limit, _ in items:
            if limit.share is not None:
                shared = self._ashared(list(items), consume)
                return shared if isinstance(shared, list) else await shared
        specs, keys, args = self._request_each(items, consume)
        return decode(specs, await self._acall(keys, args))

    async def acharge(self, key: str, limits: Sequence[Limit], delta: int, elapsed_ms: int) -> None:
        """:meth:`charge` for asyncio code (auto-pipelined with concurrent charges)."""
        keys, args = self._charge_request(key, limits, delta, elapsed_ms)
        self._check()
        try:
            await self._side().charges.call(keys, args)
        except BackendError as error:  # the batch failed (already fed to the breaker)
            raise self._report(error) from error.__cause__

    async def areset(self, key: str, limits: Sequence[Limit]) -> None:
        """:meth:`reset` for asyncio code (bounded by :attr:`timeout`)."""
        keys = [self.key_for(key, limit) for limit in limits] + self.shares.forget(key, limits)
        self._check()
        side = self._side()
        try:
            await self._bounded(side, lambda: side.client.delete(*keys))
        except Exception as exc:
            error = self._failed(exc)
            if error is None:
                raise
            raise error from exc

    async def aclose(self) -> None:
        """Give back the unused units of shares, and close the asyncio client this backend
        created for the running event loop."""
        if self.shares.held():
            await self.areturn_shares()
        loop = asyncio.get_running_loop()
        side = self._sides.pop(loop, None)
        if self._last is not None and self._last[0] is loop:
            self._last = None
        # A pending maxmemory-policy check ends within the timeout: let it, so that its
        # connection is not cut in the middle of connecting.
        mine = [task for task in self._tasks if task.get_loop() is loop]
        if mine:
            await asyncio.gather(*mine, return_exceptions=True)
        if side is not None and side.owned:
            await side.client.aclose()
            for extra in side.extras:
                await extra.aclose()

    def __repr__(self) -> str:
        clock = "Redis TIME" if self._clock is None else "given clock"
        return f"<RedisBackend prefix={self.prefix!r} clock={clock} timeout={self.timeout:g}s>"

"""What the engine calls once per decided request, and the recorder behind every sink.

The engine holds ``engine.observer``: ``None`` unless ``[metrics]`` enables something, in
which case nothing metric-related runs per request. Otherwise it calls
``observer.observe(plan, request, outcome, seconds)`` exactly once per request that matched
a plan (see :class:`Observer`). :func:`build_observer` builds the :class:`Recorder`, which
feeds, as configured:

- Prometheus (:mod:`ratelimit.metrics.prometheus`) and OpenTelemetry
  (:mod:`ratelimit.metrics.otel`);
- per-rule outcome counts in 10-second buckets over 15 minutes (:class:`WindowCounts`,
  the status page's numbers and sparklines);
- the top offenders (:mod:`ratelimit.metrics.top`), in process and, with Redis, merged
  across workers.

A request that matched several rules is counted once under each of them, with the
request's outcome (so ``ratelimit_requests_total{rule="api", outcome="rejected"}`` is the
number of requests under ``api`` that were refused); the rejection's identity is counted
under the rule whose limit refused it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ratelimit.metrics.top import RedisTop, TopList, TopOffenders

if TYPE_CHECKING:
    from ratelimit.decision import Decision
    from ratelimit.http.engine import Engine, Outcome, Plan
    from ratelimit.http.keys import RequestInfo
    from ratelimit.http.rules import Rule
    from ratelimit.limits import Limit
    from ratelimit.metrics.prometheus import PrometheusMetrics

__all__ = [
    "ADMITTED",
    "REJECTED",
    "Observer",
    "Recorder",
    "WindowCounts",
    "backend_label",
    "build_observer",
]

#: Outcomes that let the request through (the sparklines' "allowed" line).
ADMITTED = frozenset({"allowed", "delayed", "local", "error_allowed"})
#: Rate-limit refusals, real or in shadow mode (the "rejected" line, and the top offenders).
REJECTED = frozenset({"rejected", "banned", "shadow_rejected"})
_ERRORS = frozenset({"error_allowed", "error_denied", "local"})


class Observer(Protocol):
    """Receives every request the engine decided under a plan."""

    def observe(self, plan: Plan, request: RequestInfo, outcome: Outcome, seconds: float) -> None:
        """Record one request: ``plan.rules`` matched it, ``outcome`` is what happened
        (``outcome.kind``, ``outcome.decision`` — ``None`` when the backend failed) and
        ``seconds`` how long deciding took, backend included."""


def backend_label(engine: Engine) -> str:
    """The ``backend`` label: the URL scheme (``memory``, ``redis``, ``redis+cluster``,
    ``valkey``...),
    or for a backend object passed in code, its kind."""
    from ratelimit.backends.memory import MemoryBackend

    backend = engine.backend
    if isinstance(backend, MemoryBackend):
        return "memory"
    scheme = engine.config.backend.partition("://")[0].lower()
    if type(backend).__name__ == "RedisBackend":
        return scheme if scheme.startswith(("redis", "unix", "valkey")) else "redis"
    name = type(backend).__name__.lower()
    return name[: -len("backend")] if name.endswith("backend") and len(name) > 7 else name


class WindowCounts:
    """Outcome counts per rule in ``width``-second buckets over the last ``span`` seconds.

    Thread-safe; ``clock`` gives wall seconds (injectable for tests).
    """

    def __init__(
        self, *, width: float = 10.0, span: float = 900.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.width = width
        self.slots = max(1, round(span / width))
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, dict[tuple[str, str], int]] = {}
        self._current = -1
        self._bucket: dict[tuple[str, str], int] = {}

    def add(self, rules: tuple[Rule, ...], kind: str) -> None:
        """Count one request of outcome ``kind`` under every rule of ``rules``."""
        index = int(self.clock() // self.width)
        with self._lock:
            if index != self._current:
                self._rotate(index)
            bucket = self._bucket
            for rule in rules:
                slot = (rule.name, kind)
                bucket[slot] = bucket.get(slot, 0) + 1

    def _rotate(self, index: int) -> None:
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = {}
        for old in [i for i in self._buckets if i <= index - self.slots]:
            del self._buckets[old]
        self._current, self._bucket = index, bucket

    def counts(self, seconds: float) -> dict[str, dict[str, int]]:
        """``{rule: {outcome: count}}`` over the last ``seconds`` (whole buckets)."""
        last = int(self.clock() // self.width)
        first = last - max(1, round(seconds / self.width)) + 1
        result: dict[str, dict[str, int]] = {}
        with self._lock:
            for index, bucket in self._buckets.items():
                if first <= index <= last:
                    for (rule, kind), n in bucket.items():
                        per_rule = result.setdefault(rule, {})
                        per_rule[kind] = per_rule.get(kind, 0) + n
        return result

    def series(self, rule: str, kinds: frozenset[str]) -> list[int]:
        """Per bucket, oldest first, the requests under ``rule`` whose outcome is in ``kinds``
        (``slots`` values, the last one the bucket in progress)."""
        last = int(self.clock() // self.width)
        first = last - self.slots + 1
        values = [0] * self.slots
        with self._lock:
            for index, bucket in self._buckets.items():
                if first <= index <= last:
                    values[index - first] = sum(
                        n for (name, kind), n in bucket.items() if name == rule and kind in kinds
                    )
        return values


class Recorder:
    """The :class:`Observer` the engine gets from :func:`build_observer`.

    Args:
        engine: the engine it records for (its config says what to record).
        clock: wall seconds, for the status windows and the top-offender minutes.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        config = engine.config.metrics
        self.engine = engine
        self.clock = clock
        self.backend = backend_label(engine)
        self.started_at = clock()
        self._config_seen: tuple[int, float] = (id(engine.config), self.started_at)
        #: Failed backend decisions by kind, since start (the status page).
        self.errors: dict[str, int] = {}
        self._errors_lock = threading.Lock()
        self._hooked = False
        self.prometheus: PrometheusMetrics | None = None
        if config.prometheus is not False:
            from ratelimit.metrics.prometheus import metrics_for

            prom = self.prometheus = metrics_for(config.prometheus)
            prom.up(self.backend, True)
            for rule in engine.rules:  # the series exist from the start, at 0
                if not rule.exempt:
                    prom.ensure(rule.name, "allowed")
                    prom.ensure(rule.name, "rejected")
        self.otel: Any = None
        self._otel_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._otel_backend = {"backend": self.backend}
        if config.opentelemetry is not False:
            from ratelimit.metrics.otel import otel_for

            self.otel = otel_for(config.opentelemetry)
        self.window: WindowCounts | None = None
        if config.status_path is not None:
            self.window = WindowCounts(clock=clock)
        self.top = TopOffenders(clock=clock)
        self.redis_top: RedisTop | None = None
        if type(engine.backend).__name__ == "RedisBackend":
            self.redis_top = RedisTop(engine.backend, clock=clock)
        self._rule_of: dict[str, str] = {
            limit.id: rule.name for rule in engine.rules for limit in rule.limits
        }
        self._hook_backend(engine.backend)

    # -- per request -----------------------------------------------------------------------

    def observe(self, plan: Plan, request: RequestInfo, outcome: Outcome, seconds: float) -> None:
        """Record one decided request (see :class:`Observer`)."""
        kind = outcome.kind
        rules = plan.rules
        prom = self.prometheus
        if prom is not None:
            prom.record(rules, kind, self.backend, seconds)
        otel = self.otel
        if otel is not None:
            attrs = self._otel_attrs
            for rule in rules:
                slot = (rule.name, kind)
                found = attrs.get(slot)
                if found is None:
                    found = attrs[slot] = {"rule": rule.name, "outcome": kind}
                otel.requests.add(1, found)
            otel.decision_duration.record(seconds, self._otel_backend)
        window = self.window
        if window is not None:
            window.add(rules, kind)
        if outcome.delay:
            self._delayed(plan, outcome)
        redis_top = self.redis_top
        if redis_top is not None:
            redis_top.beat()  # "this worker records rejections" (ratelimit top reads it)
        if kind in REJECTED:
            self._rejected(plan, request, outcome.decision)
        elif not self._hooked and kind in _ERRORS:
            self.backend_error("unknown")

    def _rule_name(self, plan: Plan, policy: Limit | None) -> str:
        if policy is not None:
            name = self._rule_of.get(policy.id)
            if name is not None:
                return name
            for rule in plan.rules:
                if policy in rule.limits:
                    self._rule_of[policy.id] = rule.name
                    return rule.name
            for rule in plan.rules:  # a tier's limits ("api.pro", "api.pro.0"), a ban's
                name = policy.name or ""
                if name == rule.name or name.startswith((rule.name + ".", rule.name + ":")):
                    return rule.name
        return plan.rules[0].name

    def _delayed(self, plan: Plan, outcome: Outcome) -> None:
        decision = outcome.decision
        rule = self._rule_name(plan, decision.policy if decision is not None else None)
        if self.prometheus is not None:
            self.prometheus.delayed(rule, outcome.delay)

    def _rejected(self, plan: Plan, request: RequestInfo, decision: Decision | None) -> None:
        policy = decision.policy if decision is not None else None
        group = plan.groups[0] if plan.groups else None
        if policy is not None:
            for candidate in plan.groups:
                if policy in candidate.limits:
                    group = candidate
                    break
        identity = group.key(request) if group is not None else "-"
        rule = self._rule_name(plan, policy)
        self.top.add(rule, identity)
        if self.redis_top is not None:
            self.redis_top.add(rule, identity)

    # -- backend health --------------------------------------------------------------------

    def _hook_backend(self, backend: Any) -> None:
        """Chain onto the backend's ``on_error_kind`` / ``on_state`` hooks where it has them
        (the Redis backend); otherwise failures are counted from the outcomes.

        A backend shared by several engines gets one hook that tells every recorder, and
        each sink (a registry's metrics, an OTel instrument set) counts a failure once.
        """
        if not hasattr(backend, "on_error_kind"):
            return
        self._hooked = True
        recorders: list[Recorder] | None = getattr(backend, "_ratelimit_recorders", None)
        if recorders is not None:
            recorders.append(self)
            return
        recorders = [self]
        previous_error = backend.on_error_kind
        previous_state = getattr(backend, "on_state", None)

        def on_error_kind(kind: str) -> None:
            seen: set[int] = set()
            for recorder in recorders:
                recorder.backend_error(kind, seen)
            if previous_error is not None:
                previous_error(kind)

        def on_state(up: bool) -> None:
            for recorder in recorders:
                recorder.backend_state(up)
            if previous_state is not None:
                previous_state(up)

        backend.on_error_kind = on_error_kind
        if hasattr(backend, "on_state"):
            backend.on_state = on_state
        book = getattr(backend, "shares", None)
        if book is not None and hasattr(book, "on_event"):
            previous_share = book.on_event

            def on_share(event: str, units: int) -> None:
                seen: set[int] = set()
                for recorder in recorders:
                    recorder.share_event(event, units, seen)
                if previous_share is not None:
                    previous_share(event, units)

            book.on_event = on_share
        backend._ratelimit_recorders = recorders

    def backend_error(self, kind: str, seen: set[int] | None = None) -> None:
        """Count one failed backend decision of ``kind`` (``seen``: the ids of the sinks that
        already counted it, for a backend shared by several engines)."""
        with self._errors_lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1
        seen = set() if seen is None else seen
        prom, otel = self.prometheus, self.otel
        if prom is not None and id(prom) not in seen:
            seen.add(id(prom))
            prom.error(self.backend, kind)
        if otel is not None and id(otel) not in seen:
            seen.add(id(otel))
            otel.backend_errors.add(1, {"backend": self.backend, "kind": kind})

    def share_event(self, event: str, units: int, seen: set[int] | None = None) -> None:
        """One share of a limit was ``taken``, ``returned`` or ``expired`` (``units``
        units): ``ratelimit_shares_total{event}`` and ``ratelimit.shares`` (``seen``: see
        :meth:`backend_error`)."""
        prom, otel = self.prometheus, self.otel
        seen = set() if seen is None else seen
        if prom is not None and id(prom) not in seen:
            seen.add(id(prom))
            prom.share(event, units)
        if otel is not None and id(otel) not in seen:
            seen.add(id(otel))
            attrs = {"event": event}
            otel.shares.add(1, attrs)
            otel.share_units.add(units, attrs)

    def backend_state(self, up: bool) -> None:
        """The backend went down (``False``: its circuit opened) or came back (``True``)."""
        if self.prometheus is not None:
            self.prometheus.up(self.backend, up)

    def backend_up(self) -> bool:
        """Whether decisions currently reach the backend."""
        breaker = getattr(self.engine.backend, "breaker", None)
        return not (breaker is not None and breaker.is_open)

    # -- reading ---------------------------------------------------------------------------

    def config_loaded_at(self) -> float:
        """When the engine's current config was first seen (start, or the last reload)."""
        config = self.engine.config
        loaded = getattr(config, "loaded_at", None)
        if isinstance(loaded, int | float):
            return float(loaded)
        seen_id = self._config_seen[0]
        if seen_id != id(config):
            self._config_seen = (id(config), self.clock())
        return self._config_seen[1]

    def top_local(self, rule: str | None = None, n: int = 10) -> TopList:
        """This process's top offenders (see :meth:`Engine.top`)."""
        return self.top.top(rule, n)


def build_observer(engine: Engine, *, clock: Callable[[], float] = time.time) -> Recorder | None:
    """The observer for ``engine.config.metrics`` (``None`` when nothing is enabled); also
    sets ``engine.status`` to the status page when ``status_path`` is given."""
    config = engine.config.metrics
    if not config.enabled:
        return None
    recorder = Recorder(engine, clock=clock)
    if config.status_path is not None:
        from ratelimit.metrics.status import StatusPage

        engine.status = StatusPage(engine, recorder, config)
    return recorder


#: Whether :func:`engine_top` has said that this process records no rejections.
_warned_not_recording = False


def engine_top(engine: Engine, rule: str | None = None, n: int = 10) -> TopList:
    """:meth:`Engine.top`: from Redis (every worker) with a Redis backend, else from this
    process's recorder; empty when nothing records rejections (no ``[metrics]`` option and
    a process-local backend), which is logged once as a WARNING so that an empty list is not
    read as "nobody was rejected"."""
    global _warned_not_recording
    observer = engine.observer
    if isinstance(observer, Recorder):
        if observer.redis_top is not None:
            return observer.redis_top.top(rule, n)
        return observer.top.top(rule, n)
    if type(engine.backend).__name__ == "RedisBackend":
        return RedisTop(engine.backend).top(rule, n)
    if not _warned_not_recording:
        _warned_not_recording = True
        logging.getLogger("ratelimit.metrics").warning(
            "engine.top(): rejections are not being recorded (no [metrics] option: "
            "prometheus, opentelemetry or status_path), so the list is empty"
        )
    return []


async def engine_atop(engine: Engine, rule: str | None = None, n: int = 10) -> TopList:
    """:meth:`Engine.atop`: :func:`engine_top` with the asyncio Redis client."""
    observer = engine.observer
    if isinstance(observer, Recorder):
        if observer.redis_top is not None:
            return await observer.redis_top.atop(rule, n)
        return observer.top.top(rule, n)
    if type(engine.backend).__name__ == "RedisBackend":
        return await RedisTop(engine.backend).atop(rule, n)
    return engine_top(engine, rule, n)  # nothing recorded: empty, and said once

"""The request-handling engine shared by every adapter (ASGI, WSGI, Django).

The data path, top to bottom::

    method, path ──► plan (the matching rules, compiled; cached for short paths)
    request      ──► counter key(s)
                 ──► ONE backend decide() with every limit of every matching rule
                 ──► Outcome: pass (+ headers, + shaping delay) | 429 | 503

The logic is written once, as a generator that yields the backend calls it needs
(:meth:`Engine.flow`); :meth:`Engine.run` drives it with the blocking backend API and
:meth:`Engine.arun` with the asyncio one (``await backend.a<name>``). That is the only
difference between the sync and async paths; the delay wait is left to the adapter
(``time.sleep`` or ``asyncio.sleep``).

Only :class:`~ratelimit.BackendError` is a backend failure: it takes the ``on_error`` path
(``allow``, ``deny`` or ``local``). Anything else raised while deciding — a key or cost
function of the user's, a bug of ours — propagates, so it is a 500 from the framework and
not a silent fail-open.

Matching rules that identify clients the same way and share a cost are one group, checked in
one ``decide`` call. Rules that need different keys (say ``ip`` and ``header:x-api-key``) or
costs make several groups: they are still checked in one atomic call, ``decide_each``, on
every backend that offers it (memory, Redis). Only where the keys of different clients cannot
meet in one atomic step (Redis Cluster: they live in different slots) does the engine fall
back to checking every group without consuming, then consuming each if all admit; a
concurrent request can slip between those calls (within a group it never can).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from ratelimit.backends import MemoryBackend, backend_from_url
from ratelimit.backends.base import Backend
from ratelimit.decision import Decision, combine
from ratelimit.errors import BackendError
from ratelimit.http.config import Config, load_config
from ratelimit.http.headers import (
    HeaderPairs,
    Reply,
    join_policies,
    label_of,
    render,
    service_unavailable,
    too_many_requests,
    without_body,
)
from ratelimit.http.keys import ClientIdentity, RequestInfo, compile_key
from ratelimit.http.rejections import RejectionCache
from ratelimit.http.rules import Rule, normalize_path, split_path
from ratelimit.limits import Limit
from ratelimit.rate import Rate

if TYPE_CHECKING:
    from ratelimit.metrics.observer import Observer

__all__ = ["OUTCOME_KINDS", "Call", "Engine", "Outcome", "Plan", "RejectHandler"]

log = logging.getLogger("ratelimit")

#: One backend call: the method name (``decide`` or ``decide_each``; the async drivers call
#: the ``a``-prefixed twin) and its arguments.
Call = tuple[str, tuple[Any, ...]]
#: One group's part of a decision: the client key, the limits and the cost.
GroupCall = tuple[str, tuple[Limit, ...], int]
#: An overridable 429 handler: ``(request, decision) -> Reply``. The rate-limit headers are
#: added to its reply.
RejectHandler = Callable[[RequestInfo, Decision], Reply]

#: What happened to a request (SPEC §7; the ``outcome`` label of the metrics).
OUTCOME_KINDS = (
    "allowed",
    "delayed",
    "rejected",
    "banned",
    "denied",
    "shadow_rejected",
    "error_allowed",
    "error_denied",
    "local",
)

#: Plans are cached by (method, path) for paths up to this many characters, at most
#: ``_PLAN_CACHE_SIZE`` of them: what a client can put in the cache is bounded (4096 × 256
#: characters), and longer paths — which real routes rarely have — are matched afresh.
#: Paid for by ``python -m benchmarks.http`` (matching the example config's rules on every
#: request costs more than the dict lookup).
_PLAN_CACHE_SIZE = 4096
_CACHED_PATH_LENGTH = 256
#: The most (limit, client) pairs remembered for the once-per-window shadow-mode log line.
_SHADOW_LOG_SIZE = 4096


class Group(NamedTuple):
    """Limits checked in one backend call: same key function, same cost."""

    key: Callable[[RequestInfo], str]
    limits: tuple[Limit, ...]
    cost: int


class Plan(NamedTuple):
    """What applies to a (method, path): the matching rules, grouped for the backend."""

    rules: tuple[Rule, ...]
    groups: tuple[Group, ...]
    policies: bytes


class Outcome(NamedTuple):
    """What the adapter does with a request.

    ``reply`` set: send it instead of calling the application. Otherwise call the
    application after waiting ``delay`` seconds, adding ``headers`` to its response.
    ``kind`` is one of :data:`OUTCOME_KINDS`.
    """

    reply: Reply | None
    headers: HeaderPairs
    delay: float
    decision: Decision | None
    kind: str = "allowed"


def scaled(limit: Limit, fraction: float) -> Limit:
    """``limit`` with its limit (and burst) multiplied by ``fraction``, at least 1 each: the
    share of one process when ``on_error = "local"`` decides without the shared backend."""
    if fraction == 1.0:
        return limit
    rate = Rate(max(1, int(limit.rate.limit * fraction)), limit.rate.period)
    burst = None if limit.burst is None else max(1, int(limit.burst * fraction))
    return replace(limit, rate=rate, burst=burst)


class Engine:
    """Rules + backend → outcomes. One per middleware instance; safe to share.

    Args:
        config: a :class:`Config`, a TOML path or a dict (see :func:`load_config`).
        backend: a ready backend object; default: built from ``config.backend`` (with
            ``config.timeout``).
        on_reject: replaces the default 429 problem+json reply.
    """

    def __init__(
        self,
        config: Config | Any = None,
        *,
        backend: Backend | None = None,
        on_reject: RejectHandler | None = None,
    ) -> None:
        self.config: Config = load_config(config)
        cfg = self.config
        self.backend: Backend = (
            backend if backend is not None else backend_from_url(cfg.backend, timeout=cfg.timeout)
        )
        self.on_reject = on_reject
        #: Several groups go in one atomic ``decide_each`` call where the backend can join
        #: different clients' keys (see the module docstring).
        self.atomic_each = hasattr(self.backend, "decide_each") and getattr(
            self.backend, "atomic_across_keys", True
        )
        #: ``on_error = "local"``: the process-local stand-in while the backend fails, and
        #: each limit's share (``local_fraction``) there.
        self.local: MemoryBackend | None = None
        self._local_limits: dict[Limit, Limit] = {}
        if cfg.on_error == "local":
            self.local = MemoryBackend()
        self.identity = ClientIdentity(cfg.trusted_proxies, cfg.ipv6_prefix, cfg.proxy_header)
        self.headers_mode = cfg.headers
        self.shadow = cfg.shadow
        self.deny_on_error = cfg.on_error == "deny"
        self._keys: dict[Any, Callable[[RequestInfo], str]] = {}
        self._labels: dict[str, bytes] = {}
        self._plans: dict[tuple[str, str], Plan | None] = {}
        self._by_rules: dict[tuple[int, ...], Plan] = {}
        self._shadow_logged: dict[tuple[str, str], float] = {}
        self.rules = cfg.rules
        #: Whether some rule identifies clients by user (async adapters then load the user).
        self.uses_user = any(cfg.key_of(rule) == "user" for rule in cfg.rules)
        for rule in self.rules:
            self._register(rule)
        #: Rejections of a remote backend answered locally while they hold (see
        #: :mod:`ratelimit.http.rejections`); none for the memory backend, which answers
        #: as fast itself. Paid for by the "Redis, every request rejected" variant of
        #: ``python -m benchmarks.http``.
        self.rejections: RejectionCache | None = (
            None if isinstance(self.backend, MemoryBackend) else RejectionCache()
        )
        #: Records every decided request (metrics, status page); ``None``: nothing runs.
        self.observer: Observer | None = None
        if cfg.metrics_enabled():
            from ratelimit.metrics import build_observer

            self.observer = build_observer(self)

    def _register(self, rule: Rule) -> None:
        for limit in rule.limits:
            self._labels[limit.id] = label_of(limit)
            if self.local is not None and limit not in self._local_limits:
                self._local_limits[limit] = scaled(limit, self.config.local_fraction)

    def key_function(self, rule: Rule) -> Callable[[RequestInfo], str]:
        """The compiled ``request -> counter key`` function of ``rule``."""
        spec = self.config.key_of(rule)
        func = self._keys.get(spec)
        if func is None:
            func = self._keys[spec] = compile_key(spec, self.identity)
        return func

    def plan_for_rules(self, rules: tuple[Rule, ...]) -> Plan:
        """The plan checking ``rules`` together (their limits grouped by key and cost).

        Cached by the rules' identities (the plan holds the rules, so the ids stay valid):
        the decorators call this on every request. Bounded like the path cache.
        """
        ids = tuple(map(id, rules))
        plan = self._by_rules.get(ids)
        if plan is None:
            if len(self._by_rules) >= _PLAN_CACHE_SIZE:
                self._by_rules.clear()
            plan = self._by_rules[ids] = self._compile_plan(rules)
        return plan

    def _compile_plan(self, rules: tuple[Rule, ...]) -> Plan:
        groups: dict[tuple[Any, int], list[Limit]] = {}
        keys: dict[tuple[Any, int], Callable[[RequestInfo], str]] = {}
        for rule in rules:
            self._register(rule)
            slot = (self.config.key_of(rule), rule.cost)
            groups.setdefault(slot, []).extend(rule.limits)
            keys[slot] = self.key_function(rule)
        every = [limit for rule in rules for limit in rule.limits]
        compiled = tuple(Group(keys[s], tuple(limits), s[1]) for s, limits in groups.items())
        return Plan(rules, compiled, join_policies(every))

    def plan(self, method: str, path: str) -> Plan | None:
        """The plan for a request, or ``None`` when no rule applies.

        ``method`` in any case; ``path`` as the application routes on it (below its mount
        point), before normalisation.
        """
        cache_key = (method, path)
        plan = self._plans.get(cache_key, False)
        if plan is not False:
            return plan  # type: ignore[return-value]  # a Plan or None (False: not cached)
        normal = normalize_path(path)
        segments = split_path(normal)
        upper = method.upper()
        matched: list[Rule] = []
        for rule in self.rules:
            if rule.applies(upper, normal, segments):
                if rule.exempt:
                    break
                matched.append(rule)
        found = self.plan_for_rules(tuple(matched)) if matched else None
        if len(path) <= _CACHED_PATH_LENGTH:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[cache_key] = found
        return found

    def flow(self, plan: Plan, request: RequestInfo) -> Generator[Call, list[Decision], Outcome]:
        """The decision logic: yields backend calls, receives their decisions.

        A client the remote backend rejected a moment ago is answered from the rejection
        cache, with no call at all. Otherwise: one group, one ``decide``; several groups, one
        atomic ``decide_each`` where the backend offers it across keys, else every group
        checked without consuming, then consumed if all admit.
        """
        calls = [(g.key(request), g.limits, g.cost) for g in plan.groups]
        rejected = self.rejections
        if rejected:  # not empty: someone was rejected lately
            cached = rejected.lookup(calls)
            if cached is not None:
                return self.outcome(plan, request, [cached])
        if len(calls) == 1:
            key, limits, cost = calls[0]
            decisions = yield ("decide", (key, limits, cost, True))
        elif self.atomic_each:
            items = [(key, limit, cost) for key, limits, cost in calls for limit in limits]
            decisions = yield ("decide_each", (items, True))
        else:
            decisions = []
            for key, limits, cost in calls:  # dry run first: reject without consuming
                decisions.extend((yield ("decide", (key, limits, cost, False))))
            if all(decisions):
                decisions = []
                for key, limits, cost in calls:
                    decisions.extend((yield ("decide", (key, limits, cost, True))))
        outcome = self.outcome(plan, request, decisions)
        if rejected is not None and outcome.decision is not None and not outcome.decision:
            self._remember(calls, outcome.decision)
        return outcome

    def _remember(self, calls: list[GroupCall], decision: Decision) -> None:
        """Put a backend's rejection in the rejection cache, under the rejecting limit's key."""
        assert self.rejections is not None
        policy = decision.policy.id
        for key, limits, cost in calls:
            if any(limit.id == policy for limit in limits):
                self.rejections.remember(key, decision, cost)
                return

    def failed(self, request: RequestInfo) -> Outcome:
        """The ``on_error`` outcome when the backend failed. Logged by the backend (once per
        outage, when its circuit opens), not here: one line per request would be a storm."""
        if self.deny_on_error and not self.shadow:
            reply = service_unavailable()
            if request.method == "HEAD":
                reply = without_body(reply)
            return Outcome(reply, [], 0.0, None, "error_denied")
        return Outcome(None, [], 0.0, None, "error_allowed")

    def local_call(self, name: str, args: tuple[Any, ...]) -> Call:
        """The call ``name(*args)`` with every limit replaced by its local share."""
        share = self._local_limits
        if name == "decide":
            key, limits, cost, consume = args
            return name, (key, tuple(share.get(lim, lim) for lim in limits), cost, consume)
        items, consume = args
        return name, ([(k, share.get(lim, lim), c) for k, lim, c in items], consume)

    def outcome(self, plan: Plan, request: RequestInfo, decisions: list[Decision]) -> Outcome:
        """Turn the decisions of a plan into what the adapter does."""
        decision = decisions[0] if len(decisions) == 1 else combine(decisions)
        headers = render(self.headers_mode, decision, plan.policies, self._labels)
        if decision.allowed:
            if self.shadow or not decision.delay:
                return Outcome(None, headers, 0.0, decision, "allowed")
            return Outcome(None, headers, decision.delay, decision, "delayed")
        if self.shadow:
            self._log_shadow(request, decision, plan)
            return Outcome(None, headers, 0.0, decision, "shadow_rejected")
        if self.on_reject is not None:
            reply = self.on_reject(request, decision)
            reply = Reply(reply.status, [*reply.headers, *headers], reply.body)
        else:
            reply = too_many_requests(decision, headers)
        if request.method == "HEAD":
            reply = without_body(reply)
        return Outcome(reply, [], 0.0, decision, "rejected")

    def _log_shadow(self, request: RequestInfo, decision: Decision, plan: Plan) -> None:
        """Log a shadow-mode rejection at most once per limit and client per window."""
        group = next(g for g in plan.groups if decision.policy in g.limits)
        client = group.key(request)
        seen = self._shadow_logged
        now = time.monotonic()
        slot = (decision.policy.id, client)
        if seen.get(slot, 0.0) > now:
            return
        if len(seen) >= _SHADOW_LOG_SIZE:
            seen.clear()
        seen[slot] = now + max(decision.reset_after, 1.0)
        log.info(
            "shadow mode: would reject %s %s for %s (limit %s)",
            request.method,
            request.path,
            client,
            decision.policy.name,
        )

    def run(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Decide ``request`` with the blocking backend API."""
        start = time.perf_counter() if self.observer is not None else 0.0
        flow, local = self.flow(plan, request), False
        try:
            call = next(flow)  # StopIteration at once: answered without the backend
            while True:
                name, args = call
                try:
                    result = getattr(self.backend, name)(*args)
                except BackendError:
                    if self.local is None:
                        flow.close()
                        outcome = self.failed(request)
                        break
                    name, args = self.local_call(name, args)
                    result, local = getattr(self.local, name)(*args), True
                call = flow.send(result)
        except StopIteration as stop:
            outcome = stop.value
        return self._finish(plan, request, outcome, local, start)

    async def arun(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Decide ``request`` with the asyncio backend API (``await backend.a<name>``)."""
        start = time.perf_counter() if self.observer is not None else 0.0
        flow, local = self.flow(plan, request), False
        try:
            call = next(flow)  # StopIteration at once: answered without the backend
            while True:
                name, args = call
                try:
                    result = await getattr(self.backend, "a" + name)(*args)
                except BackendError:
                    if self.local is None:
                        flow.close()
                        outcome = self.failed(request)
                        break
                    name, args = self.local_call(name, args)
                    result, local = getattr(self.local, name)(*args), True
                call = flow.send(result)
        except StopIteration as stop:
            outcome = stop.value
        return self._finish(plan, request, outcome, local, start)

    def _finish(
        self, plan: Plan, request: RequestInfo, outcome: Outcome, local: bool, start: float
    ) -> Outcome:
        if local and outcome.kind in ("allowed", "delayed"):
            outcome = outcome._replace(kind="local")
        observer = self.observer
        if observer is not None:
            observer.observe(plan, request, outcome, time.perf_counter() - start)
        return outcome

    def describe(self) -> Sequence[dict[str, Any]]:
        """The rules as plain summaries (``ratelimit check``, the status page)."""
        return [rule.describe() for rule in self.rules]

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

A backend built from the config's URL is checked once, when the engine is built
(:func:`check_backend`): a Redis or Valkey server that cannot run Lua scripts raises
:class:`~ratelimit.ConfigError` there, so the app does not start; a server that does not
answer yet does not stop it (decisions take the ``on_error`` path until it answers).

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
import uuid
from collections.abc import Callable, Generator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from ratelimit.backends import MemoryBackend, backend_from_url
from ratelimit.backends.base import Backend
from ratelimit.decision import Decision, combine
from ratelimit.errors import BackendError, ConfigError
from ratelimit.http.config import Config, load_config
from ratelimit.http.headers import (
    HeaderPairs,
    Reply,
    forbidden,
    join_policies,
    label_of,
    render,
    service_unavailable,
    too_many_requests,
    without_body,
)
from ratelimit.http.keys import ClientIdentity, RequestInfo, compile_key
from ratelimit.http.policies import counts, in_networks
from ratelimit.http.rejections import RejectionCache
from ratelimit.http.reload import ConfigWatch
from ratelimit.http.rules import Rule, normalize_path, split_path
from ratelimit.limits import Limit
from ratelimit.rate import Rate

if TYPE_CHECKING:
    from ratelimit.http.status import StatusPage
    from ratelimit.metrics.observer import Observer
    from ratelimit.metrics.top import TopList

__all__ = [
    "OUTCOME_KINDS",
    "Call",
    "Engine",
    "Outcome",
    "Pending",
    "Plan",
    "RejectHandler",
    "check_backend",
]

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
    """Limits checked in one backend call: same key function, same cost. A rule with
    policies (tiers, a cost function, count, ban, allow/deny, concurrency) is a group of its
    own, and ``rule`` is set: what it checks is resolved per request."""

    key: Callable[[RequestInfo], str]
    limits: tuple[Limit, ...]
    cost: int | Callable[[RequestInfo], int]
    rule: Rule | None = None


class Plan(NamedTuple):
    """What applies to a (method, path): the matching rules, grouped for the backend."""

    rules: tuple[Rule, ...]
    groups: tuple[Group, ...]
    policies: bytes
    #: Whether some group has policies (resolved per request: see :meth:`Engine.flow`).
    dynamic: bool = False


class Pending(NamedTuple):
    """What is left to do once the response is known (:meth:`Engine.settle`)."""

    #: ``count`` rules: (key, limits, cost, rule), counted if the status matches.
    counted: tuple[tuple[str, tuple[Limit, ...], int, Rule], ...]
    #: Concurrency leases to give back: (key, limit, token).
    leases: tuple[tuple[str, Limit, str], ...]


class Outcome(NamedTuple):
    """What the adapter does with a request.

    ``reply`` set: send it instead of calling the application. Otherwise call the
    application after waiting ``delay`` seconds, adding ``headers`` to its response, and
    when ``pending`` is set, call :meth:`Engine.settle` (or ``asettle``) with the response
    status once the response is over (sent, abandoned or failed). ``kind`` is one of
    :data:`OUTCOME_KINDS`.
    """

    reply: Reply | None
    headers: HeaderPairs
    delay: float
    decision: Decision | None
    kind: str = "allowed"
    pending: Pending | None = None


_PASS = Outcome(None, [], 0.0, None, "allowed")


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
        cfg = load_config(config)
        if backend is None:
            backend = backend_from_url(cfg.backend, timeout=cfg.timeout)
            check_backend(backend)
        self.backend: Backend = backend
        self.on_reject = on_reject
        #: Several groups go in one atomic ``decide_each`` call where the backend can join
        #: different clients' keys (see the module docstring).
        self.atomic_each = hasattr(self.backend, "decide_each") and getattr(
            self.backend, "atomic_across_keys", True
        )
        #: ``on_error = "local"``: the process-local stand-in while the backend fails.
        self.local: MemoryBackend | None = MemoryBackend() if cfg.on_error == "local" else None
        #: Rejections of a remote backend answered locally while they hold (see
        #: :mod:`ratelimit.http.rejections`); none for the memory backend, which answers
        #: as fast itself. Paid for by the "Redis, every request rejected" variant of
        #: ``python -m benchmarks.http``.
        self.rejections: RejectionCache | None = (
            None if isinstance(self.backend, MemoryBackend) else RejectionCache()
        )
        self._shadow_logged: dict[tuple[str, str], float] = {}
        self._apply(cfg)
        #: ``reload = true``: the file watched, and when to look at it next.
        self._watch: ConfigWatch | None = None
        if cfg.reload:
            self._watch = ConfigWatch(cfg.source, self.reload)
        #: Records every decided request (metrics, status page); ``None``: nothing runs.
        self.observer: Observer | None = None
        #: The status page (``[metrics] status_path``), answered by the adapters; ``None``: off.
        self.status: StatusPage | None = None
        if cfg.metrics_enabled():
            from ratelimit.metrics import build_observer

            self.observer = build_observer(self)

    def _apply(self, cfg: Config) -> None:
        """Take ``cfg``'s rules and settings (at start-up, and on each reload). Each piece is
        one attribute assignment, so a request in flight sees the old or the new rules."""
        self._fraction = cfg.local_fraction
        self._default_key = cfg.key
        self._keys: dict[Any, Callable[[RequestInfo], str]] = {}
        self._labels: dict[str, bytes] = {}
        self._local_limits: dict[Limit, Limit] = {}
        self._gates: dict[str, tuple[Limit, Limit]] = {}
        #: The ids of the ban gates (a rejection by one is a ban, not a rate).
        self._gate_ids: set[str] = set()
        self.identity = ClientIdentity(cfg.trusted_proxies, cfg.ipv6_prefix, cfg.proxy_header)
        self.headers_mode = cfg.headers
        self.shadow = cfg.shadow
        self.deny_on_error = cfg.on_error == "deny"
        #: Top-level allow/deny lists: every request is screened (never cached away).
        self.screening = bool(cfg.allow or cfg.deny)
        for rule in cfg.rules:
            self._register(rule)
        self._plans: dict[tuple[str, str], Plan | None] = {}
        self._by_rules: dict[tuple[int, ...], Plan] = {}
        self.rules = cfg.rules
        #: Whether some rule identifies clients by user (async adapters then load the user).
        self.uses_user = any(cfg.key_of(rule) == "user" for rule in cfg.rules)
        self.config: Config = cfg
        self.loaded_at = time.time()

    def reload(self) -> bool:
        """Read the config file again and take its rules (``reload = true`` calls this when
        the file changes). A file that does not load keeps the current rules; the error is
        logged once per change of the file. Counters of rules that did not change survive,
        since they are keyed by rule name and limit. Returns whether new rules were taken."""
        source = self.config.source
        try:
            cfg = load_config(source)
        except ConfigError as exc:
            log.error("config reload failed, keeping the rules loaded before: %s", exc)
            return False
        if cfg.backend != self.config.backend or cfg.on_error != self.config.on_error:
            log.warning(
                "config reload: backend and on_error changes need a restart; the new rules "
                "are taken with the backend %s",
                self.config.backend,
            )
            cfg = replace(cfg, backend=self.config.backend, on_error=self.config.on_error)
        self._apply(cfg)
        log.info("config reloaded from %s: %d rules", source, len(cfg.rules))
        return True

    def _register(self, rule: Rule) -> None:
        limits = list(rule.limits)
        for tier_limits in rule.tiers.values():
            limits.extend(tier_limits or ())
        if rule.ban is not None:
            gate, strikes = rule.ban.gate(rule.name), rule.ban.strikes(rule.name)
            self._gates[rule.name] = (gate, strikes)
            self._gate_ids.add(gate.id)
            self._labels[gate.id] = label_of(replace(gate, name=rule.name))
            limits.append(strikes)
        for limit in limits:
            self._labels.setdefault(limit.id, label_of(limit))
            if self.local is not None and limit not in self._local_limits:
                self._local_limits[limit] = scaled(limit, self._fraction)

    def key_function(self, rule: Rule) -> Callable[[RequestInfo], str]:
        """The compiled ``request -> counter key`` function of ``rule``."""
        spec = self._default_key if rule.key is None else rule.key
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
        groups: dict[Any, list[Limit]] = {}
        heads: dict[Any, tuple[Callable[[RequestInfo], str], Any, Rule | None]] = {}
        for rule in rules:
            self._register(rule)
            key = self.key_function(rule)
            if rule.has_policies:
                slot: Any = ("rule", rule.name)
                heads[slot] = (key, rule.cost, rule)
            else:
                slot = (self._default_key if rule.key is None else rule.key, rule.cost)
                heads[slot] = (key, rule.cost, None)
            groups.setdefault(slot, []).extend(rule.limits)
        compiled = tuple(
            Group(heads[s][0], tuple(limits), heads[s][1], heads[s][2])
            for s, limits in groups.items()
        )
        every = [limit for rule in rules for limit in rule.limits]
        units = [rule.quota_unit for rule in rules for _ in rule.limits]
        dynamic = any(group.rule is not None for group in compiled)
        return Plan(rules, compiled, join_policies(every, units), dynamic)

    def plan(self, method: str, path: str) -> Plan | None:
        """The plan for a request, or ``None`` when no rule applies.

        ``method`` in any case; ``path`` as the application routes on it (below its mount
        point), before normalisation.
        """
        watch = self._watch
        if watch is not None:
            watch.check()
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
        if found is None and self.screening:
            found = self.plan_for_rules(())  # no limits, but allow/deny still screen it
        if len(path) <= _CACHED_PATH_LENGTH:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[cache_key] = found
        return found

    # -- the decision ---------------------------------------------------------------------

    def flow(self, plan: Plan, request: RequestInfo) -> Generator[Call, Any, Outcome]:
        """The decision logic: yields backend calls, receives their results.

        1. Top-level and per-rule ``allow`` / ``deny`` lists; tiers, cost functions and
           exempt tiers pick what each rule checks for this request.
        2. A client the remote backend rejected a moment ago is answered from the rejection
           cache, with no call at all.
        3. Ban gates and ``count`` rules are checked in one dry run (nothing consumed: a
           ``count`` rule is counted after the response).
        4. Every other limit in one atomic call (``decide`` or ``decide_each``; on Redis
           Cluster, a dry run of every group, then each consumed if all admit).
        5. Concurrency leases are taken last (given back if a later one is refused), and
           given back by :meth:`settle` after the response.
        """
        if not plan.dynamic and not self.screening:  # no policies: just the limits
            calls = [(g.key(request), g.limits, g.cost) for g in plan.groups]
            rejected = self.rejections
            if rejected:
                cached = rejected.lookup(calls)  # type: ignore[arg-type]
                if cached is not None:
                    return self.outcome(plan.policies, request, [cached], plan)
            got = yield from self._decide(calls, True)  # type: ignore[arg-type]
            outcome = self.outcome(plan.policies, request, got, plan)
            if rejected is not None and outcome.kind == "rejected":
                self._remember(calls, outcome.decision)  # type: ignore[arg-type]
            return outcome
        return (yield from self._policy_flow(plan, request))

    def _policy_flow(self, plan: Plan, request: RequestInfo) -> Generator[Call, Any, Outcome]:
        """:meth:`flow` for a plan with policies (or allow/deny lists): steps 1 to 5."""
        client: str | None = None
        cfg = self.config
        if self.screening:
            client = self.identity.client_address(request)
            if cfg.deny and in_networks(client, cfg.deny):
                return self.denied(request)
            if cfg.allow and in_networks(client, cfg.allow):
                return _PASS
        calls: list[GroupCall] = []
        probes: list[GroupCall] = []
        counted: list[tuple[str, tuple[Limit, ...], int, Rule]] = []
        leases: list[tuple[str, Limit]] = []
        owners: dict[str, tuple[str, Rule]] = {}
        shown: list[Limit] | None = None
        for group in plan.groups:
            rule = group.rule
            if rule is None:
                calls.append((group.key(request), group.limits, group.cost))  # type: ignore[arg-type]
                continue
            if rule.deny or rule.allow:
                if client is None:
                    client = self.identity.client_address(request)
                if rule.deny and in_networks(client, rule.deny):
                    return self.denied(request)
                if rule.allow and in_networks(client, rule.allow):
                    shown = self._shown(plan, shown, group.limits, ())
                    continue
            limits = group.limits
            if rule.tier is not None:
                tier = rule.tier(request)
                if tier is not None and tier in rule.tiers:
                    chosen = rule.tiers[tier]
                    shown = self._shown(plan, shown, limits, chosen or ())
                    if chosen is None:
                        continue  # an exempt tier: this rule neither limits nor reports
                    limits = chosen
            cost = group.cost if isinstance(group.cost, int) else request_cost(group.cost, request)
            if cost == 0:
                continue  # weighs nothing: passes uncounted
            key = group.key(request)
            for limit in limits:
                owners[limit.id] = (key, rule)
            if rule.is_concurrency:
                leases.append((key, limits[0]))
                continue
            if rule.ban is not None:
                gate = self._gates[rule.name][0]
                probes.append((key, (gate,), 1))
                owners[gate.id] = (key, rule)
            if rule.count != "all":
                probes.append((key, limits, cost))
                counted.append((key, limits, cost, rule))
            else:
                calls.append((key, limits, cost))
        policies = (
            plan.policies
            if shown is None
            else join_policies(shown, [self._unit_of(limit, plan) for limit in shown])
        )
        rejected = self.rejections
        if rejected and not owners:  # bans must count every rejection: not cached then
            cached = rejected.lookup(calls)
            if cached is not None:
                return self.outcome(policies, request, [cached], plan)
        decisions: list[Decision] = []
        for batch, consume in ((probes, False), (calls, True)):
            if not batch:
                continue
            got = yield from self._decide(batch, consume)
            if not all(got):
                outcome = self.outcome(policies, request, got, plan)
                yield from self._after_rejection(outcome, owners)
                if rejected is not None and outcome.decision is not None and not owners:
                    self._remember(batch, outcome.decision)
                return outcome
            decisions.extend(d for d in got if d.policy.id not in self._gate_ids)
        tokens: list[tuple[str, Limit, str]] = []
        for key, limit in leases:
            token = uuid.uuid4().hex
            got_one: Decision = yield ("acquire", (key, limit, token))
            if not got_one:
                for held in tokens:
                    yield ("release", held)
                return self.outcome(policies, request, [got_one], plan)
            tokens.append((key, limit, token))
            decisions.append(got_one)
        if not decisions:
            return _PASS
        outcome = self.outcome(policies, request, decisions, plan)
        if counted or tokens:
            outcome = outcome._replace(pending=Pending(tuple(counted), tuple(tokens)))
        return outcome

    def _shown(
        self,
        plan: Plan,
        shown: list[Limit] | None,
        drop: Sequence[Limit],
        add: Sequence[Limit],
    ) -> list[Limit]:
        """The limits the ``RateLimit-Policy`` header lists, once a rule's tier changed them."""
        if shown is None:
            shown = [limit for rule in plan.rules for limit in rule.limits]
        dropped = {limit.id for limit in drop}
        return [limit for limit in shown if limit.id not in dropped] + list(add)

    @staticmethod
    def _unit_of(limit: Limit, plan: Plan) -> str:
        for rule in plan.rules:
            if limit.name is not None and (
                limit.name == rule.name or limit.name.startswith(rule.name + ".")
            ):
                return rule.quota_unit
        return "requests"

    def _decide(
        self, calls: list[GroupCall], consume: bool
    ) -> Generator[Call, Any, list[Decision]]:
        """One atomic decision over ``calls`` (see the module docstring for Cluster)."""
        if len(calls) == 1:
            key, limits, cost = calls[0]
            result: list[Decision] = yield ("decide", (key, limits, cost, consume))
            return result
        if self.atomic_each:
            items = [(key, limit, cost) for key, limits, cost in calls for limit in limits]
            result = yield ("decide_each", (items, consume))
            return result
        decisions: list[Decision] = []
        for key, limits, cost in calls:  # dry run first: reject without consuming
            decisions.extend((yield ("decide", (key, limits, cost, False))))
        if consume and all(decisions):
            decisions = []
            for key, limits, cost in calls:
                decisions.extend((yield ("decide", (key, limits, cost, True))))
        return decisions

    def _after_rejection(
        self, outcome: Outcome, owners: dict[str, tuple[str, Rule]]
    ) -> Generator[Call, Any, None]:
        """A rejection by a rule with a ban is a strike; the ``after``-th bans the client."""
        decision = outcome.decision
        if decision is None or decision.policy.id not in owners:
            return
        key, rule = owners[decision.policy.id]
        if rule.ban is None or decision.policy.id in self._gate_ids:
            return
        gate, strikes = self._gates[rule.name]
        struck: list[Decision] = yield ("decide", (key, (strikes,), 1, True))
        if struck[0].allowed and struck[0].remaining > 0:
            return
        yield ("decide", (key, (gate,), 1, True))  # the bucket's one token: banned
        yield ("reset", (key, (strikes,)))
        log.info("ban: %s banned by rule %s for %gs", key, rule.name, rule.ban.duration)

    def _remember(self, calls: list[GroupCall], decision: Decision) -> None:
        """Put a backend's rejection in the rejection cache, under the rejecting limit's key."""
        assert self.rejections is not None
        policy = decision.policy.id
        for key, limits, cost in calls:
            if any(limit.id == policy for limit in limits):
                self.rejections.remember(key, decision, cost)
                return

    def denied(self, request: RequestInfo) -> Outcome:
        """The 403 outcome for a client in a ``deny`` list."""
        reply = forbidden()
        if request.method == "HEAD":
            reply = without_body(reply)
        return Outcome(reply, [], 0.0, None, "denied")

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
        if name == "decide_each":
            items, consume = args
            return name, ([(k, share.get(lim, lim), c) for k, lim, c in items], consume)
        if name == "reset":
            key, limits = args
            return name, (key, [share.get(lim, lim) for lim in limits])
        key, limit, token = args  # acquire / release
        return name, (key, share.get(limit, limit), token)

    def outcome(
        self,
        policies: bytes | Plan,
        request: RequestInfo,
        decisions: list[Decision],
        plan: Plan | None = None,
    ) -> Outcome:
        """Turn the decisions of a plan into what the adapter does (``policies``: the
        ``RateLimit-Policy`` value, or the plan whose value it is)."""
        if isinstance(policies, Plan):
            plan, policies = policies, policies.policies
        decision = decisions[0] if len(decisions) == 1 else combine(decisions)
        headers = render(self.headers_mode, decision, policies, self._labels)
        if decision.allowed:
            if self.shadow or not decision.delay:
                return Outcome(None, headers, 0.0, decision, "allowed")
            return Outcome(None, headers, decision.delay, decision, "delayed")
        kind = "banned" if decision.policy.id in self._gate_ids else "rejected"
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
        return Outcome(reply, [], 0.0, decision, kind)

    def _log_shadow(self, request: RequestInfo, decision: Decision, plan: Plan | None) -> None:
        """Log a shadow-mode rejection at most once per limit and client per window."""
        client = "?"
        if plan is not None:
            for group in plan.groups:
                if any(limit.id == decision.policy.id for limit in group.limits):
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

    # -- after the response -----------------------------------------------------------------

    def settle_flow(self, pending: Pending, status: int) -> Generator[Call, Any, None]:
        """Count the ``count`` rules whose statuses match ``status``, and give back the
        concurrency leases. The count always lands: a limit already full is filled to its
        capacity (counters never go above it), so concurrent requests can overshoot a
        ``count`` limit by at most the number in flight."""
        for key, limits, cost, rule in pending.counted:
            if not counts(rule.count, status):
                continue
            for limit in limits:
                got: list[Decision] = yield ("decide", (key, (limit,), cost, True))
                if not got[0].allowed and got[0].remaining > 0:
                    yield ("decide", (key, (limit,), got[0].remaining, True))
        for lease in pending.leases:
            yield ("release", lease)

    def settle(self, pending: Pending, status: int) -> None:
        """After the response (blocking drivers): see :meth:`settle_flow`."""
        self._drive(self.settle_flow(pending, status))

    async def asettle(self, pending: Pending, status: int) -> None:
        """After the response (asyncio): see :meth:`settle_flow`."""
        await self._adrive(self.settle_flow(pending, status))

    # -- the two drivers ----------------------------------------------------------------------

    def _drive(self, flow: Generator[Call, Any, Any]) -> tuple[Any, bool, bool]:
        """Run ``flow`` on the blocking backend API: (its value, whether it decided locally,
        whether the backend failed without a local stand-in)."""
        local = False
        try:
            call = next(flow)  # StopIteration at once: answered without the backend
            while True:
                name, args = call
                try:
                    result = getattr(self.backend, name)(*args)
                except BackendError:
                    if self.local is None:
                        flow.close()
                        return None, local, True
                    name, args = self.local_call(name, args)
                    result, local = getattr(self.local, name)(*args), True
                call = flow.send(result)
        except StopIteration as stop:
            return stop.value, local, False

    async def _adrive(self, flow: Generator[Call, Any, Any]) -> tuple[Any, bool, bool]:
        """:meth:`_drive` on the asyncio backend API (``await backend.a<name>``)."""
        local = False
        try:
            call = next(flow)
            while True:
                name, args = call
                try:
                    result = await getattr(self.backend, "a" + name)(*args)
                except BackendError:
                    if self.local is None:
                        flow.close()
                        return None, local, True
                    name, args = self.local_call(name, args)
                    result, local = getattr(self.local, name)(*args), True
                call = flow.send(result)
        except StopIteration as stop:
            return stop.value, local, False

    def run(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Decide ``request`` with the blocking backend API."""
        start = time.perf_counter() if self.observer is not None else 0.0
        outcome, local, failed = self._drive(self.flow(plan, request))
        return self._finish(plan, request, outcome, local, failed, start)

    async def arun(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Decide ``request`` with the asyncio backend API."""
        start = time.perf_counter() if self.observer is not None else 0.0
        outcome, local, failed = await self._adrive(self.flow(plan, request))
        return self._finish(plan, request, outcome, local, failed, start)

    def _finish(
        self,
        plan: Plan,
        request: RequestInfo,
        outcome: Outcome | None,
        local: bool,
        failed: bool,
        start: float,
    ) -> Outcome:
        if failed or outcome is None:
            outcome = self.failed(request)
        elif local and outcome.kind in ("allowed", "delayed"):
            outcome = outcome._replace(kind="local")
        observer = self.observer
        if observer is not None:
            observer.observe(plan, request, outcome, time.perf_counter() - start)
        return outcome

    def describe(self) -> Sequence[dict[str, Any]]:
        """The rules as plain summaries (``ratelimit check``, the status page)."""
        return [rule.describe() for rule in self.rules]

    def top(self, rule: str | None = None, n: int = 10) -> TopList:
        """The client identities rejected most over the last 15 minutes, as
        ``(rule_name, identity, rejections)`` tuples, most first (of ``rule`` only, if given).

        With a Redis backend, every worker's rejections (kept in Redis); otherwise this
        process's, recorded while some ``[metrics]`` option is on (else empty).
        """
        from ratelimit.metrics.observer import engine_top

        return engine_top(self, rule, n)

    async def atop(self, rule: str | None = None, n: int = 10) -> TopList:
        """:meth:`top` for asyncio code (the asyncio Redis client)."""
        from ratelimit.metrics.observer import engine_atop

        return await engine_atop(self, rule, n)


def check_backend(backend: Backend) -> None:
    """Run ``backend.check()`` if it has one (Redis: it answers and runs Lua scripts).

    A :class:`~ratelimit.ConfigError` (a server that cannot run Lua scripts) propagates: the
    middleware cannot work with that backend. A :class:`~ratelimit.BackendError` (the server
    does not answer yet) is logged at INFO and passes: an app starts while its Redis is down.
    """
    check = getattr(backend, "check", None)
    if check is None:
        return
    try:
        check()
    except BackendError as exc:
        log.info("backend not checked at start-up (%s); decisions will tell", exc)


def request_cost(func: Callable[[RequestInfo], int], request: RequestInfo) -> int:
    """The cost a rule's cost function gives ``request``: a whole number ≥ 0. Anything else
    is a bug in the function, raised as such (not an outage)."""
    cost = func(request)
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise TypeError(f"the cost function {func!r} returned {cost!r}, not a whole number ≥ 0")
    return cost

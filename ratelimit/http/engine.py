"""The request-handling engine shared by every adapter (ASGI, WSGI, Django).

The data path, top to bottom::

    method, path ──► plan (the matching rules, compiled and cached)
    request      ──► counter key(s)
                 ──► ONE backend decide() with every limit of every matching rule
                 ──► Outcome: pass (+ headers, + shaping delay) | 429 | 503

The logic is written once, as a generator that yields the backend calls it needs
(:meth:`Engine.flow`); :meth:`Engine.run` drives it with ``backend.decide`` and
:meth:`Engine.arun` with ``await backend.adecide``. That is the only difference between the
sync and async paths; the delay wait is left to the adapter (``time.sleep`` or
``asyncio.sleep``). For the usual plan, one backend call, both drivers skip the generator and
make that call directly before the shared :meth:`Engine.outcome` (a few microseconds saved
per request).

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
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from ratelimit.backends import MemoryBackend, backend_from_url
from ratelimit.backends.base import Backend
from ratelimit.decision import Decision, combine
from ratelimit.http.config import Config, load_config
from ratelimit.http.headers import (
    HeaderPairs,
    Reply,
    join_policies,
    label_of,
    render,
    service_unavailable,
    too_many_requests,
)
from ratelimit.http.keys import ClientIdentity, RequestInfo, compile_key
from ratelimit.http.rules import Rule, normalize_path
from ratelimit.limits import Limit

__all__ = ["Call", "Engine", "Outcome", "Plan", "RejectHandler"]

log = logging.getLogger("ratelimit")

#: One backend call: the method name (``decide`` or ``decide_each``; the async drivers call
#: the ``a``-prefixed twin) and its arguments.
Call = tuple[str, tuple[Any, ...]]
#: An overridable 429 handler: ``(request, decision) -> Reply``. The rate-limit headers are
#: added to its reply.
RejectHandler = Callable[[RequestInfo, Decision], Reply]

_PLAN_CACHE_SIZE = 4096


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
    single: Group | None


class Outcome(NamedTuple):
    """What the adapter does with a request.

    ``reply`` set: send it instead of calling the application. Otherwise call the
    application after waiting ``delay`` seconds, adding ``headers`` to its response.
    """

    reply: Reply | None
    headers: HeaderPairs
    delay: float
    decision: Decision | None


_PASS = Outcome(None, [], 0.0, None)


class Engine:
    """Rules + backend → outcomes. One per middleware instance; safe to share.

    Args:
        config: a :class:`Config`, a TOML path or a dict (see :func:`load_config`).
        backend: a ready backend object; default: built from ``config.backend``.
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
        self.backend: Backend = (
            backend if backend is not None else backend_from_url(self.config.backend)
        )
        self.on_reject = on_reject
        #: Several groups go in one atomic ``decide_each`` call where the backend can join
        #: different clients' keys (see the module docstring).
        self.atomic_each = hasattr(self.backend, "decide_each") and getattr(
            self.backend, "atomic_across_keys", True
        )
        #: The backend answers at once (memory): async adapters may call :meth:`run` directly
        #: instead of awaiting :meth:`arun`, which saves two coroutines per request.
        self.inline = type(self.backend) is MemoryBackend
        cfg = self.config
        self.identity = ClientIdentity(cfg.trusted_proxies, cfg.ipv6_prefix, cfg.proxy_header)
        self.headers_mode = cfg.headers
        self.shadow = cfg.shadow
        self.deny_on_error = cfg.on_error == "deny"
        self._keys: dict[Any, Callable[[RequestInfo], str]] = {}
        self._labels: dict[str, bytes] = {}
        self._plans: dict[tuple[str, str], Plan | None] = {}
        self._by_rules: dict[tuple[int, ...], Plan] = {}  # by rule identity: cheap to hash
        self.rules = cfg.rules
        #: Whether some rule identifies clients by user (async adapters then load the user).
        self.uses_user = any(cfg.key_of(rule) == "user" for rule in cfg.rules)
        for rule in self.rules:
            self._register(rule)

    def _register(self, rule: Rule) -> None:
        for limit in rule.limits:
            self._labels[limit.id] = label_of(limit)

    def key_function(self, rule: Rule) -> Callable[[RequestInfo], str]:
        """The compiled ``request -> counter key`` function of ``rule``."""
        spec = self.config.key_of(rule)
        func = self._keys.get(spec)
        if func is None:
            func = self._keys[spec] = compile_key(spec, self.identity)
        return func

    def plan_for_rules(self, rules: tuple[Rule, ...]) -> Plan:
        """The (cached) plan checking ``rules`` together."""
        ids = tuple(map(id, rules))
        plan = self._by_rules.get(ids)
        if plan is None:
            groups: dict[tuple[Any, int], list[Limit]] = {}
            keys: dict[tuple[Any, int], Callable[[RequestInfo], str]] = {}
            for rule in rules:
                self._register(rule)
                spec = self.config.key_of(rule)
                slot = (spec, rule.cost)
                groups.setdefault(slot, []).extend(rule.limits)
                keys[slot] = self.key_function(rule)
            every = [limit for rule in rules for limit in rule.limits]
            compiled = tuple(Group(keys[s], tuple(limits), s[1]) for s, limits in groups.items())
            plan = Plan(
                rules,
                compiled,
                join_policies(every),
                compiled[0] if len(compiled) == 1 else None,
            )
            self._by_rules[ids] = plan  # the plan holds the rules: their ids stay valid
        return plan

    def plan(self, method: str, path: str) -> Plan | None:
        """The plan for a request, or ``None`` when no rule applies (cached per path)."""
        cache_key = (method, path)
        try:
            return self._plans[cache_key]
        except KeyError:
            pass
        normal = normalize_path(path)
        matched: list[Rule] = []
        for rule in self.rules:
            if rule.matches(method, normal):
                if rule.exempt:
                    break
                matched.append(rule)
        plan = self.plan_for_rules(tuple(matched)) if matched else None
        if len(self._plans) >= _PLAN_CACHE_SIZE:
            self._plans.clear()
        self._plans[cache_key] = plan
        return plan

    def flow(self, plan: Plan, request: RequestInfo) -> Generator[Call, list[Decision], Outcome]:
        """The decision logic: yields backend calls, receives their decisions.

        One group: one ``decide``. Several groups: one atomic ``decide_each`` where the backend
        offers it across keys, else every group checked without consuming, then consumed if
        all admit. A backend failure is thrown into the generator at the ``yield``; it answers
        with the ``on_error`` mode. (:meth:`run` and :meth:`arun` take a shortcut for the usual
        one-group plan that does exactly what this does for it.)
        """
        try:
            if len(plan.groups) == 1:
                group = plan.groups[0]
                args = (group.key(request), group.limits, group.cost, True)
                decisions = yield ("decide", args)
            elif self.atomic_each:
                decisions = yield ("decide_each", (self.items(plan, request), True))
            else:
                calls = [(g.key(request), g.limits, g.cost) for g in plan.groups]
                decisions = []
                for key, limits, cost in calls:  # dry run first: reject without consuming
                    decisions.extend((yield ("decide", (key, limits, cost, False))))
                if all(decisions):
                    decisions = []
                    for key, limits, cost in calls:
                        decisions.extend((yield ("decide", (key, limits, cost, True))))
        except Exception:
            return self.failed(request)
        return self.outcome(plan, request, decisions)

    @staticmethod
    def items(plan: Plan, request: RequestInfo) -> list[tuple[str, Limit, int]]:
        """Every limit of ``plan`` with the key and cost its group gives it (``decide_each``)."""
        return [(g.key(request), limit, g.cost) for g in plan.groups for limit in g.limits]

    def failed(self, request: RequestInfo) -> Outcome:
        """The ``on_error`` outcome when the backend failed (logged with its traceback)."""
        log.warning("rate limit backend failed for %s", request.path, exc_info=True)
        if self.deny_on_error and not self.shadow:
            return Outcome(service_unavailable(), [], 0.0, None)
        return _PASS

    def outcome(self, plan: Plan, request: RequestInfo, decisions: list[Decision]) -> Outcome:
        """Turn the decisions of a plan into what the adapter does."""
        decision = decisions[0] if len(decisions) == 1 else combine(decisions)
        headers = render(self.headers_mode, decision, plan.policies, self._labels)
        if decision.allowed:
            return Outcome(None, headers, 0.0 if self.shadow else decision.delay, decision)
        if self.shadow:
            log.info(
                "shadow mode: would reject %s %s (limit %s)",
                request.method,
                request.path,
                decision.policy.name,
            )
            return Outcome(None, headers, 0.0, decision)
        if self.on_reject is not None:
            reply = self.on_reject(request, decision)
            return Outcome(
                Reply(reply.status, [*reply.headers, *headers], reply.body), [], 0.0, decision
            )
        return Outcome(too_many_requests(decision, headers), [], 0.0, decision)

    def run(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Drive :meth:`flow` with the blocking backend API."""
        group = plan.single
        if group is not None:
            key = group.key(request)
            try:
                decisions = self.backend.decide(key, group.limits, group.cost, True)
            except Exception:  # any backend failure goes to on_error
                return self.failed(request)
            return self.outcome(plan, request, decisions)
        flow = self.flow(plan, request)
        backend = self.backend
        try:
            name, args = next(flow)
            while True:
                try:
                    result = getattr(backend, name)(*args)
                except Exception as exc:  # any backend failure goes to on_error
                    name, args = flow.throw(exc)
                else:
                    name, args = flow.send(result)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome

    async def arun(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Drive :meth:`flow` with the asyncio backend API."""
        group = plan.single
        if group is not None:
            key = group.key(request)
            try:
                decisions = await self.backend.adecide(key, group.limits, group.cost, True)
            except Exception:  # any backend failure goes to on_error
                return self.failed(request)
            return self.outcome(plan, request, decisions)
        flow = self.flow(plan, request)
        backend = self.backend
        try:
            name, args = next(flow)
            while True:
                try:
                    result = await getattr(backend, "a" + name)(*args)
                except Exception as exc:  # any backend failure goes to on_error
                    name, args = flow.throw(exc)
                else:
                    name, args = flow.send(result)
        except StopIteration as stop:
            outcome: Outcome = stop.value
            return outcome

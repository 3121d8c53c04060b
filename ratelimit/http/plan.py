"""What applies to a request: the matching rules (:class:`Planner`), grouped into the calls
a decision makes (:class:`Plan`), and the limits registered with them (:class:`LimitBook`).

Matching rules that identify clients the same way and share a cost are one group, checked in
one ``decide`` call; a rule with policies (tiers, a cost function, count, ban, allow/deny,
concurrency, an ``async def`` key) is a group of its own, resolved per request by the flow.
Plans are cached by (method, path) for paths up to ``CACHED_PATH_LENGTH`` characters, at most
``PLAN_CACHE_SIZE`` of them: what a client can put in the cache is bounded, and longer paths —
which real routes rarely have — are matched afresh. Paid for by ``python -m
benchmarks.http`` (matching the example config's rules on every request costs more than the
dict lookup).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

from ratelimit.http.headers import join_policies, label_of
from ratelimit.http.keys import ClientIdentity, KeySpec, RequestInfo, compile_key, is_async_callable
from ratelimit.http.rules import Rule, normalize_path, split_path
from ratelimit.limits import Limit
from ratelimit.rate import Rate

__all__ = ["CACHED_PATH_LENGTH", "PLAN_CACHE_SIZE", "Group", "LimitBook", "Plan", "Planner"]

PLAN_CACHE_SIZE = 4096
CACHED_PATH_LENGTH = 256


class Group(NamedTuple):
    """Limits checked in one backend call: same key function, same cost. A rule with
    policies is a group of its own, and ``rule`` is set: what it checks is resolved per
    request."""

    key: Callable[[RequestInfo], str]
    limits: tuple[Limit, ...]
    cost: int | Callable[[RequestInfo], int]
    rule: Rule | None = None


class Plan(NamedTuple):
    """What applies to a (method, path): the matching rules, grouped for the backend."""

    rules: tuple[Rule, ...]
    groups: tuple[Group, ...]
    policies: bytes
    #: Whether some group has policies (resolved per request: see :mod:`ratelimit.http.flow`).
    dynamic: bool = False

    def listed(self, shown: Sequence[Limit]) -> bytes:
        """The ``RateLimit-Policy`` value listing ``shown`` (once tiers changed the limits)."""
        return join_policies(shown, [self.unit_of(limit) for limit in shown])

    def unit_of(self, limit: Limit) -> str:
        """The quota unit (``qu``) of the rule ``limit`` belongs to."""
        for rule in self.rules:
            if limit.name is not None and (
                limit.name == rule.name or limit.name.startswith(rule.name + ".")
            ):
                return rule.quota_unit
        return "requests"


def scaled(limit: Limit, fraction: float) -> Limit:
    """``limit`` with its limit (and burst) multiplied by ``fraction``, at least 1 each: the
    share of one process when ``on_error = "local"`` decides without the shared backend."""
    if fraction == 1.0:
        return limit
    rate = Rate(max(1, int(limit.rate.limit * fraction)), limit.rate.period)
    burst = None if limit.burst is None else max(1, int(limit.burst * fraction))
    return replace(limit, rate=rate, burst=burst)


class LimitBook:
    """Every limit the rules can check, registered as plans are made: its header label, its
    local share (``on_error = "local"``) and, for bans, the gate and strikes of each rule."""

    __slots__ = ("fraction", "gate_ids", "gates", "labels", "local")

    def __init__(self, local_fraction: float | None) -> None:
        self.fraction = local_fraction
        self.labels: dict[str, bytes] = {}
        #: Each limit's stand-in for ``on_error = "local"`` (empty without it).
        self.local: dict[Limit, Limit] = {}
        #: rule name → (gate, strikes) of its ban.
        self.gates: dict[str, tuple[Limit, Limit]] = {}
        #: The ids of the ban gates (a rejection by one is a ban, not a rate).
        self.gate_ids: set[str] = set()

    def register(self, rule: Rule) -> None:
        """Register ``rule``'s limits, its tiers' and its ban's."""
        limits = list(rule.limits)
        for tier_limits in rule.tiers.values():
            limits.extend(tier_limits or ())
        if rule.ban is not None:
            gate, strikes = rule.ban.gate(rule.name), rule.ban.strikes(rule.name)
            self.gates[rule.name] = (gate, strikes)
            self.gate_ids.add(gate.id)
            self.labels[gate.id] = label_of(replace(gate, name=rule.name))
            limits.append(strikes)
        for limit in limits:
            self.labels.setdefault(limit.id, label_of(limit))
            if self.fraction is not None and limit not in self.local:
                self.local[limit] = scaled(limit, self.fraction)


class Planner:
    """Rules → plans, cached (see the module docstring)."""

    __slots__ = (
        "_by_rules",
        "_keys",
        "_plans",
        "book",
        "default_key",
        "identity",
        "rules",
        "screening",
    )

    def __init__(
        self,
        rules: Sequence[Rule],
        default_key: KeySpec,
        identity: ClientIdentity,
        book: LimitBook,
        screening: bool,
    ) -> None:
        self.rules = rules
        self.default_key = default_key
        self.identity = identity
        self.book = book
        #: Top-level allow/deny lists: every request gets a plan, to be screened.
        self.screening = screening
        self._keys: dict[Any, Callable[[RequestInfo], str]] = {}
        self._plans: dict[tuple[str, str], Plan | None] = {}
        self._by_rules: dict[tuple[int, ...], Plan] = {}
        for rule in rules:
            book.register(rule)

    def key_function(self, rule: Rule) -> Callable[[RequestInfo], str]:
        """The compiled ``request -> counter key`` function of ``rule``."""
        spec = self.default_key if rule.key is None else rule.key
        func = self._keys.get(spec)
        if func is None:
            func = self._keys[spec] = compile_key(spec, self.identity)
        return func

    def plan(self, method: str, path: str) -> Plan | None:
        """The plan for a request, or ``None`` when no rule applies (``method`` in any case;
        ``path`` as the application routes on it, before normalisation)."""
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
        if len(path) <= CACHED_PATH_LENGTH:
            if len(self._plans) >= PLAN_CACHE_SIZE:
                self._plans.clear()
            self._plans[cache_key] = found
        return found

    def plan_for_rules(self, rules: tuple[Rule, ...]) -> Plan:
        """The plan checking ``rules`` together, cached by the rules' identities (the plan
        holds the rules, so the ids stay valid): the decorators call this on every request.
        Bounded like the path cache."""
        ids = tuple(map(id, rules))
        plan = self._by_rules.get(ids)
        if plan is None:
            if len(self._by_rules) >= PLAN_CACHE_SIZE:
                self._by_rules.clear()
            plan = self._by_rules[ids] = self._compile(rules)
        return plan

    def _compile(self, rules: tuple[Rule, ...]) -> Plan:
        groups: dict[Any, list[Limit]] = {}
        heads: dict[Any, tuple[Callable[[RequestInfo], str], Any, Rule | None]] = {}
        for rule in rules:
            self.book.register(rule)
            key = self.key_function(rule)
            if rule.has_policies or is_async_callable(key):  # resolved per request
                slot: Any = ("rule", rule.name)
                heads[slot] = (key, rule.cost, rule)
            else:
                slot = (self.default_key if rule.key is None else rule.key, rule.cost)
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

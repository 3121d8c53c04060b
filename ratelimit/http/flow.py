"""The decision, as a short sequence of policy steps (one generator; the drivers of
:mod:`ratelimit.http.drivers` run it on the blocking or the asyncio backend API)::

    plan ─► screen   allow / deny lists                      policies/screen.py
         ─► resolve  per rule: tier, cost, key → its part    policies/tiers.py, costs.py
                     of the plan (count, ban, lease routes)  policies/counting.py, bans.py,
                                                             policies/concurrency.py
         ─► cached   a client just rejected: no call at all  rejections.py
         ─► gates    ban gates and ``count`` rules, one dry run (nothing consumed)
         ─► decide   every other limit in ONE atomic call
         ─► hold     concurrency slots (given back if a later one is refused)
         ─► outcome  headers, 429, …                          outcome.py
    after the response: settle ─► counts, charges, slots      (settle_flows)

A plan without policies (no tier, cost function, count, ban, lease, list or charge) takes the
first line only: one atomic call, or the rejection cache.

Several groups are checked in one atomic call, ``decide_each``, on every backend that offers
it (memory, Redis). Only where the keys of different clients cannot meet in one atomic step
(Redis Cluster: they live in different slots) does the flow fall back to checking every
group without consuming, then consuming each if all admit; a concurrent request can slip
between those calls (within a group it never can).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ratelimit.http.drivers import AWAIT, Call
from ratelimit.http.outcome import PASS, Outcome, Pending, Verdicts
from ratelimit.http.policies.bans import route_ban, strike
from ratelimit.http.policies.charges import Charges, Headers, route_charge, settle_charges
from ratelimit.http.policies.concurrency import Held, hold, release, route_lease
from ratelimit.http.policies.costs import resolve_cost
from ratelimit.http.policies.counting import Counted, route_count, settle_counts
from ratelimit.http.policies.screen import screen_rule, screen_top
from ratelimit.http.policies.tiers import resolve_tier

if TYPE_CHECKING:
    from ratelimit.decision import Decision
    from ratelimit.http.config import Config
    from ratelimit.http.keys import ClientIdentity, RequestInfo
    from ratelimit.http.plan import Group, LimitBook, Plan
    from ratelimit.http.rejections import RejectionCache
    from ratelimit.http.rules import Rule
    from ratelimit.limits import Limit

__all__ = ["Draft", "FlowContext", "GroupCall", "decision_flow", "settle_flows"]

#: One group's part of a decision: the client key, the limits and the cost.
GroupCall = tuple[str, tuple["Limit", ...], int]


class FlowContext(Protocol):
    """What the steps read of the engine (its settings of the moment)."""

    config: Config
    identity: ClientIdentity
    verdicts: Verdicts
    book: LimitBook
    rejections: RejectionCache | None
    #: Top-level allow/deny lists: every request is screened.
    screening: bool
    shadow: bool
    #: Several groups go in one atomic ``decide_each`` call.
    atomic_each: bool
    #: Its clock (if it has one) times a charge rule's reservation.
    backend: Any


class Draft:
    """One request's decision as the steps build it."""

    __slots__ = (
        "body_limit",
        "calls",
        "charges",
        "client",
        "counted",
        "decisions",
        "held",
        "leases",
        "owners",
        "plan",
        "probes",
        "request",
        "shown",
    )

    def __init__(self, plan: Plan, request: RequestInfo) -> None:
        self.plan = plan
        self.request = request
        #: The client's address, once a list needed it.
        self.client: str | None = None
        #: Consumed in the decide step.
        self.calls: list[GroupCall] = []
        #: Dry-run in the gate step: ban gates, ``count`` rules.
        self.probes: list[GroupCall] = []
        self.counted: list[Counted] = []
        #: Slots to take in the hold step, and those taken.
        self.leases: list[tuple[str, Limit]] = []
        self.held: list[Held] = []
        #: limit id → (key, rule) for the rules that may strike after a rejection.
        self.owners: dict[str, tuple[str, Rule]] = {}
        #: The limits the ``RateLimit-Policy`` header lists, once a tier changed them.
        self.shown: list[Limit] | None = None
        self.body_limit: int | None = None
        self.decisions: list[Decision] = []
        #: The charge rules' reservations, to settle after the response.
        self.charges: Charges | None = None

    def show(self, drop: Sequence[Limit], add: Sequence[Limit]) -> None:
        """List ``add`` instead of ``drop`` in the ``RateLimit-Policy`` header."""
        shown = self.shown
        if shown is None:
            shown = [limit for rule in self.plan.rules for limit in rule.limits]
        dropped = {limit.id for limit in drop}
        self.shown = [limit for limit in shown if limit.id not in dropped] + list(add)


def decision_flow(
    ctx: FlowContext, plan: Plan, request: RequestInfo
) -> Generator[Call, Any, Outcome]:
    """The decision of ``request`` under ``plan`` (see the module docstring)."""
    if plan.dynamic or ctx.screening:
        return (yield from _policy_flow(ctx, plan, request))
    calls = [(g.key(request), g.limits, g.cost) for g in plan.groups]  # no policies
    rejected = ctx.rejections
    if rejected:
        cached = rejected.lookup(calls)  # type: ignore[arg-type]
        if cached is not None:
            return ctx.verdicts.of(plan.policies, request, [cached], plan)
    got = yield from atomic(ctx, calls, True)  # type: ignore[arg-type]
    outcome = ctx.verdicts.of(plan.policies, request, got, plan)
    if rejected is not None and outcome.kind == "rejected":
        _remember(rejected, calls, outcome.decision)  # type: ignore[arg-type]
    return outcome


def _policy_flow(
    ctx: FlowContext, plan: Plan, request: RequestInfo
) -> Generator[Call, Any, Outcome]:
    draft = Draft(plan, request)
    screened = screen_top(ctx, draft)
    if screened is not None:
        return screened
    for group in plan.groups:
        if group.rule is None:
            draft.calls.append((group.key(request), group.limits, group.cost))  # type: ignore[arg-type]
            continue
        refused = yield from _resolve(ctx, draft, group)
        if refused is not None:
            return refused
    policies = plan.policies if draft.shown is None else plan.listed(draft.shown)
    outcome = yield from _gates_and_decide(ctx, draft, policies)
    if outcome is not None:
        return outcome
    if draft.charges is not None:
        draft.charges.stamp()  # the reservation was decided now
    refusal = yield from hold(draft)
    if refusal is not None:
        return ctx.verdicts.of(policies, request, [refusal], plan)
    outcome = PASS
    if draft.decisions:
        outcome = ctx.verdicts.of(policies, request, draft.decisions, plan)
    if draft.counted or draft.held or draft.charges is not None:
        pending = Pending(tuple(draft.counted), tuple(draft.held), draft.charges)
        outcome = outcome._replace(pending=pending)
    if draft.body_limit is not None:
        outcome = outcome._replace(body_limit=draft.body_limit)
    return outcome


def _resolve(ctx: FlowContext, draft: Draft, group: Group) -> Generator[Call, Any, Outcome | None]:
    """A rule's part of this request's decision; an outcome when it refuses outright."""
    rule = group.rule
    assert rule is not None
    listed = screen_rule(ctx, draft, group)
    if listed == "deny":
        return ctx.verdicts.denied(draft.request)
    if listed == "allow":
        draft.show(group.limits, ())
        return None
    limits = yield from resolve_tier(draft, group)
    if limits is None:
        return None  # an exempt tier: this rule neither limits nor reports
    cost = yield from resolve_cost(ctx, draft, group)
    if not isinstance(cost, int):
        return cost  # 411
    if cost == 0 and rule.charge is None:
        return None  # weighs nothing: passes uncounted
    key = group.key(draft.request)
    if key.__class__ is not str:  # an async key function's awaitable
        key = yield (AWAIT, (key, "key", group.key))
    for limit in limits:
        draft.owners[limit.id] = (key, rule)
    if rule.is_concurrency:
        route_lease(draft, key, limits)
        return None
    if rule.ban is not None:
        route_ban(ctx, draft, key, rule)
    if rule.charge is not None:
        route_charge(ctx, draft, key, limits, cost, rule)
    elif rule.count != "all":
        route_count(draft, key, limits, cost, rule)
    else:
        draft.calls.append((key, limits, cost))
    return None


def _gates_and_decide(
    ctx: FlowContext, draft: Draft, policies: bytes
) -> Generator[Call, Any, Outcome | None]:
    """The cached, gates and decide steps: an outcome when the request is rejected."""
    rejected = ctx.rejections
    request, plan = draft.request, draft.plan
    if rejected and not draft.owners:  # bans must count every rejection: not cached then
        cached = rejected.lookup(draft.calls)
        if cached is not None:
            return ctx.verdicts.of(policies, request, [cached], plan)
    for batch, consume in ((draft.probes, False), (draft.calls, True)):
        if not batch:
            continue
        got = yield from atomic(ctx, batch, consume)
        if not all(got):
            outcome = ctx.verdicts.of(policies, request, got, plan)
            yield from strike(ctx, draft, outcome.decision)
            if rejected is not None and outcome.decision is not None and not draft.owners:
                _remember(rejected, batch, outcome.decision)
            return outcome
        gates = ctx.book.gate_ids
        draft.decisions.extend(d for d in got if d.policy.id not in gates)
    return None


def atomic(
    ctx: FlowContext, calls: list[GroupCall], consume: bool
) -> Generator[Call, Any, list[Decision]]:
    """One atomic decision over ``calls`` (see the module docstring for Cluster)."""
    if len(calls) == 1:
        key, limits, cost = calls[0]
        result: list[Decision] = yield ("decide", (key, limits, cost, consume))
        return result
    if ctx.atomic_each:
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


def _remember(cache: RejectionCache, calls: list[GroupCall], decision: Decision) -> None:
    """Put a backend's rejection in the rejection cache, under the rejecting limit's key."""
    policy = decision.policy.id
    for key, limits, cost in calls:
        if any(limit.id == policy for limit in limits):
            cache.remember(key, decision, cost)
            return


def settle_flows(
    pending: Pending, status: int, headers: Headers = ()
) -> tuple[Generator[Call, Any, None], ...]:
    """After the response: count the ``count`` rules whose statuses match ``status`` (the
    count always lands), charge the ``charge`` rules (from the response ``headers``, or
    what the application reported), and give back the concurrency slots — three flows,
    each driven on its own, so that a backend failure in one (a charge) does not keep the
    others (the slots) from landing."""
    return (
        settle_counts(pending.counted, status),
        settle_charges(pending.charges, status, headers),
        release(pending.leases),
    )

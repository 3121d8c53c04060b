"""``ban``: a client rejected ``after`` times within ``within`` is refused for ``duration``.

Config key: ``ban = { after, within, duration }``. Bans are made of the ordinary algorithms,
so memory and Redis agree on them exactly as on limits: the strikes are a sliding log of
``after`` per ``within``; the ban is a token bucket of one token that refills in
``duration`` — taking the token bans, and a dry run of it (the decision's gate step) tells
whether a client is banned and for how long still.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratelimit.errors import ConfigError
from ratelimit.limits import Limit
from ratelimit.rate import Rate, parse_duration

if TYPE_CHECKING:
    from ratelimit.decision import Decision
    from ratelimit.http.flow import Draft, FlowContext
    from ratelimit.http.rules import Rule

__all__ = ["Ban", "parse_ban", "route_ban", "strike"]

log = logging.getLogger("ratelimit")


@dataclass(frozen=True, slots=True)
class Ban:
    """``ban = { after, within, duration }`` (see the module docstring)."""

    after: int
    within: float
    duration: float

    def strikes(self, rule: str) -> Limit:
        """The limit counting ``rule``'s rejections of a client."""
        return Limit(Rate(self.after, self.within), "sliding_log", name=f"{rule}:strikes")

    def gate(self, rule: str) -> Limit:
        """The limit that is empty while a client is banned by ``rule``."""
        return Limit(Rate(1, self.duration), "token_bucket", burst=1, name=f"{rule}:ban")


def parse_ban(value: object) -> Ban:
    """``ban = { after = 3, within = "1 hour", duration = "1 day" }``."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"must be a table {{ after, within, duration }}, got {value!r}")
    unknown = sorted(set(value) - {"after", "within", "duration"})
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} (valid keys: after, within, duration)")
    missing = [k for k in ("after", "within", "duration") if k not in value]
    if missing:
        raise ConfigError(f"{missing[0]}: missing (a ban needs after, within and duration)")
    after = value["after"]
    if isinstance(after, bool) or not isinstance(after, int) or after < 1:
        raise ConfigError(f"after: must be a whole number ≥ 1, got {after!r}")
    try:
        within = parse_duration(value["within"])
    except ConfigError as exc:
        raise ConfigError(f"within: {exc}") from None
    try:
        duration = parse_duration(value["duration"])
    except ConfigError as exc:
        raise ConfigError(f"duration: {exc}") from None
    return Ban(after, within, duration)


def route_ban(ctx: FlowContext, draft: Draft, key: str, rule: Rule) -> None:
    """A banning rule's part of the plan: its gate is probed in the gate step."""
    gate = ctx.book.gates[rule.name][0]
    draft.probes.append((key, (gate,), 1))
    draft.owners[gate.id] = (key, rule)


def strike(ctx: FlowContext, draft: Draft, decision: Decision | None) -> Generator[Any, Any, None]:
    """After a rejection: a rejection by a rule with a ban is a strike; the ``after``-th
    bans the client (takes the gate's token) and clears the strikes."""
    if decision is None or decision.policy.id not in draft.owners:
        return
    key, rule = draft.owners[decision.policy.id]
    if rule.ban is None or decision.policy.id in ctx.book.gate_ids:
        return
    gate, strikes = ctx.book.gates[rule.name]
    struck: list[Decision] = yield ("decide", (key, (strikes,), 1, True))
    if struck[0].allowed and struck[0].remaining > 0:
        return
    yield ("decide", (key, (gate,), 1, True))  # the bucket's one token: banned
    yield ("reset", (key, (strikes,)))
    log.info("ban: %s banned by rule %s for %gs", key, rule.name, rule.ban.duration)

"""``tier`` + ``[rules.tiers]``: who pays which limits.

Config keys: ``tier`` (``header:<name>``, ``user:<attribute>``, ``"module:callable"``) and
the ``tiers`` table of a rule. Per request, the tier function's value picks the limits; each
listed tier counts separately (its limits are named after it); no tier and every unlisted
tier fall to the rule's own limits, so a client cannot mint budgets by inventing tier names;
an ``"exempt"`` tier is neither limited nor given headers by that rule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ratelimit.errors import ConfigError
from ratelimit.http.drivers import AWAIT
from ratelimit.http.keys import import_callable

if TYPE_CHECKING:
    from ratelimit.http.flow import Draft
    from ratelimit.http.keys import RequestInfo
    from ratelimit.http.plan import Group
    from ratelimit.limits import Limit

__all__ = ["TierFunc", "compile_tier", "resolve_tier"]

#: A tier function: the request's tier name, or ``None`` for the rule's own limits.
TierFunc = Callable[["RequestInfo"], "str | None"]


def compile_tier(spec: object) -> TierFunc:
    """``tier``: ``header:<name>``, ``user:<attribute>``, ``"module:callable"`` or a
    callable — what picks the tier of a request."""
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ConfigError(
            f"expected header:<name>, user:<attribute> or 'module:callable', got {spec!r}"
        )
    if spec.startswith("header:"):
        from ratelimit.http.keys import first_value

        name = spec[7:].lower()
        if not name:
            raise ConfigError(f"invalid tier {spec!r}: expected header:<header-name>")
        return lambda request: first_value(request.header(name))
    if spec.startswith("user:"):
        attribute = spec[5:]
        if not attribute.isidentifier():
            raise ConfigError(f"invalid tier {spec!r}: expected user:<attribute>")
        return lambda request: request.user_attribute(attribute)
    func: TierFunc = import_callable(spec, "tier")
    return func


def resolve_tier(draft: Draft, group: Group) -> Generator[Any, Any, tuple[Limit, ...] | None]:
    """The limits ``group``'s rule checks for this request: its tier's, or its own; ``None``
    for an exempt tier. (Yields the awaitable of an ``async def`` tier function.)"""
    rule = group.rule
    assert rule is not None
    limits = group.limits
    if rule.tier is None:
        return limits
    tier = rule.tier(draft.request)
    if tier is not None and tier.__class__ is not str and inspect.isawaitable(tier):
        tier = yield (AWAIT, (tier, "tier", rule.tier))
    if tier is None or tier not in rule.tiers:
        return limits
    chosen = rule.tiers[tier]
    draft.show(limits, chosen or ())
    return chosen

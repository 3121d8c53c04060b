"""``count``: which responses a rule counts — all, failures, successes, or statuses.

Config key: ``count``. A counted-after-response rule admits a request if its cost fits (a dry
run in the decision's gate step: nothing consumed) and counts it once the response status is
known and matches (:func:`settle_counts`). The count always lands: a limit already full is
filled to its capacity, so concurrent requests can overshoot by the number in flight.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from typing import TYPE_CHECKING, Any

from ratelimit.errors import ConfigError

if TYPE_CHECKING:
    from ratelimit.decision import Decision
    from ratelimit.http.flow import Draft
    from ratelimit.http.rules import Rule
    from ratelimit.limits import Limit

__all__ = [
    "COUNT_MODES",
    "Count",
    "Counted",
    "counts",
    "parse_count",
    "route_count",
    "settle_counts",
]

#: The word forms of ``count``: every response, status ≥ 400, status < 400.
COUNT_MODES = ("all", "failures", "successes")
#: What ``count`` compiles to: ``"all"``, ``"failures"``, ``"successes"`` or statuses.
Count = str | frozenset[int]
#: A request to count after its response: (key, limits, cost, rule).
Counted = tuple[str, tuple["Limit", ...], int, "Rule"]


def parse_count(value: object) -> Count:
    """``count``: ``"all"`` | ``"failures"`` | ``"successes"`` | a list of statuses."""
    if isinstance(value, str):
        if value not in COUNT_MODES:
            raise ConfigError(
                f"must be one of {', '.join(COUNT_MODES)} or a list of statuses, got {value!r}"
            )
        return value
    if isinstance(value, list | tuple) and value:
        statuses = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 100 <= item <= 599:
                raise ConfigError(f"statuses must be whole numbers 100..599, got {item!r}")
            statuses.append(item)
        return frozenset(statuses)
    raise ConfigError(
        f"must be one of {', '.join(COUNT_MODES)} or a non-empty list of statuses, got {value!r}"
    )


def counts(count: Count, status: int) -> bool:
    """Whether a response of ``status`` is counted under ``count``."""
    if count == "all":
        return True
    if count == "failures":
        return status >= 400
    if count == "successes":
        return status < 400
    return status in count


def route_count(draft: Draft, key: str, limits: tuple[Limit, ...], cost: int, rule: Rule) -> None:
    """A ``count`` rule's part of the plan: a dry run now, the count after the response."""
    draft.probes.append((key, limits, cost))
    draft.counted.append((key, limits, cost, rule))


def settle_counts(counted: Iterable[Counted], status: int) -> Generator[Any, Any, None]:
    """Count the rules whose statuses match ``status`` (even over the limit: filled to it)."""
    for key, limits, cost, rule in counted:
        if not counts(rule.count, status):
            continue
        for limit in limits:
            got: list[Decision] = yield ("decide", (key, (limit,), cost, True))
            if not got[0].allowed and got[0].remaining > 0:
                yield ("decide", (key, (limit,), got[0].remaining, True))

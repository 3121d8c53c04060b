"""Rule policies beyond "this many per that long", one module each, in the order a decision
runs them (:mod:`ratelimit.http.flow`):

* :mod:`~ratelimit.http.policies.screen` — ``allow`` / ``deny`` lists (first: refuse or let be);
* :mod:`~ratelimit.http.policies.tiers` — ``tier``: which limits a request pays;
* :mod:`~ratelimit.http.policies.costs` — ``cost``: what it weighs (411 for bodies it cannot);
* :mod:`~ratelimit.http.policies.bans` — ``ban``: gates probed before the decision, strikes after
  a rejection;
* :mod:`~ratelimit.http.policies.counting` — ``count``: a dry run now, counted after the response;
* :mod:`~ratelimit.http.policies.concurrency` — slots held while the request runs;
* :mod:`~ratelimit.http.policies.charges` — ``charge``: a reservation now, the real cost
  charged (or given back) after the response.

Each module owns its config keys (their parsers, called by :mod:`ratelimit.http.config`), its
part of a request's plan (a ``route_*`` or ``resolve_*`` step) and what it does after the
response. Nothing here does rate arithmetic: every policy is made of the ordinary algorithms,
so memory and Redis agree on policies exactly as on limits.
"""

from __future__ import annotations

from ratelimit.http.policies.bans import Ban, parse_ban
from ratelimit.http.policies.charges import (
    ChargeSpec,
    check_charge_rule,
    parse_charge,
    parse_unit,
)
from ratelimit.http.policies.costs import (
    CostFunc,
    checked_cost,
    compile_cost,
    content_length,
    declared_length,
)
from ratelimit.http.policies.counting import COUNT_MODES, Count, counts, parse_count
from ratelimit.http.policies.screen import Network, Networks, in_networks, parse_networks
from ratelimit.http.policies.tiers import TierFunc, compile_tier

__all__ = [
    "COUNT_MODES",
    "Ban",
    "ChargeSpec",
    "CostFunc",
    "Count",
    "Network",
    "Networks",
    "TierFunc",
    "check_charge_rule",
    "checked_cost",
    "compile_cost",
    "compile_tier",
    "content_length",
    "counts",
    "declared_length",
    "in_networks",
    "parse_ban",
    "parse_charge",
    "parse_count",
    "parse_networks",
    "parse_unit",
]

"""``allow`` / ``deny``: CIDRs of client identities never limited / always refused (403).

Config keys: ``allow`` and ``deny``, at the top level and per rule. The screen is the first
step of a decision: a denied client is refused before anything is counted, an allowed one
passes (top level: the whole request; per rule: that rule neither limits nor counts it).
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING

from ratelimit.errors import ConfigError

if TYPE_CHECKING:
    from ratelimit.http.flow import Draft, FlowContext
    from ratelimit.http.outcome import Outcome
    from ratelimit.http.plan import Group

__all__ = ["Network", "Networks", "in_networks", "parse_networks", "screen_rule", "screen_top"]

Network = IPv4Network | IPv6Network
Networks = tuple[Network, ...]


def parse_networks(value: object) -> Networks:
    """``allow`` / ``deny``: a list of CIDRs (or single addresses)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigError(f"must be a list of CIDRs, got {value!r}")
    networks = []
    for i, cidr in enumerate(value):
        try:
            if not isinstance(cidr, str):
                raise TypeError(cidr)
            networks.append(ip_network(cidr, strict=False))
        except (TypeError, ValueError):
            raise ConfigError(
                f"[{i}]: invalid network {cidr!r} (expected a CIDR such as '10.0.0.0/8' "
                "or an address)"
            ) from None
    return tuple(networks)


def in_networks(identity: str, networks: Networks) -> bool:
    """Whether the client ``identity`` (an address, or an IPv6 network) is in ``networks``."""
    try:
        addr = ip_address(identity.split("/", 1)[0])
    except ValueError:
        return False
    return any(addr in net for net in networks)


def screen_top(ctx: FlowContext, draft: Draft) -> Outcome | None:
    """The top-level lists: a 403 outcome, the pass outcome, or ``None`` to go on."""
    if not ctx.screening:
        return None
    cfg = ctx.config
    client = draft.client = ctx.identity.client_address(draft.request)
    if cfg.deny and in_networks(client, cfg.deny):
        return ctx.verdicts.denied(draft.request)
    if cfg.allow and in_networks(client, cfg.allow):
        return ctx.verdicts.passed
    return None


def screen_rule(ctx: FlowContext, draft: Draft, group: Group) -> str | None:
    """A rule's own lists: ``"deny"``, ``"allow"`` (the rule lets the client be), or
    ``None``."""
    rule = group.rule
    assert rule is not None
    if not (rule.deny or rule.allow):
        return None
    if draft.client is None:
        draft.client = ctx.identity.client_address(draft.request)
    if rule.deny and in_networks(draft.client, rule.deny):
        return "deny"
    if rule.allow and in_networks(draft.client, rule.allow):
        return "allow"
    return None

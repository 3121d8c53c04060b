"""Rule policies beyond "this many per that long": who pays which limits (tiers), what is
counted (by response status), bans, request weights, allow/deny lists.

Each policy is compiled once, at start-up, into a small value the engine reads per request;
nothing here does rate arithmetic (bans are made of the ordinary algorithms: a sliding log
counts the strikes, a token bucket of one token that refills after the ban's duration is the
ban itself, so memory and Redis agree on bans exactly as they agree on limits).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING

from ratelimit.errors import ConfigError
from ratelimit.http.keys import import_callable
from ratelimit.limits import Limit
from ratelimit.rate import Rate, parse_duration

if TYPE_CHECKING:
    from ratelimit.http.keys import RequestInfo

__all__ = [
    "COUNT_MODES",
    "Ban",
    "Networks",
    "compile_cost",
    "compile_tier",
    "content_length",
    "counts",
    "declared_length",
    "parse_ban",
    "parse_count",
    "parse_networks",
]

#: The word forms of ``count``: every response, status ≥ 400, status < 400.
COUNT_MODES = ("all", "failures", "successes")
#: What ``count`` compiles to: ``"all"``, ``"failures"``, ``"successes"`` or statuses.
Count = str | frozenset[int]

Network = IPv4Network | IPv6Network
Networks = tuple[Network, ...]

#: A cost function: the request's weight (``cost = "content-length"`` or a callable).
CostFunc = Callable[["RequestInfo"], int]
#: A tier function: the request's tier name, or ``None`` for the rule's own limits.
TierFunc = Callable[["RequestInfo"], "str | None"]


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


@dataclass(frozen=True, slots=True)
class Ban:
    """``ban = { after, within, duration }``: ``after`` rejections by the rule within
    ``within`` seconds refuse the client for ``duration`` seconds.

    The strikes are a sliding log of ``after`` per ``within`` (exact); the ban is a token
    bucket holding one token that refills in ``duration``: taking the token bans, and a dry
    run of it tells whether a client is banned and for how long still.
    """

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


#: The cost of a ``Content-Length`` too long to be true: more than any limit's capacity.
_HUGE = 10**18


def declared_length(request: RequestInfo) -> int | None:
    """The request body's size as its ``Content-Length`` declares it: 0 without one, or
    ``None`` when the body cannot be measured up front — a ``Transfer-Encoding`` header (any
    value: chunked), a ``Content-Length`` that is not plain ASCII digits, or several
    different ``Content-Length`` values. A rule with ``cost = "content-length"`` refuses such
    a request with 411 Length Required (see :meth:`Engine.length_required
    <ratelimit.http.engine.Engine.length_required>`).
    """
    if request.header("transfer-encoding") is not None:
        return None
    text = request.header("content-length")
    if text is None:
        return 0
    values = {value.strip() for value in text.split(",")}
    if len(values) != 1:
        return None  # "600, 900": which one would the server believe?
    value = values.pop()
    if not (value.isascii() and value.isdigit()):
        return None
    # More digits than any body has: a cost no limit admits (not a 4,300-digit int parse).
    return int(value) if len(value) <= 18 else _HUGE


def content_length(request: RequestInfo) -> int:
    """The request body's declared size in bytes: the cost of ``cost = "content-length"``
    (0 without a ``Content-Length``; a body without a valid one never gets this far: the
    engine refuses it with 411 first)."""
    length = declared_length(request)
    return 0 if length is None else length


def compile_cost(spec: object) -> int | CostFunc:
    """``cost``: a whole number ≥ 1, ``"content-length"`` or ``"module:callable"``."""
    if isinstance(spec, bool):
        raise ConfigError(f"must be a whole number ≥ 1 or 'content-length', got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"must be a whole number of at least 1, got {spec!r}")
        return spec
    if spec == "content-length":
        return content_length
    if isinstance(spec, str) and ":" in spec:
        func: CostFunc = import_callable(spec, "cost")
        return func
    if callable(spec):
        return spec
    raise ConfigError(
        f"must be a whole number of at least 1, 'content-length' or 'module:callable', got {spec!r}"
    )


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

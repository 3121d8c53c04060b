"""Rules: which paths and methods a set of limits applies to, compiled once at start-up.

A rule's ``path`` is matched segment by segment against the request path:

- ``/auth/login`` matches exactly that path;
- ``*`` and ``{param}`` match exactly one non-empty segment (``/users/{id}/posts``);
- ``**`` matches any number of segments, none included (``/api/**`` matches ``/api``,
  ``/api/`` and ``/api/v1/items``).

Request paths are normalised before matching: ``.`` and ``..`` segments are resolved,
repeated slashes are collapsed and a trailing slash is ignored, so ``//auth/./login/`` cannot
dodge the ``/auth/login`` rule. The adapters match the path the application routes on (below
the ASGI ``root_path`` or the WSGI ``SCRIPT_NAME``). Methods are compared case-insensitively
(``post`` is ``POST``: frameworks route it to the POST view); a rule for ``GET`` also covers
``HEAD`` (frameworks answer HEAD with the GET handler). WebSocket handshakes are matched as
``GET``. Matching is linear in the path's length, whatever the pattern.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network, IPv6Network
from typing import TYPE_CHECKING, Any

from ratelimit.errors import ConfigError
from ratelimit.http.keys import KeySpec, counter_key, key_prefix
from ratelimit.http.policies import Ban, ChargeSpec, check_charge_rule, content_length
from ratelimit.limits import Limit

if TYPE_CHECKING:
    from ratelimit.http.keys import RequestInfo

__all__ = [
    "KNOWN_METHODS",
    "KeySpec",
    "Rule",
    "match_segments",
    "normalize_path",
    "split_path",
]

#: The methods a rule may name: RFC 9110's, PATCH, and WebDAV's. A typo such as ``"POTS"``
#: would otherwise give a rule that never matches.
KNOWN_METHODS = frozenset(
    {
        *("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"),
        *("QUERY", "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK"),
        *("REPORT", "SEARCH"),
    }
)
_PARAM_RE = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


def normalize_path(path: str) -> str:
    """The path as rules see it: ``.`` and ``..`` segments resolved, repeated slashes
    collapsed, a trailing slash dropped (``/`` stays ``/``). Linear in the path's length."""
    if "//" in path or "/." in path:
        resolved: list[str] = []
        for segment in path.split("/"):
            if segment == "..":
                if resolved:
                    resolved.pop()
            elif segment and segment != ".":
                resolved.append(segment)
        return "/" + "/".join(resolved)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


class _Wild:
    """A pattern segment that is not a literal: ``*`` / ``{param}`` (one) or ``**`` (any)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


#: One non-empty segment (``*``, ``{param}``).
ONE = _Wild("*")
#: Any number of segments, none included (``**``).
ANY = _Wild("**")

Pattern = tuple["str | _Wild", ...]

#: Characters a rule path cannot contain: they never reach the application's router as part
#: of the path (query, fragment) or are decoded before routing (``%``), so the rule could
#: never match.
_NEVER_IN_PATH = {"?": "a query string", "#": "a fragment", "%": "a percent-escape"}


def _compile_path(path: str) -> tuple[str | None, Pattern | None]:
    """``(exact, None)`` for a literal path, else ``(None, segments)``; ConfigError if invalid."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"a path must be text starting with '/', got {path!r}")
    for char, what in _NEVER_IN_PATH.items():
        if char in path:
            raise ConfigError(
                f"invalid path {path!r}: it contains {char!r} ({what}); rules match the "
                "decoded path the application routes on, which never contains it"
            )
    raw_segments = path.split("/")[1:]
    if any(s in (".", "..") for s in raw_segments):
        raise ConfigError(
            f"invalid path {path!r}: '.' and '..' segments are resolved in request paths "
            "before matching, so a rule containing them could never match"
        )
    if not path.isprintable():
        raise ConfigError(f"invalid path {path!r}: control characters cannot be matched")
    segments = normalize_path(path).split("/")[1:]
    if segments == [""]:
        segments = []
    pattern: list[str | _Wild] = []
    for segment in segments:
        if segment == "**":
            if not pattern or pattern[-1] is not ANY:  # '**/**' means '**'
                pattern.append(ANY)
        elif segment == "*" or _PARAM_RE.match(segment):
            pattern.append(ONE)
        elif "*" in segment or "{" in segment or "}" in segment:
            raise ConfigError(
                f"invalid path {path!r}: '*', '**' and '{{param}}' must be whole segments "
                f"(bad segment {segment!r})"
            )
        else:
            pattern.append(segment)
    if all(isinstance(s, str) for s in pattern):
        return normalize_path(path), None
    return None, tuple(pattern)


def split_path(path: str) -> list[str]:
    """The segments of a normalised path (``/`` has none)."""
    return path.split("/")[1:] if path != "/" else []


def match_segments(pattern: Pattern, segments: Sequence[str]) -> bool:
    """Whether ``segments`` (of a normalised path) match ``pattern``.

    Greedy, backtracking only to the last ``**`` seen: at most ``len(segments)`` restarts of
    at most ``len(pattern)`` steps each, so the cost is linear in the path for a given rule
    (a regular expression with two ``**`` is quadratic on a long path).
    """
    p = s = 0
    star = -1  # pattern index of the last ANY
    resume = 0  # where the segments resume after it
    n_pat, n_seg = len(pattern), len(segments)
    while s < n_seg:
        if p < n_pat:
            token = pattern[p]
            if token is ANY:
                star, resume = p, s
                p += 1
                continue
            if token is ONE or token == segments[s]:
                p += 1
                s += 1
                continue
        if star < 0:
            return False
        resume += 1  # let the last ** swallow one more segment
        p, s = star + 1, resume
    while p < n_pat and pattern[p] is ANY:
        p += 1
    return p == n_pat


def _callable_name(func: Any) -> str:
    if func is content_length:
        return "content-length"
    return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', repr(func))}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One compiled rule: a path pattern, methods, limits and how to identify clients.

    Build rules through :func:`ratelimit.http.config.load_config`; a rule built directly
    must be given ``limits`` as :class:`~ratelimit.Limit` objects (their names are replaced
    so that each rule counts separately).

    Attributes:
        name: the rule's name, part of every counter id and shown in the ``RateLimit``
            headers. Unnamed rules in a config get ``"<METHODS> <path>"`` (see the docs).
        path: the path pattern as written.
        methods: the upper-case methods matched, or ``None`` for every method.
        limits: the limits checked, named ``name`` (one limit) or ``name.0``, ``name.1``, ...
        key: the key spec (``ip``, ``user``, ``global``, ``header:<name>``,
            ``"module:callable"`` or a callable); ``None`` means the config's ``key``.
        cost: what one request costs: a whole number ≥ 1, or a function of the request
            (``cost = "content-length"``, ``"module:callable"``); a cost of 0 passes uncounted.
        exempt: a matching exempt rule stops the walk: later rules do not apply.
        tier: the function picking a request's tier (``None``: no tiers).
        tiers: tier name → its limits (named ``<rule>.<tier>``), or ``None`` for an exempt
            tier. A request with no tier, or one not listed, gets :attr:`limits`.
        count: which responses are counted (:func:`ratelimit.http.policies.parse_count`);
            anything but ``"all"`` counts after the response.
        ban: refuse a client that this rule rejected too often (or ``None``).
        allow: client networks this rule never limits.
        deny: client networks this rule always refuses (403).
        charge: where the real cost of a request comes from after its response
            (:mod:`ratelimit.http.policies.charges`); ``cost`` is then the reservation.
        unit: the quota unit shown as ``qu`` in ``RateLimit-Policy`` (``None``: requests,
            or the unit the rule's cost or algorithm implies).
    """

    name: str
    path: str
    methods: tuple[str, ...] | None = None
    limits: tuple[Limit, ...] = ()
    key: KeySpec | None = None
    cost: int | Callable[[RequestInfo], int] = 1
    exempt: bool = False
    tier: Callable[[RequestInfo], str | None] | None = None
    tiers: Mapping[str, tuple[Limit, ...] | None] = field(default_factory=dict)
    count: str | frozenset[int] = "all"
    ban: Ban | None = None
    allow: tuple[IPv4Network | IPv6Network, ...] = ()
    deny: tuple[IPv4Network | IPv6Network, ...] = ()
    charge: ChargeSpec | None = None
    unit: str | None = None
    _exact: str | None = field(init=False, repr=False, compare=False)
    _pattern: Pattern | None = field(init=False, repr=False, compare=False)
    _methods: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name: must be non-empty text, got {self.name!r}")
        try:
            exact, pattern = _compile_path(self.path)
        except ConfigError as exc:
            raise ConfigError(f"path: {exc}") from None
        set_(self, "_exact", exact)
        set_(self, "_pattern", pattern)
        methods = self.methods
        if methods is not None:
            if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
                raise ConfigError(f"methods: must be a non-empty list, got {methods!r}")
            upper = []
            for method in methods:
                if not isinstance(method, str) or method.upper() not in KNOWN_METHODS:
                    raise ConfigError(
                        f"methods: unknown method {method!r} "
                        f"(use any of: {', '.join(sorted(KNOWN_METHODS))})"
                    )
                upper.append(method.upper())
            methods = tuple(upper)
            set_(self, "methods", methods)
            allowed = set(methods)
            if "GET" in allowed:
                allowed.add("HEAD")
            set_(self, "_methods", frozenset(allowed))
        else:
            set_(self, "_methods", None)
        cost = self.cost
        if callable(cost):
            cost_cap = 0
        elif isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ConfigError(f"cost: must be a whole number of at least 1, got {cost!r}")
        else:
            cost_cap = cost
        if not isinstance(self.exempt, bool):
            raise ConfigError(f"exempt: must be true or false, got {self.exempt!r}")
        limits = tuple(self.limits)
        if self.exempt and limits:
            raise ConfigError("exempt: an exempt rule takes no limit")
        if not self.exempt and not limits:
            raise ConfigError("limit: a rule needs 'limit' or 'limits' (or exempt = true)")
        for limit in limits:
            if not isinstance(limit, Limit):
                raise ConfigError(f"limits: expected Limit objects, got {limit!r}")
            if cost_cap > limit.capacity:
                raise ConfigError(
                    f"cost: {cost} is more than the capacity of {limit} ({limit.capacity}), "
                    "so every request would be rejected"
                )
        tiered = [lim for tier in self.tiers.values() for lim in tier or ()]
        check_charge_rule(self.charge, [*limits, *tiered], self.count, self.is_concurrency)
        if len(limits) == 1:
            names = [self.name]
        else:
            names = [f"{self.name}.{i}" for i in range(len(limits))]
        set_(
            self,
            "limits",
            tuple(
                limit if limit.name == name else replace(limit, name=name)
                for limit, name in zip(limits, names, strict=True)
            ),
        )

    @property
    def has_policies(self) -> bool:
        """Whether the rule needs more than a fixed decision (its own group in a plan)."""
        return bool(
            self.tier is not None
            or callable(self.cost)
            or self.count != "all"
            or self.ban is not None
            or self.allow
            or self.deny
            or self.is_concurrency
            or self.charge is not None
        )

    @property
    def is_concurrency(self) -> bool:
        """Whether the rule limits requests in flight (``algorithm = "concurrency"``)."""
        return any(limit.algorithm == "concurrency" for limit in self.limits)

    @property
    def quota_unit(self) -> str:
        """The unit of the rule's quotas in ``RateLimit-Policy`` (``qu``)."""
        if self.unit is not None:
            return self.unit
        if self.is_concurrency:
            return "concurrent-requests"
        if self.cost is content_length:
            return "content-bytes"
        return "requests"

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to ``method`` (any case) and a normalised ``path``."""
        return self.applies(method.upper(), path, split_path(path))

    def applies(self, method: str, path: str, segments: Sequence[str]) -> bool:
        """:meth:`matches` for an upper-case method and a path already split by
        :func:`split_path` (the engine splits once for every rule)."""
        if self._methods is not None and method not in self._methods:
            return False
        if self._exact is not None:
            return path == self._exact
        assert self._pattern is not None
        return match_segments(self._pattern, segments)

    def counter_key(self, identity: str, kind: KeySpec | None = None, ipv6_prefix: int = 64) -> str:
        """The backend key this rule's counters use for a client ``identity``.

        ``identity`` is what the rule's key yields: an address (IPv6 addresses are cut to
        ``ipv6_prefix`` bits, as the middleware does), a header value, a user id. Clients of
        a ``user`` or ``header:`` rule without one are counted by address: pass ``kind="ip"``
        for those. A rule whose ``key`` is ``None`` inherits the config's key, which the rule
        does not know (it assumes ``ip``): prefer
        :meth:`Config.counter_key <ratelimit.Config.counter_key>`, which also applies the
        config's ``ipv6_prefix``. Use it with :attr:`limits` to inspect or reset a client::

            rule = config.rule("login")
            limiter.peek(config.counter_key("login", "203.0.113.7"), *rule.limits)
        """
        spec = kind if kind is not None else (self.key or "ip")
        return counter_key(spec, identity, ipv6_prefix)

    def describe(self) -> dict[str, Any]:
        """A plain summary (for ``ratelimit check``): name, path, methods, limits, key, ..."""
        key = self.key
        return {
            "name": self.name,
            "path": self.path,
            "methods": list(self.methods) if self.methods else None,
            "limits": [str(limit) for limit in self.limits],
            "key": key if isinstance(key, str) or key is None else key_prefix(key)[7:-1],
            "cost": self.cost if isinstance(self.cost, int) else _callable_name(self.cost),
            "exempt": self.exempt,
            "tiers": {
                name: "exempt" if limits is None else [str(limit) for limit in limits]
                for name, limits in self.tiers.items()
            },
            "count": self.count if isinstance(self.count, str) else sorted(self.count),
            "ban": None
            if self.ban is None
            else f"after {self.ban.after} in {self.ban.within:g}s: {self.ban.duration:g}s",
            "allow": [str(n) for n in self.allow],
            "deny": [str(n) for n in self.deny],
            "charge": None if self.charge is None else self.charge.describe(),
            "unit": self.quota_unit,
        }

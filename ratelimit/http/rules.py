"""Rules: which paths and methods a set of limits applies to, compiled once at start-up.

A rule's ``path`` is matched segment by segment against the request path:

- ``/auth/login`` matches exactly that path;
- ``*`` and ``{param}`` match exactly one non-empty segment (``/users/{id}/posts``);
- ``**`` matches any number of segments, none included (``/api/**`` matches ``/api``,
  ``/api/`` and ``/api/v1/items``).

Request paths are normalised before matching: repeated slashes are collapsed and a trailing
slash is ignored, so ``//auth/login/`` cannot dodge the ``/auth/login`` rule. Methods are
upper case; a rule for ``GET`` also covers ``HEAD`` (frameworks answer HEAD with the GET
handler). WebSocket handshakes are matched as ``GET``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ratelimit.errors import ConfigError
from ratelimit.limits import Limit

if TYPE_CHECKING:
    from ratelimit.http.keys import RequestInfo

__all__ = ["KeyFunc", "KeySpec", "Rule", "normalize_path"]

#: A key function: given the request, the client identity (``None`` falls back to ``ip``).
KeyFunc = Callable[["RequestInfo"], "str | None"]
#: What a ``key`` setting may be: ``ip``, ``user``, ``global``, ``header:<name>``,
#: ``"module:callable"``, or a Python callable.
KeySpec = str | KeyFunc

_METHOD_RE = re.compile(r"^[A-Z]+$")
_PARAM_RE = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")
#: Identities longer than this are replaced by their SHA-256, so a 10 kB header value cannot
#: become a 10 kB key in the backend.
_MAX_IDENTITY = 200


def normalize_path(path: str) -> str:
    """Collapse repeated slashes and drop a trailing slash (``/`` stays ``/``)."""
    if "//" in path:
        path = re.sub("/{2,}", "/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def _compile_path(path: str) -> tuple[str | None, re.Pattern[str] | None]:
    """``(exact, None)`` for a literal path, else ``(None, regex)``; ConfigError if invalid."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"a path must be text starting with '/', got {path!r}")
    segments = normalize_path(path).split("/")[1:]
    if not any(s == "*" or s == "**" or s.startswith("{") for s in segments):
        if "*" in path or "{" in path or "}" in path:
            raise ConfigError(
                f"invalid path {path!r}: '*', '**' and '{{param}}' must be whole segments"
            )
        return normalize_path(path), None
    pattern = ""
    for segment in segments:
        if segment == "**":
            pattern += "(?:/.*)?"
        elif segment == "*" or _PARAM_RE.match(segment):
            pattern += "/[^/]+"
        elif "*" in segment or "{" in segment or "}" in segment:
            raise ConfigError(
                f"invalid path {path!r}: '*', '**' and '{{param}}' must be whole segments "
                f"(bad segment {segment!r})"
            )
        else:
            pattern += "/" + re.escape(segment)
    return None, re.compile(pattern or "/", re.DOTALL)


def key_prefix(spec: KeySpec) -> str:
    """The counter-key prefix of a key spec: what kind of identity the counters hold."""
    if callable(spec):
        name = getattr(spec, "__qualname__", None) or type(spec).__qualname__
        return f"custom:{getattr(spec, '__module__', '?')}.{name}:"
    if spec == "global":
        return "global"
    if spec.startswith("header:"):
        return f"header:{spec[7:].lower()}:"
    if spec in ("ip", "user"):
        return f"{spec}:"
    return f"custom:{spec}:"


def bounded_identity(identity: str) -> str:
    """``identity``, or its SHA-256 when it is too long to be a backend key."""
    if len(identity) <= _MAX_IDENTITY:
        return identity
    return "sha256:" + hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


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
        cost: what one request costs (≥ 1).
        exempt: a matching exempt rule stops the walk: later rules do not apply.
    """

    name: str
    path: str
    methods: tuple[str, ...] | None = None
    limits: tuple[Limit, ...] = ()
    key: KeySpec | None = None
    cost: int = 1
    exempt: bool = False
    _exact: str | None = field(init=False, repr=False, compare=False)
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _methods: frozenset[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name: must be non-empty text, got {self.name!r}")
        try:
            exact, regex = _compile_path(self.path)
        except ConfigError as exc:
            raise ConfigError(f"path: {exc}") from None
        set_(self, "_exact", exact)
        set_(self, "_regex", regex)
        methods = self.methods
        if methods is not None:
            if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
                raise ConfigError(f"methods: must be a non-empty list, got {methods!r}")
            upper = []
            for method in methods:
                if not isinstance(method, str) or not _METHOD_RE.match(method.upper()):
                    raise ConfigError(f"methods: invalid method {method!r}")
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
        if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
            raise ConfigError(f"cost: must be a whole number of at least 1, got {cost!r}")
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

    def matches(self, method: str, path: str) -> bool:
        """Whether the rule applies to ``method`` and an already normalised ``path``."""
        if self._methods is not None and method not in self._methods:
            return False
        if self._exact is not None:
            return path == self._exact
        assert self._regex is not None
        return self._regex.fullmatch(path) is not None

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
        prefix = key_prefix(spec)
        if prefix == "global":
            return prefix
        if spec == "ip":
            from ratelimit.http.keys import normalize_ip

            identity = normalize_ip(identity, ipv6_prefix) or identity
        return prefix + bounded_identity(identity)

    def describe(self) -> dict[str, Any]:
        """A plain summary (for ``ratelimit check``): name, path, methods, limits, key, ..."""
        key = self.key
        return {
            "name": self.name,
            "path": self.path,
            "methods": list(self.methods) if self.methods else None,
            "limits": [str(limit) for limit in self.limits],
            "key": key if isinstance(key, str) or key is None else key_prefix(key)[7:-1],
            "cost": self.cost,
            "exempt": self.exempt,
        }

"""Middleware configuration: a TOML file, a dict of the same shape, or a :class:`Config`.

Every mistake raises :class:`~ratelimit.ConfigError` at start-up, naming the source, the
key and the rule index, for example::

    ratelimit.toml: rules[2].limit: invalid rate '10/fortnight': unknown unit 'fortnight' ...

Unknown keys are rejected with the list of valid ones.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from ipaddress import ip_network
from typing import Any

from ratelimit.errors import ConfigError
from ratelimit.http.headers import HEADER_MODES
from ratelimit.http.keys import validate_key
from ratelimit.http.rules import KeySpec, Rule
from ratelimit.limits import Limit

__all__ = ["ON_ERROR_MODES", "PROXY_HEADERS", "Config", "load_config"]

#: The values of ``on_error``: fail open, or answer 503.
ON_ERROR_MODES = ("allow", "deny")
#: The values of ``proxy_header``: which header trusted proxies set.
PROXY_HEADERS = ("x-forwarded-for", "forwarded")

_TOP_KEYS = (
    "backend",
    "key",
    "headers",
    "on_error",
    "trusted_proxies",
    "ipv6_prefix",
    "proxy_header",
    "shadow",
    "max_delay",
    "rules",
)
_RULE_KEYS = (
    "name",
    "path",
    "methods",
    "limit",
    "limits",
    "algorithm",
    "burst",
    "mode",
    "key",
    "cost",
    "exempt",
)


def _unknown(keys: Any, valid: Sequence[str], where: str) -> None:
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise ConfigError(
            f"{where}unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(k) for k in unknown)} (valid keys: {', '.join(valid)})"
        )


def _rule_name(data: Mapping[str, Any], taken: set[str]) -> str:
    """A stable name for an unnamed rule: ``"<METHODS> <path>"``, suffixed when repeated."""
    methods = data.get("methods")
    path = str(data.get("path"))
    base = path
    if isinstance(methods, list | tuple) and methods:
        base = f"{','.join(str(m).upper() for m in methods)} {path}"
    name, n = base, 2
    while name in taken:
        name, n = f"{base} #{n}", n + 1
    return name


def compile_rule(
    data: Mapping[str, Any], *, name: str, max_delay: float | None, where: str = ""
) -> Rule:
    """Build one :class:`Rule` from its table (errors prefixed with ``where``)."""
    _unknown(data.keys(), _RULE_KEYS, where)
    if "path" not in data:
        raise ConfigError(f"{where}path: missing (every rule needs a path)")
    if "limit" in data and "limits" in data:
        raise ConfigError(f"{where}limits: give either 'limit' or 'limits', not both")
    rates: list[Any]
    field_name = "limits" if "limits" in data else "limit"
    if "limits" in data:
        rates = data["limits"]
        if isinstance(rates, str) or not isinstance(rates, list | tuple) or not rates:
            raise ConfigError(f"{where}limits: must be a non-empty list of rates, got {rates!r}")
    elif "limit" in data:
        rates = [data["limit"]]
    else:
        rates = []
    exempt = data.get("exempt", False)
    if exempt is True and (set(data) & {"algorithm", "burst", "mode", "key", "cost"}):
        extra = sorted(set(data) & {"algorithm", "burst", "mode", "key", "cost"})
        raise ConfigError(f"{where}{extra[0]}: an exempt rule takes no limit options")
    algorithm = data.get("algorithm", "fixed_window")
    options: dict[str, Any] = {
        "algorithm": algorithm,
        "burst": data.get("burst"),
        "mode": data.get("mode"),
    }
    shaping = algorithm == "leaky_bucket" and options["mode"] in (None, "shape")
    if shaping and max_delay is not None:
        options["max_delay"] = max_delay
    limits = []
    for i, rate in enumerate(rates):
        label = field_name if field_name == "limit" else f"limits[{i}]"
        try:
            limits.append(Limit(rate, **options))
        except ConfigError as exc:
            text = str(exc)
            culprit = label
            for option in ("algorithm", "burst", "mode"):
                if text.startswith(
                    (f"unknown {option}", f"{option} ", f"unknown leaky_bucket {option}")
                ):
                    culprit = option
            raise ConfigError(f"{where}{culprit}: {text}") from None
    if not rates and (options["burst"] is not None or "algorithm" in data):
        raise ConfigError(f"{where}limit: missing (a rule needs 'limit' or 'limits')")
    key: KeySpec | None = data.get("key")
    if key is not None:
        try:
            validate_key(key)
        except ConfigError as exc:
            raise ConfigError(f"{where}key: {exc}") from None
    try:
        return Rule(
            name=name,
            path=data["path"],
            methods=data.get("methods"),
            limits=tuple(limits),
            key=key,
            cost=data.get("cost", 1),
            exempt=exempt,
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The middleware configuration (see the docs for every key).

    Build it with :func:`load_config` from a TOML file or a dict, or directly; ``rules``
    may be given as :class:`Rule` objects or as dicts of the TOML shape. Invalid values
    raise :class:`~ratelimit.ConfigError` naming the key.

    Attributes:
        backend: the backend URL (``memory://``, ``redis://host:6379/0``, ...).
        key: the default client identity of the rules.
        headers: ``ietf``, ``legacy``, ``both`` or ``none``.
        on_error: ``allow`` (fail open) or ``deny`` (503) when the backend fails.
        trusted_proxies: CIDRs of the proxies whose forwarding header is believed.
        ipv6_prefix: IPv6 clients are counted per network of this many bits.
        proxy_header: ``x-forwarded-for`` (default) or ``forwarded``: the header the trusted
            proxies set; only that one is read.
        shadow: decide and report, never reject nor delay.
        max_delay: the longest leaky-bucket shaping wait in seconds (``None``: no cap).
        rules: the compiled rules, in order.
        source: where the config came from, for error messages.
    """

    backend: str = "memory://"
    key: KeySpec = "ip"
    headers: str = "ietf"
    on_error: str = "allow"
    trusted_proxies: tuple[str, ...] = ()
    ipv6_prefix: int = 64
    proxy_header: str = "x-forwarded-for"
    shadow: bool = False
    max_delay: float | None = 5.0
    rules: tuple[Rule, ...] = ()
    source: str = field(default="config", compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        src = f"{self.source}: "
        if not isinstance(self.backend, str) or "://" not in self.backend:
            raise ConfigError(
                f"{src}backend: expected a URL such as 'memory://' or 'redis://localhost:6379/0',"
                f" got {self.backend!r}"
            )
        try:
            validate_key(self.key)
        except ConfigError as exc:
            raise ConfigError(f"{src}key: {exc}") from None
        for name, valid in (
            ("headers", HEADER_MODES),
            ("on_error", ON_ERROR_MODES),
            ("proxy_header", PROXY_HEADERS),
        ):
            value = getattr(self, name)
            if isinstance(value, str) and name == "proxy_header":
                value = value.lower()
                set_(self, name, value)
            if value not in valid:
                raise ConfigError(f"{src}{name}: must be one of {', '.join(valid)}, got {value!r}")
        proxies = self.trusted_proxies
        if isinstance(proxies, str) or not isinstance(proxies, Sequence):
            raise ConfigError(f"{src}trusted_proxies: must be a list of CIDRs, got {proxies!r}")
        for i, cidr in enumerate(proxies):
            try:
                ip_network(cidr, strict=False)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{src}trusted_proxies[{i}]: invalid network {cidr!r} "
                    "(expected a CIDR such as '10.0.0.0/8' or an address)"
                ) from None
        set_(self, "trusted_proxies", tuple(proxies))
        prefix = self.ipv6_prefix
        if isinstance(prefix, bool) or not isinstance(prefix, int) or not 1 <= prefix <= 128:
            raise ConfigError(f"{src}ipv6_prefix: must be a whole number 1..128, got {prefix!r}")
        if not isinstance(self.shadow, bool):
            raise ConfigError(f"{src}shadow: must be true or false, got {self.shadow!r}")
        delay = self.max_delay
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not math.isfinite(delay)
            or delay < 0
        ):
            raise ConfigError(f"{src}max_delay: must be a number of seconds ≥ 0, got {delay!r}")
        set_(self, "rules", self._compile_rules(src))

    def _compile_rules(self, src: str) -> tuple[Rule, ...]:
        rules = self.rules
        if isinstance(rules, str | Mapping) or not isinstance(rules, Sequence):
            raise ConfigError(f"{src}rules: must be a list of rule tables, got {rules!r}")
        compiled: list[Rule] = []
        taken: set[str] = set()
        explicit = {
            r.get("name") if isinstance(r, Mapping) else getattr(r, "name", None) for r in rules
        }
        for index, item in enumerate(rules):
            where = f"{src}rules[{index}]."
            if isinstance(item, Rule):
                rule = item
            elif isinstance(item, Mapping):
                name = item.get("name")
                if name is None:
                    name = _rule_name(item, taken | {n for n in explicit if isinstance(n, str)})
                elif not isinstance(name, str) or not name:
                    raise ConfigError(f"{where}name: must be non-empty text, got {name!r}")
                rule = compile_rule(item, name=name, max_delay=self.max_delay, where=where)
            else:
                raise ConfigError(f"{where[:-1]}: must be a table, got {item!r}")
            if rule.name in taken:
                raise ConfigError(
                    f"{where}name: duplicate rule name {rule.name!r} (each rule counts "
                    "separately, so names must be unique)"
                )
            taken.add(rule.name)
            compiled.append(rule)
        return tuple(compiled)

    def rule(self, name: str) -> Rule:
        """The rule called ``name`` (``KeyError`` if there is none)."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def counter_key(self, rule: str | Rule, identity: str, kind: KeySpec | None = None) -> str:
        """The backend key rule ``rule`` (a name or a Rule) counts client ``identity`` under.

        ``kind="ip"`` for clients of a ``user`` / ``header:`` / custom rule that are counted
        by address (no user, no header).
        """
        if isinstance(rule, str):
            rule = self.rule(rule)
        return rule.counter_key(identity, kind or self.key_of(rule), self.ipv6_prefix)

    def key_of(self, rule: Rule) -> KeySpec:
        """The key spec ``rule`` uses: its own, else the config's ``key``."""
        return rule.key if rule.key is not None else self.key

    def with_rules(self, rules: Sequence[Rule]) -> Config:
        """A copy with other rules (used by the decorators)."""
        return replace(self, rules=tuple(rules))


def _from_mapping(data: Mapping[str, Any], source: str) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table of settings, got {data!r}")
    _unknown(data.keys(), _TOP_KEYS, f"{source}: ")
    values = dict(data)
    if "trusted_proxies" in values and isinstance(values["trusted_proxies"], list):
        values["trusted_proxies"] = tuple(values["trusted_proxies"])
    return Config(**values, source=source)


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | Config | None = None,
    *,
    name: str | None = None,
) -> Config:
    """A :class:`Config` from a TOML file path, a dict of the same shape, or a ``Config``.

    ``None`` gives the defaults (no rules). ``name`` names a dict source in error messages
    (default ``"config"``; Django uses ``"settings.RATELIMIT"``).
    """
    if source is None:
        return Config(source=name or "config")
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        return _from_mapping(source, name or "config")
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        return _from_mapping(data, name or path)
    raise ConfigError(f"config must be a TOML path, a dict or a Config, got {source!r}")

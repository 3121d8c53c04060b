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
from typing import Any

from ratelimit.backends import validate_url
from ratelimit.errors import ConfigError
from ratelimit.http.headers import HEADER_MODES
from ratelimit.http.keys import (
    ClientIdentity,
    KeySpec,
    compile_key,
    is_async_callable,
    validate_key,
)
from ratelimit.http.metrics_config import MetricsConfig, parse_metrics
from ratelimit.http.policies import (
    Network,
    compile_cost,
    compile_tier,
    parse_ban,
    parse_charge,
    parse_count,
    parse_networks,
    parse_unit,
)
from ratelimit.http.rules import Rule
from ratelimit.limits import BUCKETS, Limit
from ratelimit.rate import Rate, parse_duration

__all__ = ["ON_ERROR_MODES", "PROXY_HEADERS", "Config", "async_settings", "load_config"]

#: The values of ``on_error``: fail open, answer 503, or decide in process memory.
ON_ERROR_MODES = ("allow", "deny", "local")
#: The longest wait for the backend per decision, seconds, when neither ``timeout`` nor the
#: backend URL's ``?timeout=`` says otherwise.
DEFAULT_TIMEOUT = 0.1
#: The options a ``limits`` table item takes.
_LIMIT_ITEM_KEYS = ("rate", "algorithm", "burst", "mode", "share")
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
    "timeout",
    "local_fraction",
    "allow",
    "deny",
    "reload",
    "metrics",
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
    "share",
    "key",
    "cost",
    "exempt",
    "tier",
    "tiers",
    "count",
    "ban",
    "lease",
    "allow",
    "deny",
    "charge",
    "unit",
)
#: The keys of a rule's ``ban`` table.
_BAN_KEYS = ("after", "within", "duration")
#: How long a concurrency slot is held at most when ``lease`` is not given, seconds.
DEFAULT_LEASE = 60.0


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


def _compile_limit(
    item: Any, defaults: Mapping[str, Any], max_delay: float | None, label: str, where: str
) -> Limit:
    """One :class:`Limit` from a rate text or a ``{ rate, algorithm, burst, mode }`` table;
    the table's options override the rule's."""
    options = dict(defaults)
    rate = item
    if isinstance(item, Mapping):
        _unknown(item.keys(), _LIMIT_ITEM_KEYS, f"{where}{label}: ")
        if "rate" not in item:
            raise ConfigError(f"{where}{label}.rate: missing (a limit table needs a rate)")
        rate = item["rate"]
        for option in ("algorithm", "burst", "mode", "share"):
            if option in item:
                options[option] = item[option]
    algorithm = options["algorithm"]
    if isinstance(item, Mapping):  # the rule's burst and mode are for its buckets only
        if algorithm != "leaky_bucket" and "mode" not in item:
            options["mode"] = None
        if algorithm not in BUCKETS and "burst" not in item:
            options["burst"] = None
    shaping = algorithm == "leaky_bucket" and options["mode"] in (None, "shape")
    if shaping and max_delay is not None:
        options["max_delay"] = max_delay
    try:
        return Limit(rate, **options)
    except ConfigError as exc:
        text = str(exc)
        culprit = label
        for option in ("algorithm", "burst", "mode", "share"):
            if text.startswith(
                (f"unknown {option}", f"{option} ", f"unknown leaky_bucket {option}")
            ):
                culprit = (
                    f"{label}.{option}" if isinstance(item, Mapping) and option in item else option
                )
        raise ConfigError(f"{where}{culprit}: {text}") from None


def _concurrency_limit(data: Mapping[str, Any], rates: list[Any], where: str) -> Limit:
    """``algorithm = "concurrency"``: ``limit = N`` requests in flight, held at most
    ``lease`` (default 60 s) each."""
    for option in ("burst", "mode"):
        if option in data:
            raise ConfigError(f"{where}{option}: not for a concurrency rule")
    if "share" in data:
        raise ConfigError(
            f"{where}share: not for a concurrency rule (a slot is given back after the "
            "response; lease is how long a slot is held)"
        )
    if len(rates) != 1 or "limits" in data:
        raise ConfigError(f"{where}limit: a concurrency rule takes one 'limit = N'")
    count = rates[0]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigError(
            f"{where}limit: a concurrency limit is a whole number of requests in flight ≥ 1, "
            f"got {count!r}"
        )
    lease = _option(where, "lease", parse_duration, data.get("lease", DEFAULT_LEASE))
    return Limit(Rate(count, lease), "concurrency")


def _check_shared_burst(data: Mapping[str, Any], limits: Sequence[Limit], where: str) -> None:
    """Refuse one rule-level ``burst`` shared by limits of different periods: the long
    limit's bucket would then hold only ``burst`` and refill at its own slow rate, admitting
    far less than either limit says (``burst = 20`` on ``["10/second", "1000/hour"]`` lets
    about 21 requests through in 4 s, not 60)."""
    if data.get("burst") is None or len(limits) < 2:
        return
    periods = {limit.rate.period for limit in limits if limit.burst == data["burst"]}
    if len(periods) > 1:
        first = limits[0]
        tables = ", ".join(
            f'{{ rate = "{lim.rate}", burst = {data["burst"]} }}' if i == 0 else f'"{lim.rate}"'
            for i, lim in enumerate(limits)
        )
        raise ConfigError(
            f"{where}burst: one burst ({data['burst']}) is shared by limits of different "
            f"periods, which caps the longer limit's bucket at {data['burst']} refilling at "
            f"its own slow rate; give each limit its own burst in the table form, for "
            f"example: limits = [{tables}] (burst applies to '{first.rate}' only)"
        )


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
    if exempt is True and (set(data) & {"algorithm", "burst", "mode", "share", "key", "cost"}):
        extra = sorted(set(data) & {"algorithm", "burst", "mode", "share", "key", "cost"})
        raise ConfigError(f"{where}{extra[0]}: an exempt rule takes no limit options")
    algorithm = data.get("algorithm", "fixed_window")
    defaults: dict[str, Any] = {
        "algorithm": algorithm,
        "burst": data.get("burst"),
        "mode": data.get("mode"),
        "share": data.get("share"),
    }
    if algorithm == "concurrency":
        limits = [_concurrency_limit(data, rates, where)]
    else:
        limits = [
            _compile_limit(
                rate,
                defaults,
                max_delay,
                field_name if field_name == "limit" else f"limits[{i}]",
                where,
            )
            for i, rate in enumerate(rates)
        ]
    _check_shared_burst(data, limits, where)
    if not rates and (defaults["burst"] is not None or "algorithm" in data):
        raise ConfigError(f"{where}limit: missing (a rule needs 'limit' or 'limits')")
    key: KeySpec | None = data.get("key")
    if key is not None:
        try:
            validate_key(key)
        except ConfigError as exc:
            raise ConfigError(f"{where}key: {exc}") from None
    policies = _compile_policies(data, name, defaults, max_delay, limits, where)
    try:
        return Rule(
            name=name,
            path=data["path"],
            methods=data.get("methods"),
            limits=tuple(limits),
            key=key,
            exempt=exempt,
            **policies,
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def _option(where: str, key: str, parse: Any, value: Any) -> Any:
    """``parse(value)``, with a ConfigError naming ``where`` + ``key``."""
    try:
        return parse(value)
    except ConfigError as exc:
        text = str(exc)
        sep = "" if text.startswith("[") else ": "
        raise ConfigError(f"{where}{key}{sep}{text}") from None


def _compile_policies(
    data: Mapping[str, Any],
    name: str,
    defaults: Mapping[str, Any],
    max_delay: float | None,
    limits: list[Limit],
    where: str,
) -> dict[str, Any]:
    """The policy fields of a rule (SPEC §5 "Policies"), checked against each other."""
    out: dict[str, Any] = {}
    if data.get("exempt") is True:
        policy_keys = {"tier", "tiers", "count", "ban", "lease", "allow", "deny", "charge", "unit"}
        extra = sorted(set(data) & policy_keys)
        if extra:
            raise ConfigError(f"{where}{extra[0]}: an exempt rule takes no policy")
        return out
    if "cost" in data:
        out["cost"] = _option(where, "cost", compile_cost, data["cost"])
    concurrency = defaults["algorithm"] == "concurrency"
    if concurrency:
        for option in ("tier", "tiers", "count", "ban"):
            if option in data:
                raise ConfigError(
                    f"{where}{option}: not for a concurrency rule (it limits requests in "
                    "flight, not a rate)"
                )
    elif "lease" in data:
        raise ConfigError(f'{where}lease: only for algorithm = "concurrency"')
    if "count" in data:
        out["count"] = _option(where, "count", parse_count, data["count"])
        if out["count"] != "all" and any(lim.share is not None for lim in limits):
            raise ConfigError(
                f"{where}share: a rule with count is counted after the response, even past "
                "the limit; units taken ahead would add to that overshoot: remove share or count"
            )
        shaped = [lim for lim in limits if lim.algorithm == "leaky_bucket" and lim.mode == "shape"]
        if shaped and out["count"] != "all":
            raise ConfigError(
                f"{where}count: a shaping leaky bucket delays a request by what it adds to the "
                'queue, which is not known before the response; use mode = "police" or '
                "another algorithm with count"
            )
    if "ban" in data:
        out["ban"] = _option(where, "ban", parse_ban, data["ban"])
    for option, parse in (("charge", parse_charge), ("unit", parse_unit)):
        if option in data:
            out[option] = _option(where, option, parse, data[option])
    for option in ("allow", "deny"):
        if option in data:
            out[option] = _option(where, option, parse_networks, data[option])
    if "tiers" in data and "tier" not in data:
        raise ConfigError(f"{where}tiers: needs 'tier' (what picks a request's tier)")
    if "tier" in data:
        out["tier"] = _option(where, "tier", compile_tier, data["tier"])
        out["tiers"] = _compile_tiers(data.get("tiers", {}), name, defaults, max_delay, where)
    return out


def _compile_tiers(
    tiers: Any,
    rule: str,
    defaults: Mapping[str, Any],
    max_delay: float | None,
    where: str,
) -> dict[str, tuple[Limit, ...] | None]:
    """``[rules.tiers]``: tier name → rate, list of rates / limit tables, or ``"exempt"``."""
    if not isinstance(tiers, Mapping) or not tiers:
        raise ConfigError(f"{where}tiers: must be a table of tier = limits, got {tiers!r}")
    out: dict[str, tuple[Limit, ...] | None] = {}
    for tier, value in tiers.items():
        label = f"tiers.{tier}"
        if not tier or not all(c.isalnum() or c in "-_" for c in tier):
            raise ConfigError(f"{where}{label}: tier names are letters, digits, '-' and '_'")
        if value == "exempt":
            out[tier] = None
            continue
        items = value if isinstance(value, list | tuple) else [value]
        if not items:
            raise ConfigError(f'{where}{label}: a tier needs at least one limit, or "exempt"')
        made = [
            _compile_limit(item, defaults, max_delay, f"{label}[{i}]", where)
            for i, item in enumerate(items)
        ]
        names = (
            [f"{rule}.{tier}"]
            if len(made) == 1
            else [f"{rule}.{tier}.{i}" for i in range(len(made))]
        )
        out[tier] = tuple(replace(lim, name=n) for lim, n in zip(made, names, strict=True))
    return out


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
        on_error: ``allow`` (fail open), ``deny`` (503) or ``local`` (decide in process
            memory, each limit times ``local_fraction``) when the backend fails.
        trusted_proxies: CIDRs of the proxies whose forwarding header is believed.
        ipv6_prefix: IPv6 clients are counted per network of this many bits.
        proxy_header: ``x-forwarded-for`` (default) or ``forwarded``: the header the trusted
            proxies set; only that one is read.
        shadow: decide and report, never reject nor delay.
        max_delay: the longest leaky-bucket shaping wait in seconds (``None``: no cap).
        timeout: the longest wait for the backend per decision, seconds, connecting
            included (``None``: the URL's ``?timeout=``, else 0.1).
        local_fraction: with ``on_error = "local"``, the share of each limit one process
            enforces on its own while the backend fails (``0.25`` for 4 workers).
        allow: client networks never limited (not counted, no headers).
        deny: client networks always refused with 403 problem+json.
        reload: re-read the TOML file when it changes (the middleware, not this object).
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
    timeout: float | None = None
    local_fraction: float = 1.0
    allow: tuple[Network, ...] = ()
    deny: tuple[Network, ...] = ()
    reload: bool = False
    rules: tuple[Rule, ...] = ()
    #: The ``[metrics]`` table (:class:`~ratelimit.metrics.MetricsConfig`; a dict is parsed).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    source: str = field(default="config", compare=False)
    #: What ``ratelimit check`` prints as warnings: legal, but probably not what was meant.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        src = f"{self.source}: "
        if not isinstance(self.backend, str) or "://" not in self.backend:
            raise ConfigError(
                f"{src}backend: expected a URL such as 'memory://' or 'redis://localhost:6379/0',"
                f" got {self.backend!r}"
            )
        try:
            validate_url(self.backend)
        except ConfigError as exc:
            raise ConfigError(f"{src}backend: {exc}") from None
        timeout = self.timeout
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError(f"{src}timeout: must be a number of seconds > 0, got {timeout!r}")
        fraction = self.local_fraction
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not 0 < fraction <= 1
        ):
            raise ConfigError(f"{src}local_fraction: must be a number in (0, 1], got {fraction!r}")
        set_(self, "local_fraction", float(fraction))
        for name in ("allow", "deny"):
            value = getattr(self, name)
            if not (isinstance(value, tuple) and all(hasattr(n, "prefixlen") for n in value)):
                set_(self, name, _option(src, name, parse_networks, value))
        if not isinstance(self.reload, bool):
            raise ConfigError(f"{src}reload: must be true or false, got {self.reload!r}")
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
        _option(src, "trusted_proxies", parse_networks, proxies)  # checked; kept as text
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
        set_(self, "metrics", parse_metrics(self.metrics, self.source))
        warnings = list(self.warnings)
        if not self.rules:
            warnings.append(
                f"{src}rules: no rules, so nothing is limited (add [[rules]] tables, or "
                "attach limits in code with the decorators)"
            )
        set_(self, "warnings", tuple(warnings))

    def metrics_enabled(self) -> bool:
        """Whether metrics or the status page are on (the engine then records outcomes)."""
        return bool(getattr(getattr(self, "metrics", None), "enabled", False))

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
                raw = handle.read()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise ConfigError(
                f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at line {line}); "
                "TOML files must be UTF-8"
            ) from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        return _from_mapping(data, name or path)
    raise ConfigError(f"config must be a TOML path, a dict or a Config, got {source!r}")


def async_settings(cfg: Config, identity: ClientIdentity) -> tuple[str, ...]:
    """Where ``cfg`` names an ``async def`` key, tier, cost or charge function
    (``"<source>: rules[0].key"``, ...): a blocking adapter refuses them at start-up."""
    found = []
    if is_async_callable(compile_key(cfg.key, identity)):
        found.append(f"{cfg.source}: key")
    for index, rule in enumerate(cfg.rules):
        where = f"{cfg.source}: rules[{index}]."
        if rule.key is not None and is_async_callable(compile_key(rule.key, identity)):
            found.append(where + "key")
        if rule.tier is not None and is_async_callable(rule.tier):
            found.append(where + "tier")
        if callable(rule.cost) and is_async_callable(rule.cost):
            found.append(where + "cost")
        if rule.charge is not None and is_async_callable(rule.charge.func):
            found.append(where + "charge")
    return tuple(found)

"""``ratelimit check``, ``inspect`` and ``reset``: configs and counters, no HTTP involved.

``inspect`` and ``reset`` find the counters of one client either through a rule of a config
file (``--config FILE --rule NAME``: the rule's limits, and the backend key the middleware
builds for that client identity) or through a limit given on the command line
(``--limit RATE [--algorithm A] [--burst B] [--mode M] [--name N]``: KEY is the backend key).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

from ratelimit.backends import backend_from_url
from ratelimit.backends.redis_url import redact
from ratelimit.cli.report import format_table
from ratelimit.errors import ConfigError
from ratelimit.http.config import load_config
from ratelimit.limiter import Limiter
from ratelimit.limits import Limit

__all__ = ["Target", "resolve_target", "run_check", "run_inspect", "run_reset"]


def _key_text(spec: object, own: bool = True) -> str:
    text = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
    return str(text) if own else f"{text} (default)"


def _policies_text(info: dict[str, object]) -> str:
    """The policies of a rule summary, as one cell of the ``check`` table."""
    parts = []
    tiers = info.get("tiers") or {}
    assert isinstance(tiers, dict)
    for name, limits in tiers.items():
        text = limits if isinstance(limits, str) else "; ".join(limits)
        parts.append(f"tier {name}: {text}")
    count = info.get("count")
    if count not in (None, "all"):
        parts.append(f"count {count}")
    if info.get("ban"):
        parts.append(f"ban {info['ban']}")
    if info.get("charge"):
        parts.append(f"charge {info['charge']}")
    if info.get("unit") not in (None, "requests"):
        parts.append(f"unit {info['unit']}")
    for name in ("allow", "deny"):
        networks = info.get(name) or []
        assert isinstance(networks, list)
        if networks:
            parts.append(f"{name} {','.join(networks)}")
    return " | ".join(parts) or "-"


def run_check(args: argparse.Namespace) -> int:
    """Validate ``args.config`` and print its rules as a table."""
    config = load_config(args.config)
    rows = []
    for index, rule in enumerate(config.rules):
        info = rule.describe()
        methods = ",".join(info["methods"]) if info["methods"] else "*"
        limits = "; ".join(info["limits"]) if info["limits"] else "-"
        key = "-" if rule.exempt else _key_text(config.key_of(rule), rule.key is not None)
        rows.append(
            [
                str(index),
                rule.name,
                rule.path,
                methods,
                "exempt" if rule.exempt else limits,
                key,
                "-" if rule.exempt else str(info["cost"]),
                _policies_text(info),
            ]
        )
    print(
        f"{args.config}: OK, {len(config.rules)} rule{'s' if len(config.rules) != 1 else ''}; "
        f"backend {config.backend}, key {_key_text(config.key)}, headers "
        f"{config.headers}, on_error {config.on_error}, max_delay {config.max_delay}"
        + (", shadow mode" if config.shadow else "")
        + (f", allow {','.join(map(str, config.allow))}" if config.allow else "")
        + (f", deny {','.join(map(str, config.deny))}" if config.deny else "")
        + (", reload on change" if config.reload else "")
    )
    if rows:
        header = ["#", "name", "path", "methods", "limits", "key", "cost", "policies"]
        print(format_table(header, rows, "rlllllll"))
    for warning in config.warnings:
        print(f"warning: {warning}")
    url = getattr(args, "backend", None)
    if url is not None:
        _check_backend(url)
    return 0


def _check_backend(url: str) -> None:
    """Connect to ``url`` and check it can serve the limiter (ConfigError or BackendError
    when it cannot: the command then exits 1 with the message)."""
    backend = backend_from_url(url)
    check = getattr(backend, "check", None)
    if check is None:
        print(f"backend {redact(url)}: OK (in process: nothing to connect to)")
        return
    try:
        check()
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()
    print(f"backend {redact(url)}: OK (it answers and runs the Lua scripts)")


@dataclass(frozen=True, slots=True)
class Target:
    """Which counters a command acts on: a backend URL, a backend key and limits."""

    backend: str
    key: str
    limits: tuple[Limit, ...]
    label: str


def resolve_target(args: argparse.Namespace) -> Target:
    """The backend, key and limits named by the ``inspect`` / ``reset`` options."""
    config = load_config(args.config) if args.config is not None else None
    if args.rule is not None and args.limit is not None:
        raise ConfigError("give either --rule or --limit, not both")
    if args.rule is None and args.limit is None:
        raise ConfigError("say which counters: --rule NAME (with --config FILE) or --limit RATE")
    if args.rule is not None:
        if config is None:
            raise ConfigError("--rule needs --config FILE (the file that defines the rule)")
        for option in ("algorithm", "burst", "mode", "name"):
            if getattr(args, option) is not None:
                raise ConfigError(f"--{option} goes with --limit, not with --rule")
        try:
            rule = config.rule(args.rule)
        except KeyError:
            names = ", ".join(repr(r.name) for r in config.rules) or "none"
            raise ConfigError(
                f"--rule: {args.config} has no rule named {args.rule!r} (its rules: {names})"
            ) from None
        if rule.exempt:
            raise ConfigError(f"--rule: rule {rule.name!r} is exempt: it has no counters")
        spec = config.key_of(rule)
        key = rule.counter_key(args.key, kind=spec if isinstance(spec, str) else None)
        limits = rule.limits
        label = f"rule {rule.name!r}"
    else:
        try:
            limit = Limit(
                args.limit,
                algorithm=args.algorithm or "fixed_window",
                burst=args.burst,
                name=args.name,
                mode=args.mode,
            )
        except ConfigError as exc:
            raise ConfigError(f"--limit: {exc}") from None
        key, limits, label = args.key, (limit,), f"limit {limit}"
    backend = args.backend or (config.backend if config is not None else None)
    if backend is None:
        raise ConfigError("--backend URL is needed (or --config FILE, to use its backend)")
    return Target(backend, key, tuple(limits), label)


def _limiter(target: Target) -> Limiter:
    if target.backend.startswith("memory:"):
        print(
            "ratelimit: note: a memory:// backend lives inside the process that serves the "
            "requests; this command only sees its own, empty one",
            file=sys.stderr,
        )
    return Limiter(backend_from_url(target.backend))


def _close(limiter: Limiter) -> None:
    close = getattr(limiter.backend, "close", None)
    if callable(close):
        close()


def _seconds(value: float) -> float | None:
    return None if math.isinf(value) else round(value, 3)


def run_inspect(args: argparse.Namespace) -> int:
    """Print the state of a client's counters, consuming nothing."""
    target = resolve_target(args)
    limiter = _limiter(target)
    try:
        decisions = [limiter.peek(target.key, limit) for limit in target.limits]
        overall = limiter.peek(target.key, *target.limits)
    finally:
        _close(limiter)
    if args.json:
        print(
            json.dumps(
                {
                    "backend": target.backend,
                    "key": target.key,
                    "allowed": overall.allowed,
                    "retry_after": _seconds(overall.retry_after),
                    "limits": [
                        {
                            "id": d.policy.id,
                            "limit": str(d.policy),
                            "capacity": d.limit,
                            "remaining": d.remaining,
                            "reset_after": _seconds(d.reset_after),
                            "retry_after": _seconds(d.retry_after),
                            "allowed": d.allowed,
                        }
                        for d in decisions
                    ],
                },
                indent=2,
            )
        )
        return 0
    print(f"{target.label}, backend {target.backend}, key {target.key!r}")
    rows = [
        [
            d.policy.id,
            str(d.policy),
            str(d.limit),
            str(d.remaining),
            f"{d.reset_after:.3f}",
            f"{d.retry_after:.3f}",
        ]
        for d in decisions
    ]
    header = ["counter", "limit", "capacity", "remaining", "reset s", "retry s"]
    print(format_table(header, rows, "llrrrr"))
    if overall.allowed:
        print("a request now would be admitted")
    else:
        print(f"a request now would be rejected: retry in {overall.retry_after:.3f} s")
    return 0


def run_reset(args: argparse.Namespace) -> int:
    """Forget a client's counters: its next request starts fresh."""
    target = resolve_target(args)
    limiter = _limiter(target)
    try:
        limiter.reset(target.key, *target.limits)
    finally:
        _close(limiter)
    counters = ", ".join(limit.id for limit in target.limits)
    print(f"reset key {target.key!r} ({target.label}; counters {counters}) in {target.backend}")
    return 0

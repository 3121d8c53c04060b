"""``ratelimit top``: the client identities rejected most per rule over the last minutes.

Reads what the middleware's workers wrote to a Redis backend (SPEC §7: written only on
rejections, one sorted set per rule and minute, kept 15 minutes), so the answer covers every
worker and server sharing that Redis. The memory backend keeps its counts inside the server
process: ask its status page (``[metrics] status_path``) or ``engine.top()`` instead.

Only workers with a ``[metrics]`` option record rejections. An empty list therefore says
"nobody was rejected" only while some worker keeps the recording marker alive (see
:mod:`ratelimit.metrics.top`); without it, the command says that rejections are not being
recorded and how to turn recording on, since an empty list would then prove nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ratelimit.cli.report import format_table
from ratelimit.errors import ConfigError
from ratelimit.metrics.top import MINUTES, RedisTop

__all__ = ["NOT_RECORDING", "run_top"]

#: What ``ratelimit top`` says when no worker records rejections (no recording marker).
NOT_RECORDING = (
    "rejections are not being recorded: no worker using this Redis has recorded any in the "
    f"last {MINUTES} minutes, so an empty list says nothing about who was rejected.\n"
    "Workers record rejections when their config has a [metrics] option that turns the "
    'recorder on: prometheus = true, opentelemetry = true or status_path = "/_ratelimit" '
    "(docs/operations.md); restart them after adding it."
)


def _backend_url(args: argparse.Namespace) -> str:
    if args.backend is not None:
        url: str = args.backend
        return url
    if args.config is not None:
        from ratelimit.http.config import load_config

        return load_config(args.config).backend
    raise ConfigError("give --backend URL (e.g. redis://localhost:6379/0) or --config FILE")


def run_top(args: argparse.Namespace) -> int:
    """Print the top offenders of ``args.backend`` (a Redis URL)."""
    url = _backend_url(args)
    if not url.lower().startswith(("redis", "rediss", "unix")):
        raise ConfigError(
            f"ratelimit top reads a Redis backend; {url.partition('://')[0]}:// keeps its "
            "counts inside the server process (see its status page, [metrics] status_path)"
        )
    from ratelimit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(url, timeout=args.timeout)
    try:
        top = RedisTop(backend)
        rows = top.top(args.rule, args.n, args.minutes)
        recorded_at = top.recorded_at()
    finally:
        backend.close()
    if args.json:
        print(
            json.dumps(
                [{"rule": rule, "identity": who, "rejections": n} for rule, who, n in rows],
                indent=2,
            )
        )
        if not rows and recorded_at is None:
            print(f"ratelimit: warning: {NOT_RECORDING}", file=sys.stderr)
        return 0
    scope = f"rule {args.rule}" if args.rule else "every rule"
    print(f"most rejected over the last {args.minutes} min, {scope}, all workers ({url}):")
    if not rows:
        if recorded_at is None:
            print(NOT_RECORDING)
        else:
            ago = max(0, round(time.time() - recorded_at))
            print(
                f"nobody was rejected (rejections are being recorded: a worker last reported "
                f"{ago} s ago)"
            )
        return 0
    table = [[rule, who, str(n)] for rule, who, n in rows]
    print(format_table(["rule", "identity", "rejections"], table, "llr"))
    return 0


def add_parser(commands: Any) -> None:
    """Add the ``top`` command to the ``ratelimit`` parser (``commands``: its subparsers)."""
    from ratelimit.cli.args import _float, _int

    top = commands.add_parser(
        "top",
        help="the client identities rejected most per rule (Redis: across all workers)",
        description=(
            "List the client identities each rule rejected most over the last minutes, from "
            "the sorted sets the middleware keeps in Redis (every worker's rejections)."
        ),
        epilog="example: ratelimit top --backend redis://localhost:6379/0 --rule login --n 5",
    )
    top.add_argument("--backend", metavar="URL", help="the Redis URL the middleware uses")
    top.add_argument("--config", metavar="FILE", help="read the backend URL from this config")
    top.add_argument("--rule", metavar="NAME", help="only this rule")
    top.add_argument(
        "--n", type=_int(1), default=10, metavar="N", help="how many rows (default: 10)"
    )
    top.add_argument(
        "--minutes",
        type=_int(1),
        default=MINUTES,
        metavar="M",
        help=f"how far back, at most {MINUTES} (default: {MINUTES})",
    )
    top.add_argument(
        "--timeout",
        type=_float(0.0, inclusive=False),
        default=2.0,
        metavar="SECONDS",
        help="longest wait for Redis (default: 2)",
    )
    top.add_argument("--json", action="store_true", help="print the rows as JSON")

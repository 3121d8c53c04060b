"""The argument parser of the ``ratelimit`` command, and the checks of its values.

Every value is checked here, at start-up: a bad one raises :class:`UsageError` with a
one-line message naming the option, which :func:`ratelimit.cli.main` prints before exiting 1.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urlsplit

__all__ = ["ALGORITHM_NAMES", "UsageError", "build_parser", "parse_header"]

ALGORITHM_NAMES = ("fixed_window", "sliding_window", "sliding_log", "token_bucket", "leaky_bucket")

_DESCRIPTION = """\
Rate limiting for Python web apps: see each algorithm at work under load (demo), load-test
a running server (loadtest), validate a config file (check), look at or clear one
client's counters in a backend (inspect, reset) and list the clients rejected most (top).

Run "ratelimit COMMAND --help" for the options of a command.
"""


class UsageError(Exception):
    """A bad command line: the message says which option is wrong and why."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises :class:`UsageError` instead of exiting with 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _float(minimum: float, *, inclusive: bool) -> Callable[[str], float]:
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        ok = math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
        if not ok:
            bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
        return value

    return convert


def _int(minimum: int) -> Callable[[str], int]:
    def convert(text: str) -> int:
        if not text.strip().isascii() or not text.strip().isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number of at least {minimum}, got {text!r}"
            )
        return int(text)

    return convert


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL with a host, got {text!r}"
        )
    return text


def parse_header(text: str) -> tuple[str, str]:
    """Read ``"Name: value"`` into ``(name, value)``; raise ``ArgumentTypeError`` otherwise."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or not name.isascii():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name, value.strip()


def _add_backend_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "key",
        metavar="KEY",
        help="with --rule: the client identity the rule's key yields (an IP address such as "
        "203.0.113.7, an API key, a user id); with --limit: the backend key itself",
    )
    parser.add_argument(
        "--backend",
        metavar="URL",
        help="backend URL, e.g. redis://localhost:6379/0 or valkey://localhost:6379/0 "
        "(default: the config's backend)",
    )
    parser.add_argument("--config", metavar="FILE", help="a config file (TOML), for --rule")
    parser.add_argument("--rule", metavar="NAME", help="use the limits of this rule of --config")
    parser.add_argument(
        "--limit", metavar="RATE", help="use this limit instead of a rule, e.g. 10/second"
    )
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHM_NAMES,
        help="the algorithm of --limit (default: fixed_window)",
    )
    parser.add_argument(
        "--burst", type=_int(1), metavar="N", help="the bucket size of --limit (buckets only)"
    )
    parser.add_argument(
        "--mode", choices=("shape", "police"), help="leaky_bucket mode of --limit (default shape)"
    )
    parser.add_argument("--name", metavar="NAME", help="the counter name of --limit")


def build_parser() -> argparse.ArgumentParser:
    """The ``ratelimit`` parser with its five commands."""
    parser = _Parser(
        prog="ratelimit",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    demo = commands.add_parser(
        "demo",
        help="run every algorithm under the same load and chart the result",
        description=(
            "Start the demo Starlette app in-process (uvicorn, 127.0.0.1, a free port), drive "
            "each of the five algorithms (limit 10/second) with the same open-loop traffic "
            "above its limit (steady 2.05x, a burst across a window edge, steady 2.05x again), "
            "print a table and write a PNG chart with one panel per algorithm."
        ),
    )
    demo.add_argument(
        "--out",
        metavar="DIR",
        default=".",
        help="where to write demo.png and demo-table.txt (default: .)",
    )
    demo.add_argument(
        "--duration",
        type=_float(2.0, inclusive=True),
        default=10.0,
        metavar="SECONDS",
        help="length of the traffic, at least 2 (default: 10)",
    )
    demo.add_argument(
        "--backend",
        metavar="URL",
        default="memory://",
        help="backend URL, e.g. redis://localhost:6379/0 or valkey://localhost:6379/0 "
        "(default: memory://)",
    )
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.add_argument("--quiet", action="store_true", help="no progress display")

    load = commands.add_parser(
        "loadtest",
        help="send open-loop traffic to a URL and report what came back",
        description=(
            "Send requests to URL at a fixed arrival rate (request i at start + i/RATE, "
            "whatever the server answers: an open loop), at most CONCURRENCY in flight. A "
            "request whose turn comes while CONCURRENCY requests are in flight is not sent and "
            "is counted as dropped; one sent more than 10 ms after its turn is counted as late. "
            "Reports status counts, latency percentiles (from the moment each request is sent), "
            "the Retry-After and RateLimit headers seen, and admitted/rejected per 100 ms."
        ),
        epilog="example: ratelimit loadtest http://127.0.0.1:8000/api/items --rate 50 "
        "--duration 10 -H 'X-Api-Key: k1' --plot load.png",
    )
    load.add_argument("url", metavar="URL", type=_http_url, help="the URL to request")
    load.add_argument(
        "--rate",
        type=_float(0.0, inclusive=False),
        required=True,
        metavar="R",
        help="requests per second",
    )
    load.add_argument(
        "--duration",
        type=_float(0.0, inclusive=False),
        default=10.0,
        metavar="SECONDS",
        help="how long to send (default: 10)",
    )
    load.add_argument(
        "--concurrency",
        type=_int(1),
        default=64,
        metavar="C",
        help="most requests in flight at once (default: 64)",
    )
    load.add_argument(
        "--method", default="GET", metavar="METHOD", help="the HTTP method (default: GET)"
    )
    load.add_argument(
        "--header",
        "-H",
        action="append",
        type=parse_header,
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header; repeat for more",
    )
    load.add_argument(
        "--timeout",
        type=_float(0.0, inclusive=False),
        default=10.0,
        metavar="SECONDS",
        help="per-request timeout (default: 10)",
    )
    load.add_argument(
        "--expect",
        metavar="RATE",
        help="the limit you expect (e.g. 10/second), drawn on the chart; default: read from "
        "the RateLimit-Policy header when the server sends one",
    )
    load.add_argument("--plot", metavar="PNG", help="write the chart to this PNG file")
    load.add_argument("--json", action="store_true", help="print the report as JSON")
    load.add_argument("--quiet", action="store_true", help="no progress display")

    check = commands.add_parser(
        "check",
        help="validate a config file and print its rules",
        description="Load CONFIG (TOML) as the middleware would and print its rules as a table; "
        "exit 1 with one line naming the file, rule and key if it is invalid.",
        epilog="example: ratelimit check examples/ratelimit.toml",
    )
    check.add_argument("config", metavar="CONFIG", help="the config file (TOML)")
    check.add_argument(
        "--backend",
        metavar="URL",
        help="also connect to this backend URL (e.g. redis://localhost:6379/0 or "
        "valkey://localhost:6379/0) and check that it can serve the limiter: it answers and "
        "runs Lua scripts",
    )

    inspect = commands.add_parser(
        "inspect",
        help="show a client's counters in a backend, without counting anything",
        description=(
            "Show KEY's state under a rule of --config (--rule NAME) or under --limit RATE: "
            "remaining, reset and retry-after per limit. Nothing is consumed."
        ),
        epilog="examples: ratelimit inspect 203.0.113.7 --config ratelimit.toml --rule login | "
        "ratelimit inspect user:42 --limit 100/hour --algorithm token_bucket "
        "--backend redis://localhost:6379/0",
    )
    _add_backend_options(inspect)
    inspect.add_argument("--json", action="store_true", help="print the state as JSON")

    reset = commands.add_parser(
        "reset",
        help="clear a client's counters in a backend",
        description="Forget KEY's counters under a rule of --config or under --limit RATE.",
        epilog="example: ratelimit reset 203.0.113.7 --config ratelimit.toml --rule login",
    )
    _add_backend_options(reset)

    from ratelimit.cli.top import add_parser as add_top

    add_top(commands)
    return parser

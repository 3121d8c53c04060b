"""``ratelimit demo``: every algorithm under the same open-loop traffic, side by side.

The demo app (:mod:`ratelimit.demo`) runs under uvicorn in a background thread of this
process; five streams of identical traffic, one per algorithm route, run at the same time:

- steady arrivals at :data:`OVERLOAD` times the limit from 0 s to ``edge − 1.2 s``;
- a quiet second, then a burst of ``limit`` requests in the 0.2 s before a window edge and
  ``limit`` more in the 0.2 s after it (the edge is a whole second of the backend's clock:
  the start is aligned to it, so fixed windows really turn over there);
- the same steady arrivals again from ``edge + 1 s`` to the end.

The steady rate, 2.05 × the limit, does not divide the window: no two arrivals are exactly
one window apart, so a request admitted as an old one leaves an exact (sliding log) window
is not a few microseconds of scheduling noise away from looking like one too many.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratelimit.algorithms import ALGORITHMS
from ratelimit.cli.loadgen import DROPPED, Stream, run_streams
from ratelimit.cli.progress import Progress
from ratelimit.cli.report import Summary, format_table, summarize
from ratelimit.rate import Rate

__all__ = ["DemoTraffic", "demo_traffic", "render_table", "run_demo"]

#: The steady arrival rate, as a multiple of the limit.
OVERLOAD = 2.05
#: Requests in flight per algorithm at most; shaping holds admitted leaky-bucket requests up
#: to ``burst / rate`` (0.9 s), so at the burst up to about 20 wait at once.
CONCURRENCY = 50
_SHORT = {
    "fixed_window": "fixed",
    "sliding_window": "sliding",
    "sliding_log": "log",
    "token_bucket": "token",
    "leaky_bucket": "leaky",
}


@dataclass(frozen=True, slots=True)
class DemoTraffic:
    """The arrival schedule of each algorithm's stream, and its landmarks (seconds)."""

    schedule: list[float]
    steady_rate: float
    edge: float
    steady_until: float
    steady_again: float
    burst: int

    def describe(self, duration: float) -> str:
        """One sentence saying what the traffic is."""
        parts = []
        if self.steady_until > 0:
            parts.append(f"[0, {self.steady_until:g})")
        if self.steady_again < duration:
            parts.append(f"[{self.steady_again:g}, {duration:g})")
        steady = f"{self.steady_rate:g} req/s on {' and '.join(parts)} s, " if parts else ""
        return (
            f"traffic per algorithm: {steady}a burst of {self.burst} in "
            f"[{self.edge - 0.2:g}, {self.edge + 0.2:g}) s across the window edge at "
            f"{self.edge:g} s; {len(self.schedule)} requests"
        )


def demo_traffic(duration: float, rate: Rate) -> DemoTraffic:
    """The demo's arrival schedule for ``duration`` seconds against ``rate`` (see the module)."""
    period, limit = rate.period, rate.limit
    steady = OVERLOAD * limit / period
    edge = max(1, math.floor(0.6 * duration / period)) * period
    steady_until = edge - 1.2 * period
    steady_again = edge + period
    times = [i / steady for i in range(math.ceil(max(0.0, steady_until) * steady))]
    times = [t for t in times if t < steady_until]
    span = 0.2 * period
    times += [edge - span + k * span / limit for k in range(limit)]
    times += [edge + k * span / limit for k in range(limit)]
    count = math.ceil(max(0.0, duration - steady_again) * steady)
    times += [t for t in (steady_again + i / steady for i in range(count)) if t < duration]
    return DemoTraffic(times, steady, edge, steady_until, steady_again, 2 * limit)


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def render_table(summaries: dict[str, Summary], rate: Rate) -> str:
    """The demo's result table, one row per algorithm."""
    header = [
        "algorithm",
        "sent",
        "admitted",
        "rejected",
        "admitted/s",
        "limit/s",
        "peak 1s",
        "p50 ms",
        "p99 ms",
        "max delay ms",
    ]
    rows = []
    for name, s in summaries.items():
        rows.append(
            [
                name,
                str(s.sent),
                str(s.admitted),
                str(s.rejected),
                f"{s.admitted_rate:.2f}",
                f"{rate.per_second:g}",
                str(s.peak_admitted),
                _ms(s.latency_ms["p50"]),
                _ms(s.latency_ms["p99"]),
                _ms(s.max_server_ms),
            ]
        )
    return format_table(header, rows)


def _footer(summaries: dict[str, Summary]) -> str:
    dropped = sum(s.dropped for s in summaries.values())
    late = sum(s.late for s in summaries.values())
    errors = sum(s.errors for s in summaries.values())
    lag = max((s.send_lag_ms["max"] for s in summaries.values() if s.sent), default=math.nan)
    return (
        f"dropped (not sent) {dropped}, late (sent > 10 ms after due) {late}, "
        f"errors {errors}; largest send lag {_ms(lag)} ms"
    )


def _probe(url: str) -> None:
    """Build the backend and ask it one question, so a bad URL or a server that does not
    answer stops the demo at once (a ConfigError or BackendError)."""
    from ratelimit.backends import backend_from_url
    from ratelimit.limiter import Limiter
    from ratelimit.limits import Limit

    backend = backend_from_url(url)
    try:
        Limiter(backend).peek("ratelimit-demo-probe", Limit(Rate(1, 1), name="ratelimit-demo"))
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def _backend_clock(url: str) -> Callable[[], float]:
    """The clock the backend decides with: ``time.monotonic`` for memory; for Redis its
    ``TIME``, read once as an offset from ``time.time`` (else ``time.time`` itself)."""
    if url.startswith("memory:"):
        return time.monotonic
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        try:
            seconds, micros = client.time()
            offset = seconds + micros / 1e6 - time.time()
        finally:
            client.close()
    except Exception:  # a cluster or sentinel URL, no redis-py, ...: use the wall clock
        return time.time
    return lambda: time.time() + offset


#: Where the demo app serves its status page.
STATUS_PATH = "/_ratelimit"


def _demo_metrics() -> tuple[dict[str, Any], Any]:
    """The demo's ``[metrics]`` table: the status page, and Prometheus on a registry of its
    own when prometheus_client is installed (the ``[prometheus]`` extra)."""
    metrics: dict[str, Any] = {"status_path": STATUS_PATH}
    try:
        from prometheus_client import CollectorRegistry
    except ModuleNotFoundError:
        return metrics, None
    registry = CollectorRegistry()
    metrics["prometheus"] = registry
    return metrics, registry


def _write_metrics(base: str, out: Path, registry: Any) -> list[Path]:
    """Write what the middleware recorded beside the chart: ``demo-metrics.json`` (the
    status page's JSON) and, with Prometheus, ``demo-metrics.prom`` (a text exposition)."""
    import urllib.request

    request = urllib.request.Request(base + STATUS_PATH, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        status = json.loads(response.read())
    written = [out / "demo-metrics.json"]
    written[0].write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    if registry is not None:
        from prometheus_client import generate_latest

        written.append(out / "demo-metrics.prom")
        written[1].write_bytes(generate_latest(registry))
    return written


async def _drive(streams: list[Stream], clock: Callable[[], float], progress: Progress) -> None:
    loop = asyncio.get_running_loop()
    # Start on a whole second of the backend's clock, at least half a second from now, so
    # that whole seconds of the schedule are window edges for the backend too.
    now_backend, now_loop = clock(), loop.time()
    first_edge = math.floor(now_backend + 0.5) + 1
    start = now_loop + (first_edge - now_backend)
    await run_streams(streams, start=start, progress=progress)


def run_demo(args: argparse.Namespace) -> int:
    """Run the ``demo`` command; returns the exit status."""
    from ratelimit.cli import chart
    from ratelimit.cli.server import serve_in_thread
    from ratelimit.demo import DEMO_RATE, create_app

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {args.out!r} is not a directory")
    _probe(args.backend)  # a bad URL or an unreachable Redis fails here, before anything
    rate = Rate.parse(DEMO_RATE)
    duration: float = args.duration
    traffic = demo_traffic(duration, rate)
    metrics, registry = _demo_metrics()
    app = create_app(args.backend, metrics)
    out.mkdir(parents=True, exist_ok=True)

    say = print if not args.json else (lambda *a, **k: None)
    say(
        f"ratelimit demo: 5 algorithms, limit {rate} each, backend {args.backend}, "
        f"{duration:g} s of traffic",
        file=sys.stderr,
    )
    say(traffic.describe(duration), file=sys.stderr)
    with serve_in_thread(app) as base:
        say(f"status page: {base}{STATUS_PATH} (while the demo runs)", file=sys.stderr)
        streams = {
            name: Stream(f"{base}/demo/{name}", traffic.schedule, CONCURRENCY, same_clock=True)
            for name in ALGORITHMS
        }

        def render(elapsed: float) -> str:
            cells = []
            for name, stream in streams.items():
                sent = sum(
                    1 for s in stream.samples if s.status != DROPPED
                )  # answered or in flight
                ok = sum(1 for s in stream.samples if 0 < s.status < 400)
                cells.append(f"{_SHORT[name]} {ok}/{sent}")
            waiting = sum(stream.in_flight for stream in streams.values())
            if elapsed <= duration:
                clock = f"[{max(elapsed, 0.0):4.1f}/{duration:g} s]"
            else:
                clock = f"[{duration:g} s sent, {waiting} awaited]"
            return f"{clock} admitted/sent: " + "  ".join(cells)

        progress = Progress(render, enabled=not (args.quiet or args.json))
        asyncio.run(_drive(list(streams.values()), _backend_clock(args.backend), progress))
        progress.done()
        metrics_files = _write_metrics(base, out, registry)

    summaries = {name: summarize(s.samples, duration, rate.period) for name, s in streams.items()}
    table = render_table(summaries, rate)
    png = out / "demo.png"
    chart.write_chart(
        png,
        f"ratelimit demo: the same traffic against five algorithms, limit {rate} each",
        [
            chart.Panel(
                f"{name}: admitted {s.admitted} of {s.sent}, at most {s.peak_admitted} in "
                f"any {rate.period:g} s"
                + (
                    f", shaping delay up to {s.max_server_ms:.0f} ms"
                    if name == "leaky_bucket" and s.max_server_ms is not None
                    else ""
                ),
                s.timeline,
                rate.per_second,
                f"limit {rate}",
                show_served=name == "leaky_bucket",
            )
            for name, s in summaries.items()
        ],
        marks=[(traffic.edge, "window edge")],
    )
    footer = _footer(summaries)
    (out / "demo-table.txt").write_text(f"{table}\n{footer}\n", encoding="utf-8")
    if args.json:
        result: dict[str, Any] = {
            "backend": args.backend,
            "limit": str(rate),
            "duration_s": duration,
            "requests_per_algorithm": len(traffic.schedule),
            "chart": str(png),
            "metrics": [str(path) for path in metrics_files],
            "algorithms": {name: s.as_dict() for name, s in summaries.items()},
        }
        print(json.dumps(result, indent=2))
    else:
        print(table)
        print(footer)
        print(f"chart: {png}")
        print(f"metrics: {', '.join(str(path) for path in metrics_files)}")
    return 0

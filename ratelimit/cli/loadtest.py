"""``ratelimit loadtest URL``: open-loop traffic against a running server, and its report."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from typing import Any

from ratelimit.cli.loadgen import DROPPED, PENDING, Stream, run_streams, uniform_schedule
from ratelimit.cli.progress import Progress
from ratelimit.cli.report import Summary, policy_quota, summarize
from ratelimit.errors import ConfigError
from ratelimit.rate import Rate

__all__ = ["MAX_REQUESTS", "render_report", "run_loadtest"]

#: The most requests one run may schedule (every one is kept to be counted and measured).
MAX_REQUESTS = 1_000_000


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def render_report(url: str, rate: float, concurrency: int, summary: Summary) -> str:
    """The human report of one load test."""
    s = summary
    status = "  ".join(f"{code}: {n}" for code, n in sorted(s.status.items())) or "none"
    if s.error_kinds:
        status += "  no response: " + ", ".join(f"{k} {n}" for k, n in s.error_kinds.items())
    lat = s.latency_ms
    lag = s.send_lag_ms
    rows = [
        ["target", f"{url}  at {rate:g} req/s for {s.duration:g} s, concurrency {concurrency}"],
        [
            "requests",
            f"scheduled {s.scheduled}  sent {s.sent}  dropped {s.dropped}  late {s.late}"
            f"  (send lag p99 {_ms(lag['p99'])} ms, max {_ms(lag['max'])} ms)",
        ],
        ["status", status],
        [
            "admitted",
            f"{s.admitted} ({s.admitted_rate:.2f}/s; at most {s.peak_admitted} in any "
            f"{s.peak_window:g} s)   rejected (429) {s.rejected}   errors {s.errors}",
        ],
        [
            "latency ms",
            f"p50 {_ms(lat['p50'])}  p90 {_ms(lat['p90'])}  p99 {_ms(lat['p99'])}"
            f"  max {_ms(lat['max'])}",
        ],
    ]
    for i, line in enumerate(s.headers.lines()):
        rows.append(["headers" if i == 0 else "", line])
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{label.ljust(width)}  {text}" for label, text in rows)


def run_loadtest(args: argparse.Namespace) -> int:
    """Run the ``loadtest`` command; returns the exit status."""
    expect: Rate | None = None
    if args.expect is not None:
        try:
            expect = Rate.parse(args.expect)
        except ConfigError as exc:
            raise ConfigError(f"--expect: {exc}") from None
    if args.plot is not None:
        import ratelimit.cli.chart  # noqa: F401  # fail now, not after the run, without matplotlib
    if args.rate * args.duration > MAX_REQUESTS:
        raise ConfigError(
            f"--rate × --duration is {args.rate * args.duration:.0f} requests; at most "
            f"{MAX_REQUESTS:,} per run (one process sends about a thousand or two a second)"
        )
    method = args.method.upper()
    if not method.isascii() or not method.isalpha():
        raise ConfigError(f"--method: expected an HTTP method such as GET, got {args.method!r}")
    stream = Stream(args.url, uniform_schedule(args.rate, args.duration), args.concurrency)

    def render(elapsed: float) -> str:
        samples = stream.samples
        done = [s for s in samples if s.status not in (PENDING, DROPPED)]
        ok = sum(1 for s in done if 0 < s.status < 400)
        limited = sum(1 for s in done if s.status == 429)
        dropped = sum(1 for s in samples if s.status == DROPPED)
        return (
            f"[{min(elapsed, args.duration):5.1f}/{args.duration:g} s] sent "
            f"{len(samples) - dropped}  admitted {ok}  rejected {limited}  other "
            f"{len(done) - ok - limited}  in flight {stream.in_flight}  dropped {dropped}"
        )

    progress = Progress(render, enabled=not args.quiet)
    asyncio.run(
        run_streams(
            [stream],
            method=method,
            headers=args.header,
            timeout=args.timeout,
            progress=progress,
        )
    )
    progress.done()
    summary = summarize(stream.samples, args.duration)
    if args.json:
        report: dict[str, Any] = {
            "url": args.url,
            "rate": args.rate,
            "concurrency": args.concurrency,
            **summary.as_dict(),
        }
        print(json.dumps(report, indent=2))
    else:
        print(render_report(args.url, args.rate, args.concurrency, summary))
    if args.plot is not None:
        from ratelimit.cli import chart

        rate, label = None, ""
        quota = policy_quota(summary.policy)
        if expect is not None:
            rate, label = expect.per_second, f"expected limit {expect}"
        elif quota is not None:
            rate = quota[0] / quota[1]
            try:
                label = f"limit {Rate(*quota)} (from RateLimit-Policy)"
            except ConfigError:
                label = f"limit {quota[0]}/{quota[1]} s (from RateLimit-Policy)"
        chart.write_chart(
            args.plot,
            f"ratelimit loadtest {args.url}: {args.rate:g} req/s for {args.duration:g} s",
            [chart.Panel(args.url, summary.timeline, rate, label)],
        )
        print(f"chart written to {args.plot}", file=sys.stderr)
    if summary.sent and summary.sent == sum(summary.error_kinds.values()):
        kinds = ", ".join(f"{k} x{n}" for k, n in summary.error_kinds.items())
        print(f"ratelimit: error: no response from {args.url} ({kinds})", file=sys.stderr)
        return 1
    return 0

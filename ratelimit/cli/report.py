"""Turn load-generator samples into numbers: counts, percentiles, headers seen, a timeline.

Admitted means a response with a status below 400; rejected means 429; everything else
(other 4xx/5xx, no response) is an error. Dropped requests (never sent) are counted apart.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ratelimit.cli.loadgen import DROPPED, ERROR, LATE_AFTER, Sample

__all__ = [
    "BIN",
    "HeaderSummary",
    "Summary",
    "Timeline",
    "format_table",
    "percentile",
    "policy_quota",
    "policy_rate",
    "summarize",
]

#: Width of one timeline bin, in seconds (the chart shows requests per 100 ms).
BIN = 0.1

_PARAM = re.compile(r";\s*([a-z]+)\s*=\s*([0-9]+)")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``values`` by the nearest-rank method; nan if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _params(item: str) -> dict[str, int]:
    return {name: int(value) for name, value in _PARAM.findall(item)}


def policy_quota(policy: str | None) -> tuple[int, int] | None:
    """``(q, w)`` of the tightest item (lowest q / w) of a ``RateLimit-Policy`` header."""
    if not policy:
        return None
    quotas = []
    for item in policy.split(","):
        params = _params(item)
        if "q" in params and params.get("w", 0) > 0:
            quotas.append((params["q"], params["w"]))
    return min(quotas, key=lambda qw: qw[0] / qw[1]) if quotas else None


def policy_rate(policy: str | None) -> float | None:
    """Requests per second of the tightest item of a ``RateLimit-Policy`` header (q / w)."""
    quota = policy_quota(policy)
    return None if quota is None else quota[0] / quota[1]


def _span(values: Iterable[int]) -> str:
    items = sorted(values)
    if not items:
        return "-"
    return f"{items[0]}" if items[0] == items[-1] else f"{items[0]}..{items[-1]}"


@dataclass(slots=True)
class HeaderSummary:
    """The rate-limit headers seen in the responses."""

    responses: int = 0
    rejected: int = 0
    retry_after: int = 0  # 429s that carried Retry-After
    retry_after_values: Counter[int] = field(default_factory=Counter)
    ratelimit: int = 0
    remaining: set[int] = field(default_factory=set)
    reset: set[int] = field(default_factory=set)
    policies: Counter[str] = field(default_factory=Counter)
    legacy: int = 0

    def lines(self) -> list[str]:
        """One human line per header."""
        retry = f"Retry-After on {self.retry_after}/{self.rejected} 429 responses"
        if self.retry_after_values:
            retry += f", {_span(self.retry_after_values)} s"
        lines = [retry]
        ratelimit = f"RateLimit on {self.ratelimit}/{self.responses} responses"
        if self.ratelimit:
            ratelimit += f", r={_span(self.remaining)}, t={_span(self.reset)} s"
        lines.append(ratelimit)
        if self.policies:
            shown = ", ".join(f"{p} ({n})" for p, n in self.policies.most_common(3))
            more = len(self.policies) - 3
            lines.append(f"RateLimit-Policy: {shown}" + (f" and {more} more" if more > 0 else ""))
        else:
            lines.append("RateLimit-Policy: none")
        if self.legacy:
            lines.append(f"X-RateLimit-* on {self.legacy}/{self.responses} responses")
        return lines

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "retry_after": {
                "on_429": self.retry_after,
                "values": {str(k): v for k, v in sorted(self.retry_after_values.items())},
            },
            "ratelimit": {
                "present": self.ratelimit,
                "remaining": _range(self.remaining),
                "reset": _range(self.reset),
            },
            "ratelimit_policy": dict(self.policies),
            "legacy_present": self.legacy,
        }


def _range(values: set[int]) -> dict[str, int] | None:
    return {"min": min(values), "max": max(values)} if values else None


def _headers(samples: Iterable[Sample]) -> HeaderSummary:
    summary = HeaderSummary()
    for s in samples:
        if s.status <= ERROR:
            continue
        summary.responses += 1
        if s.status == 429:
            summary.rejected += 1
            if s.retry_after is not None:
                summary.retry_after += 1
                text = s.retry_after.strip()
                if text.isascii() and text.isdigit():
                    summary.retry_after_values[int(text)] += 1
        if s.ratelimit is not None:
            summary.ratelimit += 1
            params = _params(s.ratelimit)
            if "r" in params:
                summary.remaining.add(params["r"])
            if "t" in params:
                summary.reset.add(params["t"])
        if s.policy is not None:
            summary.policies[s.policy] += 1
        if s.legacy_remaining is not None:
            summary.legacy += 1
    return summary


@dataclass(slots=True)
class Timeline:
    """Counts per :data:`BIN` seconds of arrival time (``Sample.at``; dropped: due time).

    ``served`` counts the admitted requests again, by the time their response arrived: it
    differs from ``admitted`` when the server delays responses (leaky-bucket shaping).
    """

    admitted: list[int]
    rejected: list[int]
    errors: list[int]
    dropped: list[int]
    served: list[int]

    @classmethod
    def of(cls, samples: Sequence[Sample], duration: float) -> Timeline:
        """Bin ``samples`` over ``[0, duration)``, extended to the last response if later."""
        ends = [s.sent + s.latency for s in samples if not math.isnan(s.latency)]
        bins = max(1, math.ceil(max(duration, *ends, 0.0) / BIN - 1e-9))
        series: dict[str, list[int]] = {
            name: [0] * bins for name in ("admitted", "rejected", "errors", "dropped", "served")
        }

        def index(when: float) -> int:
            return min(bins - 1, max(0, int(when / BIN + 1e-9)))  # 0.3 / 0.1 is 2.999...

        for s in samples:
            kind = _kind(s)
            series[kind][index(s.due if kind == "dropped" else s.at)] += 1
            if kind == "admitted":
                series["served"][index(s.sent + s.latency)] += 1
        return cls(**series)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "bin_ms": round(BIN * 1000),
            "admitted": self.admitted,
            "rejected": self.rejected,
            "errors": self.errors,
            "dropped": self.dropped,
            "served": self.served,
        }


def _kind(sample: Sample) -> str:
    if sample.status == DROPPED:
        return "dropped"
    if ERROR < sample.status < 400:
        return "admitted"
    if sample.status == 429:
        return "rejected"
    return "errors"


def _peak(times: Sequence[float], window: float) -> int:
    """The most ``times`` inside any half-open interval of length ``window``."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@dataclass(slots=True)
class Summary:
    """Everything the reports print about one stream of samples."""

    duration: float
    scheduled: int
    sent: int
    dropped: int
    late: int
    admitted: int
    rejected: int
    errors: int
    status: Counter[int]
    error_kinds: Counter[str]
    latency_ms: dict[str, float]
    send_lag_ms: dict[str, float]
    peak_window: float
    peak_admitted: int
    max_server_ms: float | None
    headers: HeaderSummary
    timeline: Timeline
    policy_rate: float | None
    policy: str | None = None

    @property
    def admitted_rate(self) -> float:
        """Admitted requests per second over the run."""
        return self.admitted / self.duration

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (NaN becomes null)."""

        def clean(values: dict[str, float]) -> dict[str, float | None]:
            return {k: (None if math.isnan(v) else round(v, 3)) for k, v in values.items()}

        return {
            "duration_s": self.duration,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "dropped": self.dropped,
            "late": self.late,
            "admitted": self.admitted,
            "rejected": self.rejected,
            "errors": self.errors,
            "admitted_per_s": round(self.admitted_rate, 3),
            "status": {str(k): v for k, v in sorted(self.status.items())},
            "error_kinds": dict(self.error_kinds),
            "latency_ms": clean(self.latency_ms),
            "send_lag_ms": clean(self.send_lag_ms),
            "peak_admitted": {"window_s": self.peak_window, "count": self.peak_admitted},
            "max_server_ms": self.max_server_ms,
            "headers": self.headers.as_dict(),
            "policy_rate_per_s": self.policy_rate,
            "timeline": self.timeline.as_dict(),
        }


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def summarize(samples: Sequence[Sample], duration: float, peak_window: float = 1.0) -> Summary:
    """Count and measure ``samples`` of a run of ``duration`` seconds."""
    sent = [s for s in samples if s.status != DROPPED]
    kinds = Counter(_kind(s) for s in samples)
    answered = [s for s in sent if s.status != ERROR]
    admitted = [s for s in answered if s.status < 400]
    lags = [s.sent - s.due for s in sent]
    server = [s.server_ms for s in admitted if s.server_ms is not None]
    policy = next((s.policy for s in answered if s.policy), None)
    return Summary(
        duration=duration,
        scheduled=len(samples),
        sent=len(sent),
        dropped=kinds["dropped"],
        late=sum(1 for lag in lags if lag > LATE_AFTER),
        admitted=kinds["admitted"],
        rejected=kinds["rejected"],
        errors=kinds["errors"],
        status=Counter(s.status for s in answered),
        error_kinds=Counter(s.error for s in sent if s.error is not None),
        latency_ms=_percentiles([s.latency * 1000 for s in answered]),
        send_lag_ms=_percentiles([lag * 1000 for lag in lags]),
        peak_window=peak_window,
        peak_admitted=_peak([s.at for s in admitted], peak_window),
        max_server_ms=max(server) if server else None,
        headers=_headers(answered),
        timeline=Timeline.of(samples, duration),
        policy_rate=policy_rate(policy),
        policy=policy,
    )


def format_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None
) -> str:
    """A plain-text table; ``align`` has one letter per column, ``l`` or ``r`` (default: the
    first column left-aligned, the others right-aligned)."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    align = align or "l" + "r" * (len(header) - 1)

    def line(row: Sequence[str]) -> str:
        cells = [
            str(cell).ljust(width) if side == "l" else str(cell).rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])

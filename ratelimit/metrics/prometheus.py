"""Prometheus metrics through ``prometheus_client`` (extra ``[prometheus]``; SPEC §7 names).

=========================================  =========  ==========================================
name                                       type       labels
=========================================  =========  ==========================================
``ratelimit_requests_total``               counter    ``rule``, ``outcome``
``ratelimit_decision_seconds``             histogram  ``backend`` (``memory``, ``redis``, ...)
``ratelimit_delay_seconds``                histogram  ``rule`` (leaky-bucket shaping waits)
``ratelimit_backend_errors_total``         counter    ``backend``, ``kind``
``ratelimit_backend_up``                   gauge      ``backend`` (1 or 0)
``ratelimit_shares_total``                 counter    ``event`` (``taken``, ``returned``,
                                                      ``expired``): shares of limits with
                                                      ``share`` (Redis)
``ratelimit_share_units_total``            counter    ``event``: the units of those shares
=========================================  =========  ==========================================

Label values are bounded: rule names, the outcome names of
:data:`~ratelimit.http.engine.OUTCOME_KINDS`, backend schemes and error kinds, never a
client identity or a raw path.

In one process the values are plain numbers behind one lock, exposed by a collector
registered on the registry (:class:`CollectedMetrics`); in multiprocess mode they are
prometheus_client's own metric objects (:class:`ClientMetrics`), whose values live in files.

The metrics are created once per registry and shared: several middlewares in one process
(several apps, a decorator engine next to the middleware) record into the same series,
labelled by rule, without a duplicate-registration error.

Multi-process servers: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory) before the
workers start, as prometheus_client's multiprocess mode requires; :func:`exposition` then
sums every worker's files. ``ratelimit_backend_up`` reports the lowest value among the live
workers (``livemin``): 0 as soon as one worker sees the backend down.
"""

from __future__ import annotations

import math
import os
import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

__all__ = [
    "DECISION_BUCKETS",
    "DELAY_BUCKETS",
    "ClientMetrics",
    "CollectedMetrics",
    "PrometheusMetrics",
    "exposition",
    "metrics_for",
    "multiprocess_mode",
]

#: Decision time buckets, seconds: a memory decision takes microseconds, Redis a millisecond.
DECISION_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
#: Shaping delay buckets, seconds (``max_delay`` defaults to 5).
DELAY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ClientMetrics:
    """The five metrics as prometheus_client objects (multiprocess mode: their values live in
    the files of ``PROMETHEUS_MULTIPROC_DIR``, which :func:`exposition` sums)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.requests = Counter(
            "ratelimit_requests", _HELP["requests"], ["rule", "outcome"], registry=registry
        )
        self.decision_seconds = Histogram(
            "ratelimit_decision_seconds",
            _HELP["decision"],
            ["backend"],
            buckets=DECISION_BUCKETS,
            registry=registry,
        )
        self.delay_seconds = Histogram(
            "ratelimit_delay_seconds",
            _HELP["delay"],
            ["rule"],
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.backend_errors = Counter(
            "ratelimit_backend_errors", _HELP["errors"], ["backend", "kind"], registry=registry
        )
        self.backend_up = Gauge(
            "ratelimit_backend_up",
            _HELP["up"],
            ["backend"],
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.shares = Counter("ratelimit_shares", _HELP["shares"], ["event"], registry=registry)
        self.share_units = Counter(
            "ratelimit_share_units", _HELP["share_units"], ["event"], registry=registry
        )
        self._children: dict[tuple[str, str], Any] = {}
        self._decisions: dict[str, Any] = {}

    def record(self, rules: Sequence[Any], kind: str, backend: str, seconds: float) -> None:
        """Count one decided request under each of ``rules`` and observe its decision time."""
        children = self._children
        for rule in rules:
            child = children.get((rule.name, kind))
            if child is None:
                child = children[rule.name, kind] = self.requests.labels(rule.name, kind)
            child.inc()
        hist = self._decisions.get(backend)
        if hist is None:
            hist = self._decisions[backend] = self.decision_seconds.labels(backend)
        hist.observe(seconds)

    def ensure(self, rule: str, kind: str) -> None:
        """Create the series ``{rule, outcome=kind}`` at 0."""
        self.requests.labels(rule, kind)

    def delayed(self, rule: str, seconds: float) -> None:
        """Observe one shaping delay."""
        self.delay_seconds.labels(rule).observe(seconds)

    def error(self, backend: str, kind: str) -> None:
        """Count one failed backend decision."""
        self.backend_errors.labels(backend, kind).inc()

    def up(self, backend: str, up: bool) -> None:
        """Set ``ratelimit_backend_up``."""
        self.backend_up.labels(backend).set(1 if up else 0)

    def share(self, event: str, units: int) -> None:
        """Count one share ``event`` (taken, returned, expired) of ``units`` units."""
        self.shares.labels(event).inc()
        self.share_units.labels(event).inc(units)


class _Histogram:
    """Bucket counts (not cumulative; the last one is ``+Inf``) and the sum."""

    __slots__ = ("counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0


class CollectedMetrics:
    """The five metrics kept as plain numbers under one lock, exposed by a collector
    registered on the registry (one process; about a third of the cost of the
    prometheus_client objects per request, which take a lock per counter and bucket)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._decisions: dict[str, _Histogram] = {}
        self._delays: dict[str, _Histogram] = {}
        self._errors: dict[tuple[str, str], int] = {}
        self._up: dict[str, int] = {}
        self._shares: dict[str, list[int]] = {}  # event → [shares, units]
        registry.register(self)

    def record(self, rules: Sequence[Any], kind: str, backend: str, seconds: float) -> None:
        """Count one decided request under each of ``rules`` and observe its decision time."""
        with self._lock:
            requests = self._requests
            for rule in rules:
                slot = (rule.name, kind)
                requests[slot] = requests.get(slot, 0) + 1
            hist = self._decisions.get(backend)
            if hist is None:
                hist = self._decisions[backend] = _Histogram(DECISION_BUCKETS)
            hist.counts[bisect_left(DECISION_BUCKETS, seconds)] += 1
            hist.sum += seconds

    def ensure(self, rule: str, kind: str) -> None:
        """Create the series ``{rule, outcome=kind}`` at 0."""
        with self._lock:
            self._requests.setdefault((rule, kind), 0)

    def delayed(self, rule: str, seconds: float) -> None:
        """Observe one shaping delay."""
        with self._lock:
            hist = self._delays.get(rule)
            if hist is None:
                hist = self._delays[rule] = _Histogram(DELAY_BUCKETS)
            hist.counts[bisect_left(DELAY_BUCKETS, seconds)] += 1
            hist.sum += seconds

    def error(self, backend: str, kind: str) -> None:
        """Count one failed backend decision."""
        with self._lock:
            slot = (backend, kind)
            self._errors[slot] = self._errors.get(slot, 0) + 1

    def up(self, backend: str, up: bool) -> None:
        """Set ``ratelimit_backend_up``."""
        with self._lock:
            self._up[backend] = 1 if up else 0

    def share(self, event: str, units: int) -> None:
        """Count one share ``event`` (taken, returned, expired) of ``units`` units."""
        with self._lock:
            slot = self._shares.get(event)
            if slot is None:
                slot = self._shares[event] = [0, 0]
            slot[0] += 1
            slot[1] += units

    def describe(self) -> list[Any]:
        """The metric families, empty (for the registry's duplicate-name check)."""
        return list(self._families({}, {}, {}, {}, {}, {}))

    def collect(self) -> Iterator[Any]:
        """The current values (called by the registry on every scrape)."""
        with self._lock:
            snapshot = (
                dict(self._requests),
                {k: (list(h.counts), h.sum) for k, h in self._decisions.items()},
                {k: (list(h.counts), h.sum) for k, h in self._delays.items()},
                dict(self._errors),
                dict(self._up),
                {k: (v[0], v[1]) for k, v in self._shares.items()},
            )
        return self._families(*snapshot)

    @staticmethod
    def _families(
        requests: dict[tuple[str, str], int],
        decisions: dict[str, tuple[list[int], float]],
        delays: dict[str, tuple[list[int], float]],
        errors: dict[tuple[str, str], int],
        up: dict[str, int],
        shares: dict[str, tuple[int, int]],
    ) -> Iterator[Any]:
        family: Any = CounterMetricFamily(
            "ratelimit_requests", _HELP["requests"], labels=["rule", "outcome"]
        )
        for (rule, kind), value in requests.items():
            family.add_metric([rule, kind], value)
        yield family
        for name, label, bounds, hists in (
            ("ratelimit_decision_seconds", "backend", DECISION_BUCKETS, decisions),
            ("ratelimit_delay_seconds", "rule", DELAY_BUCKETS, delays),
        ):
            family = HistogramMetricFamily(
                name, _HELP["decision" if label == "backend" else "delay"], labels=[label]
            )
            for labelled, (counts, total) in hists.items():
                cumulative, buckets = 0, []
                for bound, count in zip((*bounds, math.inf), counts, strict=True):
                    cumulative += count
                    buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
                family.add_metric([labelled], buckets, total)
            yield family
        family = CounterMetricFamily(
            "ratelimit_backend_errors", _HELP["errors"], labels=["backend", "kind"]
        )
        for (backend, kind), value in errors.items():
            family.add_metric([backend, kind], value)
        yield family
        family = GaugeMetricFamily("ratelimit_backend_up", _HELP["up"], labels=["backend"])
        for backend, value in up.items():
            family.add_metric([backend], value)
        yield family
        for n, (name, key) in enumerate(
            (("ratelimit_shares", "shares"), ("ratelimit_share_units", "share_units"))
        ):
            family = CounterMetricFamily(name, _HELP[key], labels=["event"])
            for event, values in shares.items():
                family.add_metric([event], values[n])
            yield family


#: What the recorder calls: :class:`CollectedMetrics` or, in multiprocess mode,
#: :class:`ClientMetrics`.
PrometheusMetrics = CollectedMetrics | ClientMetrics

_HELP = {
    "requests": "Requests decided by the rate limiter, by rule and outcome.",
    "decision": "Time to decide a request, backend round trip included.",
    "delay": "Leaky-bucket shaping delays given to admitted requests.",
    "errors": "Failed backend decisions, by kind (connection, timeout, circuit_open, ...).",
    "up": "Whether decisions reach the backend (1) or its circuit is open (0).",
    "shares": "Shares of limits taken from Redis, given back, or expired with units unspent.",
    "share_units": "Units of the shares taken, given back, or expired unspent.",
}

_lock = threading.Lock()
#: id(registry) → (registry, its metrics). The registry is held, so its id stays unique.
_by_registry: dict[int, tuple[Any, PrometheusMetrics]] = {}


def multiprocess_mode() -> bool:
    """Whether prometheus_client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def metrics_for(registry: Any = None) -> PrometheusMetrics:
    """The shared metrics of ``registry`` (default: prometheus_client's ``REGISTRY``),
    created on first use: a collector of plain counts in one process, prometheus_client
    metric objects in multiprocess mode."""
    if registry is None or registry is True:
        registry = REGISTRY
    with _lock:
        found = _by_registry.get(id(registry))
        if found is None:
            kind = ClientMetrics if multiprocess_mode() else CollectedMetrics
            found = _by_registry[id(registry)] = (registry, kind(registry))
        return found[1]


def exposition(registry: Any = None) -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape: ``registry`` (default ``REGISTRY``), or every
    worker's metrics summed when ``PROMETHEUS_MULTIPROC_DIR`` is set and no registry is
    given. For a ``/metrics`` route of your own::

        body, content_type = exposition()
    """
    if registry is None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST

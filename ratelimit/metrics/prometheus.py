"""Prometheus metrics through ``prometheus_client`` (extra ``[prometheus]``; SPEC §7 names).

=========================================  =========  ==========================================
name                                       type       labels
=========================================  =========  ==========================================
``ratelimit_requests_total``               counter    ``rule``, ``outcome``
``ratelimit_decision_seconds``             histogram  ``backend`` (``memory``, ``redis``, ...)
``ratelimit_delay_seconds``                histogram  ``rule`` (leaky-bucket shaping waits)
``ratelimit_backend_errors_total``         counter    ``backend``, ``kind``
``ratelimit_backend_up``                   gauge      ``backend`` (1 or 0)
=========================================  =========  ==========================================

Label values are bounded: rule names, the outcome names of
:data:`~ratelimit.http.engine.OUTCOME_KINDS`, backend schemes and error kinds, never a
client identity or a raw path.

The metrics are created once per registry and shared: several middlewares in one process
(several apps, a decorator engine next to the middleware) record into the same series,
labelled by rule, without a duplicate-registration error.

Multi-process servers: set ``PROMETHEUS_MULTIPROC_DIR`` (an empty directory) before the
workers start, as prometheus_client's multiprocess mode requires; :func:`exposition` then
sums every worker's files. ``ratelimit_backend_up`` reports the lowest value among the live
workers (``livemin``): 0 as soon as one worker sees the backend down.
"""

from __future__ import annotations

import os
import threading
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

__all__ = ["DECISION_BUCKETS", "DELAY_BUCKETS", "PrometheusMetrics", "exposition", "metrics_for"]

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


class PrometheusMetrics:
    """The five metrics of one registry (see the module docstring)."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.requests = Counter(
            "ratelimit_requests",
            "Requests decided by the rate limiter, by rule and outcome.",
            ["rule", "outcome"],
            registry=registry,
        )
        self.decision_seconds = Histogram(
            "ratelimit_decision_seconds",
            "Time to decide a request, backend round trip included.",
            ["backend"],
            buckets=DECISION_BUCKETS,
            registry=registry,
        )
        self.delay_seconds = Histogram(
            "ratelimit_delay_seconds",
            "Leaky-bucket shaping delays given to admitted requests.",
            ["rule"],
            buckets=DELAY_BUCKETS,
            registry=registry,
        )
        self.backend_errors = Counter(
            "ratelimit_backend_errors",
            "Failed backend decisions, by kind (connection, timeout, circuit_open, ...).",
            ["backend", "kind"],
            registry=registry,
        )
        self.backend_up = Gauge(
            "ratelimit_backend_up",
            "Whether decisions reach the backend (1) or its circuit is open (0).",
            ["backend"],
            registry=registry,
            multiprocess_mode="livemin",
        )


_lock = threading.Lock()
#: id(registry) → (registry, its metrics). The registry is held, so its id stays unique.
_by_registry: dict[int, tuple[Any, PrometheusMetrics]] = {}


def metrics_for(registry: Any = None) -> PrometheusMetrics:
    """The shared metrics of ``registry`` (default: prometheus_client's ``REGISTRY``),
    created on first use."""
    if registry is None or registry is True:
        registry = REGISTRY
    with _lock:
        found = _by_registry.get(id(registry))
        if found is None:
            found = _by_registry[id(registry)] = (registry, PrometheusMetrics(registry))
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

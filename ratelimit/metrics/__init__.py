"""Operations: Prometheus and OpenTelemetry metrics, top offenders, the status page's data.

Configured by the ``[metrics]`` table (:class:`MetricsConfig`). Importing this package
imports neither prometheus_client nor opentelemetry: each is imported only when enabled.
See ``docs/operations.md``.
"""

from __future__ import annotations

from ratelimit.metrics.config import MetricsConfig, parse_metrics
from ratelimit.metrics.observer import Observer, Recorder, build_observer
from ratelimit.metrics.top import RedisTop, SpaceSaving, TopOffenders

__all__ = [
    "MetricsConfig",
    "Observer",
    "Recorder",
    "RedisTop",
    "SpaceSaving",
    "TopOffenders",
    "build_observer",
    "parse_metrics",
]

"""The ``[metrics]`` table of the config: see :mod:`ratelimit.http.metrics_config`, where it
is parsed with the rest of the config (this name is kept for imports)."""

from __future__ import annotations

from ratelimit.http.metrics_config import (
    DEFAULT_STATUS_ALLOW,
    METRICS_KEYS,
    MetricsConfig,
    parse_metrics,
)

__all__ = ["DEFAULT_STATUS_ALLOW", "METRICS_KEYS", "MetricsConfig", "parse_metrics"]

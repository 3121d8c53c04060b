"""Operations: Prometheus and OpenTelemetry metrics, top offenders, the status page's data.

Configured by the ``[metrics]`` table (:class:`MetricsConfig`). Importing this package loads
only the config part: the recorder, prometheus_client and opentelemetry are imported when
something is enabled (so an engine without metrics loads none of them). See
``docs/operations.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ratelimit.metrics.config import MetricsConfig, parse_metrics

if TYPE_CHECKING:
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

_LAZY = {
    "Observer": "observer",
    "Recorder": "observer",
    "build_observer": "observer",
    "RedisTop": "top",
    "SpaceSaving": "top",
    "TopOffenders": "top",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"ratelimit.metrics.{module}"), name)

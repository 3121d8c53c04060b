"""OpenTelemetry metrics through ``opentelemetry-api`` (extra ``[otel]``; SPEC §7 names).

Meter ``"ratelimit"`` (with the package version), instruments:

- ``ratelimit.requests`` — counter, attributes ``rule`` and ``outcome``;
- ``ratelimit.decision.duration`` — histogram in seconds (unit ``s``), attribute ``backend``;
- ``ratelimit.backend.errors`` — counter, attributes ``backend`` and ``kind``;
- ``ratelimit.shares`` and ``ratelimit.share.units`` — counters of the shares of limits with
  ``share`` (Redis) and of their units, attribute ``event`` (``taken``, ``returned``,
  ``expired``).

With only the API installed the calls are no-ops; an SDK ``MeterProvider`` (set globally, or
passed as ``MetricsConfig(opentelemetry=provider)``) makes them record.
"""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import metrics

__all__ = ["OtelMetrics", "otel_for"]


class OtelMetrics:
    """The instruments on the meter of ``provider`` (``True``: the global provider)."""

    def __init__(self, provider: Any = True) -> None:
        from ratelimit import __version__

        if provider is True or provider is None:
            meter = metrics.get_meter("ratelimit", __version__)
        else:
            meter = provider.get_meter("ratelimit", __version__)
        self.requests = meter.create_counter(
            "ratelimit.requests",
            unit="{request}",
            description="Requests decided by the rate limiter, by rule and outcome.",
        )
        self.decision_duration = meter.create_histogram(
            "ratelimit.decision.duration",
            unit="s",
            description="Time to decide a request, backend round trip included.",
        )
        self.backend_errors = meter.create_counter(
            "ratelimit.backend.errors",
            unit="{error}",
            description="Failed backend decisions, by kind.",
        )
        self.shares = meter.create_counter(
            "ratelimit.shares",
            unit="{share}",
            description="Shares of limits taken from the backend, returned or expired.",
        )
        self.share_units = meter.create_counter(
            "ratelimit.share.units",
            unit="{unit}",
            description="Units of those shares, by event.",
        )


_lock = threading.Lock()
#: id(provider) → (provider, its instruments); ``True`` stands for the global provider.
_by_provider: dict[int, tuple[Any, OtelMetrics]] = {}


def otel_for(provider: Any = True) -> OtelMetrics:
    """The shared instruments of ``provider`` (several engines record into the same ones)."""
    with _lock:
        found = _by_provider.get(id(provider))
        if found is None:
            found = _by_provider[id(provider)] = (provider, OtelMetrics(provider))
        return found[1]

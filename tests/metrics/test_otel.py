"""OpenTelemetry: SPEC §7 instruments, recorded through the API into an SDK reader."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from ratelimit import MemoryBackend
from ratelimit.backends.redis import RedisBackend
from ratelimit.http.engine import Engine
from tests.conftest import FakeClock
from tests.metrics.conftest import hit
from tests.support.servers import free_port


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Every data point the reader holds, by instrument name."""
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "ratelimit"
            for metric in scope.metrics:
                found[metric.name] = list(metric.data.data_points)
    return found


def test_requests_and_duration(clock: FakeClock) -> None:
    """``ratelimit.requests`` by rule and outcome, ``ratelimit.decision.duration`` in s."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    engine = Engine(
        {
            "metrics": {"opentelemetry": provider},
            "rules": [{"name": "api", "path": "/api/**", "limit": "2/minute"}],
        },
        backend=MemoryBackend(clock=clock),
    )
    for _ in range(3):
        hit(engine, "/api/items")
    found = points(reader)
    requests = {
        (p.attributes["rule"], p.attributes["outcome"]): p.value
        for p in found["ratelimit.requests"]
    }
    assert requests == {("api", "allowed"): 2, ("api", "rejected"): 1}
    (duration,) = found["ratelimit.decision.duration"]
    assert dict(duration.attributes) == {"backend": "memory"}
    assert duration.count == 3
    assert 0 < duration.sum < 1
    print("OTel points:", requests, "duration count", duration.count, "sum", duration.sum)
    provider.shutdown()


def test_backend_errors() -> None:
    """``ratelimit.backend.errors`` by backend and kind."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        timeout=0.2,
        breaker_threshold=1,
        breaker_clock=FakeClock(),
    )
    engine = Engine(
        {
            "metrics": {"opentelemetry": provider},
            "rules": [{"name": "api", "path": "/api/**", "limit": "2/minute"}],
        },
        backend=backend,
    )
    hit(engine, "/api/a")
    hit(engine, "/api/b")
    errors = {
        (p.attributes["backend"], p.attributes["kind"]): p.value
        for p in points(reader)["ratelimit.backend.errors"]
    }
    assert errors == {("redis", "connection"): 1, ("redis", "circuit_open"): 1}
    backend.close()
    provider.shutdown()


def test_shares_are_counted_by_event(redis_url: str) -> None:
    """``ratelimit.shares`` and ``ratelimit.share.units`` by event follow the backend's
    shares: taken on decisions, returned on close."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    backend = RedisBackend.from_url(redis_url, clock=lambda: 120_000.0)
    rules = [{"name": "s", "path": "/s", "limit": "1000/hour", "share": 8}]
    engine = Engine({"metrics": {"opentelemetry": provider}, "rules": rules}, backend=backend)
    for _ in range(5):
        assert hit(engine, "/s").kind == "allowed"
    held = backend.shares.held()
    backend.close()
    found = points(reader)
    shares = {p.attributes["event"]: p.value for p in found["ratelimit.shares"]}
    units = {p.attributes["event"]: p.value for p in found["ratelimit.share.units"]}
    assert shares == {"taken": backend.shares.counts["taken"], "returned": 1}
    assert units == {"taken": 5 + held, "returned": held}
    provider.shutdown()

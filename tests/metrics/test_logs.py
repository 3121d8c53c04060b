"""The log lines docs/operations.md promises: one per outage and recovery, never per request."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ratelimit import MemoryBackend
from ratelimit.backends.redis import RedisBackend
from ratelimit.http.engine import Engine
from tests.conftest import FakeClock
from tests.metrics.conftest import hit, sample

RULES = [{"name": "api", "path": "/api/**", "limit": "100/minute"}]


@pytest.mark.redis
def test_an_outage_logs_two_lines_and_counts_every_failure(
    redis_proc: Any, registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops for 30 requests, then comes back: one WARNING when the circuit opens, one
    INFO when it closes (naming the failed decisions), while the metrics count all 30."""
    redis_proc.start()
    breaker_clock = FakeClock()
    backend = RedisBackend.from_url(
        redis_proc.url, timeout=0.5, breaker_threshold=3, breaker_clock=breaker_clock
    )
    engine = Engine({"metrics": {"prometheus": registry}, "rules": RULES}, backend=backend)
    caplog.set_level(logging.INFO, logger="ratelimit")
    assert hit(engine, "/api/a").kind == "allowed"
    redis_proc.stop()
    kinds = {hit(engine, "/api/a").kind for _ in range(30)}
    assert kinds == {"error_allowed"}
    assert sample(registry, "ratelimit_backend_up", backend="redis") == 0
    redis_proc.start()
    breaker_clock.advance(5)  # past the cool-down: the next decision probes
    assert hit(engine, "/api/a").kind == "allowed"
    assert sample(registry, "ratelimit_backend_up", backend="redis") == 1
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ratelimit.backend"]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO], lines
    assert "circuit open after 3 failures" in lines[0][1]
    assert "30 decisions failed meanwhile" in lines[1][1]
    errors = sum(
        sample(registry, "ratelimit_backend_errors_total", backend="redis", kind=kind)
        for kind in ("connection", "timeout", "circuit_open")
    )
    assert errors == 30
    backend.close()


def test_shadow_rejections_log_once_per_rule_client_and_window(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """In shadow mode 20 over-limit requests of one client give one INFO line; another
    client gets its own."""
    config = {
        "shadow": True,
        "metrics": {"status_path": "/_rl"},
        "rules": [{"name": "api", "path": "/api/**", "limit": "1/minute"}],
    }
    engine = Engine(config, backend=MemoryBackend(clock=clock))
    caplog.set_level(logging.INFO, logger="ratelimit")
    kinds = [hit(engine, "/api/x", peer="198.51.100.7").kind for _ in range(21)]
    assert kinds == ["allowed"] + ["shadow_rejected"] * 20
    hit(engine, "/api/x", peer="203.0.113.9")
    hit(engine, "/api/x", peer="203.0.113.9")
    shadow = [r for r in caplog.records if "shadow mode: would reject" in r.getMessage()]
    assert len(shadow) == 2
    assert all(r.levelno == logging.INFO and r.name == "ratelimit" for r in shadow)
    assert engine.top("api") == [("api", "ip:198.51.100.7", 20), ("api", "ip:203.0.113.9", 1)]

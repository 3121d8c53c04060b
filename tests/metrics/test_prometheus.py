"""Prometheus: SPEC §7 names and labels, shared metrics, backend health, gunicorn workers."""

from __future__ import annotations

import os
import sys
import textwrap
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ratelimit import MemoryBackend
from ratelimit.http.engine import Engine
from ratelimit.metrics.prometheus import exposition
from tests.conftest import FakeClock
from tests.metrics.conftest import hit, sample
from tests.support.servers import clear_of_a_minute_edge, free_port, server_process

RULES = [
    {"name": "api", "path": "/api/**", "limit": "2/minute"},
    {"name": "all", "path": "/**", "limit": "100/minute", "key": "global"},
]


def engine_on(registry: Any, clock: FakeClock, rules: list[Any] = RULES) -> Engine:
    return Engine(
        {"metrics": {"prometheus": registry}, "rules": rules}, backend=MemoryBackend(clock=clock)
    )


def test_requests_by_rule_and_outcome(registry: Any, clock: FakeClock) -> None:
    """Each matched rule counts the request with its outcome; the decision time goes to the
    histogram labelled by backend scheme."""
    engine = engine_on(registry, clock)
    kinds = [hit(engine, "/api/items").kind for _ in range(3)]
    assert kinds == ["allowed", "allowed", "rejected"]
    assert sample(registry, "ratelimit_requests_total", rule="api", outcome="allowed") == 2
    assert sample(registry, "ratelimit_requests_total", rule="api", outcome="rejected") == 1
    assert sample(registry, "ratelimit_requests_total", rule="all", outcome="rejected") == 1
    assert sample(registry, "ratelimit_decision_seconds_count", backend="memory") == 3
    assert sample(registry, "ratelimit_decision_seconds_sum", backend="memory") > 0
    assert sample(registry, "ratelimit_backend_up", backend="memory") == 1


def test_labels_never_hold_identities_or_paths(registry: Any, clock: FakeClock) -> None:
    """Many clients and paths give no new label values: only rule names and outcomes."""
    engine = engine_on(registry, clock)
    for i in range(50):
        hit(engine, f"/api/items/{i}", peer=f"198.51.100.{i}")
    values = {
        value
        for family in registry.collect()
        for s in family.samples
        for value in s.labels.values()
    }
    assert values <= {"api", "all", "allowed", "rejected", "memory"} | {
        s.labels["le"] for f in registry.collect() for s in f.samples if "le" in s.labels
    }


def test_shaping_delays(registry: Any, clock: FakeClock) -> None:
    """Leaky-bucket delays are counted as ``delayed`` and observed per rule."""
    rules = [{"name": "up", "path": "/up", "limit": "2/second", "algorithm": "leaky_bucket"}]
    engine = engine_on(registry, clock, rules)
    delays = [hit(engine, "/up").delay for _ in range(2)]
    assert delays == [0.0, 0.5]
    assert sample(registry, "ratelimit_requests_total", rule="up", outcome="delayed") == 1
    assert sample(registry, "ratelimit_delay_seconds_count", rule="up") == 1
    assert sample(registry, "ratelimit_delay_seconds_sum", rule="up") == 0.5
    assert sample(registry, "ratelimit_delay_seconds_bucket", rule="up", le="0.5") == 1
    assert sample(registry, "ratelimit_delay_seconds_bucket", rule="up", le="0.25") == 0


def test_several_engines_share_the_default_registry(clock: FakeClock) -> None:
    """``prometheus = true`` in two middlewares of one process: no duplicate-registration
    error, one series per rule and outcome."""
    rules = [{"name": "shared-default", "path": "/x", "limit": "5/minute"}]
    labels = {"rule": "shared-default", "outcome": "allowed"}
    before = REGISTRY.get_sample_value("ratelimit_requests_total", labels) or 0.0
    one = Engine({"metrics": {"prometheus": True}, "rules": rules})
    two = Engine({"metrics": {"prometheus": True}, "rules": rules})
    hit(one, "/x")
    hit(two, "/x")
    assert REGISTRY.get_sample_value("ratelimit_requests_total", labels) == before + 2
    body, content_type = exposition()
    assert content_type.startswith("text/plain")
    assert b'ratelimit_requests_total{outcome="allowed",rule="shared-default"}' in body


def test_backend_errors_and_up(registry: Any) -> None:
    """A Redis that does not answer: errors counted by kind, ``up`` falls to 0 when the
    circuit opens, and the requests are ``error_allowed``."""
    from ratelimit.backends.redis import RedisBackend

    breaker_clock = FakeClock()
    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{free_port()}/0",
        timeout=0.2,
        breaker_threshold=2,
        breaker_clock=breaker_clock,
    )
    engine = Engine({"metrics": {"prometheus": registry}, "rules": RULES[:1]}, backend=backend)
    kinds = [hit(engine, "/api/x").kind for _ in range(4)]
    assert kinds == ["error_allowed"] * 4
    assert (
        sample(registry, "ratelimit_backend_errors_total", backend="redis", kind="connection") == 2
    )
    assert (
        sample(registry, "ratelimit_backend_errors_total", backend="redis", kind="circuit_open")
        == 2
    )
    assert sample(registry, "ratelimit_backend_up", backend="redis") == 0
    assert sample(registry, "ratelimit_requests_total", rule="api", outcome="error_allowed") == 4
    engine.observer.backend_state(True)  # type: ignore[union-attr]  # the breaker's hook
    assert sample(registry, "ratelimit_backend_up", backend="redis") == 1
    backend.close()


APP = """
import os
from ratelimit.metrics.prometheus import exposition
from ratelimit.wsgi import RateLimitMiddleware

def inner(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        body, content_type = exposition()
        start_response("200 OK", [("Content-Type", content_type)])
        return [body]
    import time
    time.sleep(0.05)  # keeps a worker busy, so that concurrent requests reach both
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
    return [b"ok"]

app = RateLimitMiddleware(inner, config={
    "metrics": {"prometheus": True},
    "rules": [
        {"name": "api", "path": "/api/**", "limit": "1000/minute"},
        {"name": "tight", "path": "/api/tight", "limit": "1/minute", "key": "global"},
    ],
})
"""


@pytest.mark.slow
def test_gunicorn_multiprocess_sums_the_workers(tmp_path: Path) -> None:
    """Two gunicorn workers with PROMETHEUS_MULTIPROC_DIR: one scrape sums both workers'
    counters (each worker has its own memory budget, so ``tight`` admits one per worker)."""
    (tmp_path / "metrics_app.py").write_text(textwrap.dedent(APP))
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()]),
    }
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-b",
        "127.0.0.1:{port}",
        "metrics_app:app",
    ]
    with server_process(command, env=env) as url:

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(url + path, timeout=10) as response:
                    return response.status, response.headers.get("X-Pid", "")
            except urllib.error.HTTPError as error:
                return error.code, ""

        clear_of_a_minute_edge()  # the tight rule: a fixed window of 1/minute per worker
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(get, ["/api/items"] * 40))
        pids = {pid for _, pid in results}
        assert len(pids) == 2, "both workers should have served requests"
        with ThreadPoolExecutor(8) as pool:
            tight = list(pool.map(get, ["/api/tight"] * 16))
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
    values = {
        (s.name, s.labels.get("rule"), s.labels.get("outcome")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    admitted = sum(1 for status, _ in tight if status == 200)
    assert 1 <= admitted <= 2  # one per worker that saw /api/tight
    # /api/tight matches both rules: each counts the request with its outcome.
    assert values["ratelimit_requests_total", "api", "allowed"] == 40 + admitted
    assert values["ratelimit_requests_total", "api", "rejected"] == 16 - admitted
    assert values["ratelimit_requests_total", "tight", "allowed"] == admitted
    assert values["ratelimit_requests_total", "tight", "rejected"] == 16 - admitted
    assert values["ratelimit_decision_seconds_count", None, None] == 56


def test_counts_are_exact_across_threads(registry: Any) -> None:
    """Concurrent requests lose no count (one lock around each record)."""
    from ratelimit.metrics.prometheus import CollectedMetrics

    metrics = CollectedMetrics(registry)
    rules = [SimpleNamespace(name="a")]  # what record() reads of a rule

    def work() -> None:
        for _ in range(5000):
            metrics.record(rules, "allowed", "memory", 0.0002)

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(work) for _ in range(4)]:
            future.result()
    assert sample(registry, "ratelimit_requests_total", rule="a", outcome="allowed") == 20000
    assert (
        sample(registry, "ratelimit_decision_seconds_bucket", backend="memory", le="0.00025")
        == 20000
    )
    assert sample(registry, "ratelimit_decision_seconds_bucket", backend="memory", le="0.0001") == 0


def test_client_objects_record_the_same(registry: Any) -> None:
    """The prometheus_client objects (multiprocess mode) expose the same series."""
    from ratelimit.metrics.prometheus import ClientMetrics

    metrics = ClientMetrics(registry)
    metrics.record([SimpleNamespace(name="a")], "delayed", "redis", 0.003)
    metrics.delayed("a", 0.2)
    metrics.error("redis", "timeout")
    metrics.up("redis", False)
    assert sample(registry, "ratelimit_requests_total", rule="a", outcome="delayed") == 1
    assert sample(registry, "ratelimit_decision_seconds_bucket", backend="redis", le="0.005") == 1
    assert sample(registry, "ratelimit_delay_seconds_sum", rule="a") == 0.2
    assert sample(registry, "ratelimit_backend_errors_total", backend="redis", kind="timeout") == 1
    assert sample(registry, "ratelimit_backend_up", backend="redis") == 0


def test_a_shared_backend_counts_each_failure_once(registry: Any) -> None:
    """Two engines on one backend object (sharing a registry): a failure is counted once,
    and both engines' status data see it."""
    from ratelimit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(
        f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, breaker_clock=FakeClock()
    )
    config = {"metrics": {"prometheus": registry, "status_path": "/_rl"}, "rules": RULES[:1]}
    one, two = Engine(config, backend=backend), Engine(config, backend=backend)
    hit(one, "/api/x")
    assert (
        sample(registry, "ratelimit_backend_errors_total", backend="redis", kind="connection") == 1
    )
    for engine in (one, two):
        assert engine.observer.errors == {"connection": 1}  # type: ignore[union-attr]
    backend.close()


def test_shares_are_counted_by_event(registry: Any, redis_url: str) -> None:
    """``ratelimit_shares_total{event}`` and ``ratelimit_share_units_total{event}`` follow
    the backend's shares: taken on decisions, returned on close."""
    from ratelimit.backends.redis import RedisBackend

    backend = RedisBackend.from_url(redis_url, clock=lambda: 120_000.0)
    rules = [{"name": "s", "path": "/s", "limit": "1000/hour", "share": 8}]
    engine = Engine({"metrics": {"prometheus": registry}, "rules": rules}, backend=backend)
    for _ in range(5):
        assert hit(engine, "/s").kind == "allowed"
    held = backend.shares.held()
    backend.close()
    taken = sample(registry, "ratelimit_share_units_total", event="taken")
    assert (
        sample(registry, "ratelimit_shares_total", event="taken") == backend.shares.counts["taken"]
    )
    assert sample(registry, "ratelimit_shares_total", event="returned") == 1
    assert sample(registry, "ratelimit_share_units_total", event="returned") == held
    assert taken == 5 + held

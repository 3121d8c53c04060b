"""Helpers for the metrics tests: engines on a fake clock, and requests made in process."""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit.http.engine import Engine, Outcome
from ratelimit.http.keys import RequestInfo
from tests.redis.conftest import redis_client, redis_proc, redis_url, server_kind

__all__ = ["redis_client", "redis_proc", "redis_url", "server_kind"]  # real-server fixtures


class Request(RequestInfo):
    """A bare request: no headers, no user."""

    __slots__ = ()

    def header(self, name: str) -> str | None:
        """No headers."""
        return None

    def user(self) -> str | None:
        """Nobody."""
        return None


def hit(engine: Engine, path: str, peer: str = "192.0.2.1", method: str = "GET") -> Outcome:
    """Decide one request through the engine's sync driver (the WSGI path)."""
    plan = engine.plan(method, path)
    assert plan is not None, path
    return engine.run(plan, Request(method, path, peer, {}))


@pytest.fixture
def registry() -> Any:
    """A fresh Prometheus registry (so tests do not see each other's counts)."""
    from prometheus_client import CollectorRegistry

    return CollectorRegistry()


def sample(registry: Any, name: str, **labels: str) -> float:
    """One sample of ``registry`` (0.0 when the series does not exist)."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else float(value)

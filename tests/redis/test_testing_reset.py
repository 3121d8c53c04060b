"""``ratelimit.testing`` on a Redis backend: reset() deletes our keys by prefix (SCAN, in
batches) and nothing else; a fake clock installed replaces Redis TIME."""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit import ConfigError
from ratelimit.backends.redis import RedisBackend
from ratelimit.http.engine import Engine
from ratelimit.http.keys import RequestInfo
from ratelimit.testing import FakeClock, reset

pytestmark = pytest.mark.redis

CONFIG = {"rules": [{"name": "r", "path": "/", "limit": "2/minute"}]}


def kinds(engine: Engine, n: int, peer: str = "192.0.2.1") -> list[str]:
    plan = engine.plan("GET", "/")
    assert plan is not None
    return [engine.run(plan, RequestInfo("GET", "/", peer)).kind for _ in range(n)]


def test_reset_deletes_only_keys_under_the_prefix(redis_url: str, redis_client: Any) -> None:
    """``reset(engine)`` on Redis deletes every key under the backend's prefix, in batches
    smaller than the key count, and leaves other keys (another prefix, the application's)
    alone; the clients then start fresh."""
    backend = RedisBackend.from_url(redis_url, clock=FakeClock(), prefix="t[1]*:", timeout=5)
    engine = Engine(CONFIG, backend=backend)
    for i in range(30):
        kinds(engine, 1, f"192.0.2.{i}")
    assert kinds(engine, 2) == ["allowed", "rejected"]
    redis_client.set("app:session", "keep")
    redis_client.set("t1:other", "keep")  # what an unescaped "t[1]*:" pattern would match
    ours = [k for k in redis_client.keys("*") if k.startswith(b"t[1]*:")]
    assert len(ours) == 30
    assert backend.clear(batch=7) == 30
    assert sorted(redis_client.keys("*")) == [b"app:session", b"t1:other"]
    for i in range(3):
        kinds(engine, 1, f"192.0.2.{i}")
    reset(engine)
    assert not [k for k in redis_client.keys("*") if k.startswith(b"t[1]*:")]
    assert kinds(engine, 2) == ["allowed", "allowed"]
    backend.close()


def test_reset_refuses_an_empty_prefix(redis_url: str) -> None:
    """An empty prefix would match the whole database: ``clear`` refuses it."""
    backend = RedisBackend.from_url(redis_url, prefix="", timeout=5)
    with pytest.raises(ConfigError, match="empty prefix"):
        backend.clear()
    backend.close()


def test_fake_clock_replaces_redis_time(redis_url: str) -> None:
    """Installed on a Redis engine, the fake clock replaces Redis ``TIME``: a minute later
    by the fake clock, the window is fresh again."""
    backend = RedisBackend.from_url(redis_url, timeout=5)
    engine = Engine(CONFIG, backend=backend)
    with FakeClock().install(engine) as clock:
        assert backend.clock is clock
        assert kinds(engine, 3) == ["allowed", "allowed", "rejected"]
        clock.advance(60)
        assert kinds(engine, 1) == ["allowed"]
    assert backend.clock is None
    backend.close()

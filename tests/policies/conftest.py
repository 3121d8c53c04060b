"""Fixtures for the policy tests: every scenario runs on memory and on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ratelimit import MemoryBackend
from tests.conftest import FakeClock
from tests.redis.conftest import redis_proc, redis_url, server_kind

__all__ = ["redis_proc", "redis_url", "server_kind"]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[Any]:
    """A backend on the fake clock: the memory one, or a RedisBackend on a real server."""
    if request.param == "memory":
        yield MemoryBackend(clock=clock)
        return
    from ratelimit.backends.redis import RedisBackend

    url = request.getfixturevalue("redis_url")
    redis = RedisBackend.from_url(
        url, clock=clock, prefix=f"t{uuid.uuid4().hex[:8]}:", ttl_pad_ms=600_000, timeout=2.0
    )
    yield redis
    redis.close()

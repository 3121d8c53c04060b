"""Fixtures for the Redis tests: real servers started by the suite, and the fakeredis fallback.

* ``redis_proc`` (session): one real ``redis-server`` on a free port (skipped with a reason
  when the binary is missing; CI turns that skip into a failure for tests marked ``redis``).
* ``redis_url``: that server's URL, emptied (``FLUSHALL``) before the test.
* ``redis_client``: a redis-py client on it, for looking at keys and TTLs.
* ``script_client``: for the script tests only: the real server when there is one, else a
  ``fakeredis`` server with Lua (the script tests then still run).
* ``redis_cluster_setup`` / ``redis_sentinel_setup`` (session): a 3-master Cluster and a
  Sentinel set-up from the same binary.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.redis_server import (
    HAVE_REDIS,
    SKIP_REASON,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    redis_cluster,
    redis_sentinel,
    redis_server,
)


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisServer]:
    """One real redis-server for the whole session."""
    if not HAVE_REDIS:
        pytest.skip(SKIP_REASON)
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_url(redis_proc: RedisServer) -> str:
    """The session server's URL, emptied first (and restarted if a test killed it)."""
    redis_proc.start()
    redis_proc.command("FLUSHALL")
    redis_proc.command("SCRIPT", "FLUSH")
    return redis_proc.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Any]:
    """A plain redis-py client on the test server, to inspect keys."""
    import redis

    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def _script_server() -> Iterator[RedisServer | None]:
    if not HAVE_REDIS:
        yield None
        return
    with redis_server() as server:
        yield server


@pytest.fixture
def script_client(_script_server: RedisServer | None) -> Iterator[Any]:
    """A sync client for script-level tests: real Redis if possible, else fakeredis + Lua."""
    if _script_server is None:
        import fakeredis

        yield fakeredis.FakeRedis()
        return
    import redis

    client = redis.Redis.from_url(_script_server.url)
    client.flushall()
    client.script_flush()
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster_setup() -> Iterator[RedisCluster]:
    """A three-master Redis Cluster for the session."""
    if not HAVE_REDIS:
        pytest.skip(SKIP_REASON)
    with redis_cluster(3) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_sentinel_setup() -> Iterator[RedisSentinel]:
    """A master and a Sentinel watching it, for the session."""
    if not HAVE_REDIS:
        pytest.skip(SKIP_REASON)
    with redis_sentinel() as setup:
        yield setup

"""Fixtures for the Redis tests: real servers started by the suite, and the fakeredis fallback.

* ``redis_proc`` (session): one real ``redis-server`` on a free port (skipped with a reason
  when the binary is missing; CI turns that skip into a failure for tests marked ``redis``).
* ``redis_url``: that server's URL, emptied (``FLUSHALL``) before the test.
* ``redis_client``: a redis-py client on it, for looking at keys and TTLs.
* ``script_client``: for the script tests only: the real server when there is one, else a
  ``fakeredis`` server with Lua (the script tests then still run; fakeredis has no ``struct``
  library, so the backend then sends the script behind a pure-Lua stand-in for it,
  ``tests/support/struct_shim.lua``: the shipped script has none).
* ``redis_cluster_setup`` / ``redis_sentinel_setup`` (session): a 3-master Cluster and a
  Sentinel set-up from the same binary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
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

_STRUCT_SHIM = Path(__file__).parent.parent / "support" / "struct_shim.lua"


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

        import ratelimit.backends.redis as redis_backend
        from ratelimit.backends.redis_script import SCRIPT

        with pytest.MonkeyPatch.context() as patch:
            script = _STRUCT_SHIM.read_text(encoding="utf-8") + SCRIPT
            patch.setattr(redis_backend, "SCRIPT", script)
            patch.setattr(redis_backend, "SCRIPT_SHA", hashlib.sha1(script.encode()).hexdigest())
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

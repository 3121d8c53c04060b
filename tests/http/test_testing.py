"""``ratelimit.testing``: FakeClock installed on running apps, disabled() on every adapter,
reset() of every counter, and the pytest plugin loaded through its entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import AsyncClient, Client
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.contrib import django as rl_django
from ratelimit.contrib import flask as rl_flask
from ratelimit.contrib.starlette import limit as starlette_limit
from ratelimit.http.engine import Engine
from ratelimit.testing import FakeClock, disabled, engines_of, is_disabled, reset
from ratelimit.wsgi import RateLimitMiddleware as WsgiMiddleware
from tests.http.conftest import FailingBackend, RecordingBackend, asgi_client

ROOT = Path(__file__).resolve().parents[2]
CONFIG = {"rules": [{"name": "r", "path": "/**", "limit": "2/minute"}]}


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def starlette_app() -> Starlette:
    """A Starlette app with the middleware in its stack (built on its first request)."""
    return Starlette(
        routes=[Route("/{rest:path}", hello)],
        middleware=[Middleware(RateLimitMiddleware, config=CONFIG)],
    )


def wsgi_hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def flask_app() -> Flask:
    """A Flask app with the extension (the config's rule) and a per-view limit."""
    app = Flask(__name__)
    rl_flask.RateLimit(app, config={"rules": [{"name": "f", "path": "/", "limit": "2/minute"}]})

    @app.get("/")
    def index() -> str:
        return "hello"

    @app.get("/view")
    @rl_flask.limit("1/minute")
    def view() -> str:
        return "view"

    return app


async def asgi_codes(app: Any, n: int, path: str = "/") -> list[tuple[int, bool]]:
    """``n`` GETs: (status, whether a RateLimit header came back) each."""
    async with asgi_client(app) as client:
        responses = [await client.get(path) for _ in range(n)]
    return [(r.status_code, "ratelimit" in r.headers) for r in responses]


def wsgi_codes(app: Any, n: int, path: str = "/") -> list[tuple[int, bool]]:
    """``n`` GETs through httpx's WSGI transport."""
    transport = httpx.WSGITransport(app=app, remote_addr="192.0.2.5")
    with httpx.Client(transport=transport, base_url="http://testserver") as client:
        responses = [client.get(path) for _ in range(n)]
    return [(r.status_code, "ratelimit" in r.headers) for r in responses]


LIMITED = [(200, True), (200, True), (429, True)]
OFF = [(200, False)] * 3


# -- FakeClock ---------------------------------------------------------------------------------


def test_fake_clock_moves_only_by_hand() -> None:
    """The clock shows its start, moves by ``advance`` and ``set_ms``, and nothing else."""
    clock = FakeClock()
    assert clock() == 1000.0
    clock.advance(2.5)
    assert clock() == 1002.5
    clock.set_ms(1234)
    assert clock() == 1.234
    assert FakeClock(start=5.0)() == 5.0


async def test_clock_installed_on_an_asgi_middleware_moves_its_windows() -> None:
    """Installed on a running ASGI middleware, the fake clock drives its windows: a full
    window is free again once the clock moved a minute, and uninstalling gives the real
    clock back."""
    app = RateLimitMiddleware(PlainTextResponse("hello"), config=CONFIG)
    backend = app.engine.backend
    assert isinstance(backend, MemoryBackend)
    clock = FakeClock().install(app)
    assert backend.clock is clock
    assert await asgi_codes(app, 3) == LIMITED
    clock.advance(60)
    assert [code for code, _ in await asgi_codes(app, 1)] == [200]
    clock.uninstall()
    assert backend.clock is time.monotonic


async def test_clock_installs_on_a_starlette_app_before_its_first_request() -> None:
    """A Starlette app's engine is found (its middleware stack built) before any request,
    and ``with`` uninstalls the clock at the end of the block."""
    app = starlette_app()
    (engine,) = engines_of(app)
    with FakeClock().install(app) as clock:
        assert engine.backend.clock is clock  # type: ignore[attr-defined]
        assert await asgi_codes(app, 3) == LIMITED
        clock.advance(60)
        assert [code for code, _ in await asgi_codes(app, 1)] == [200]
    assert engine.backend.clock is time.monotonic  # type: ignore[attr-defined]


def test_clock_installs_on_a_flask_app() -> None:
    """A Flask app with the extension leads to its engine; the clock drives its limits."""
    app = flask_app()
    (engine,) = engines_of(app)
    assert engine is app.extensions["ratelimit"].engine_for(app)
    clock = FakeClock().install(app)
    assert wsgi_codes(app, 3) == LIMITED
    clock.advance(60)
    assert [code for code, _ in wsgi_codes(app, 1)] == [200]
    clock.uninstall()


def test_clock_installs_on_a_bare_backend_and_on_a_rejection_cache() -> None:
    """Installed on a backend, the clock reaches it; installed on an engine over a remote
    backend, it reaches the rejection cache too (which times the rejections it repeats)."""
    backend = MemoryBackend()
    engine = Engine(CONFIG, backend=backend)
    assert engines_of(backend) == [engine]
    clock = FakeClock().install(backend)
    assert backend.clock is clock
    clock.uninstall()
    assert backend.clock is time.monotonic

    remote = Engine(CONFIG, backend=RecordingBackend(MemoryBackend()))
    assert remote.rejections is not None
    with pytest.raises(TypeError, match="no settable clock"):
        FakeClock().install(remote)

    class Clocked(RecordingBackend):
        """A remote backend with a settable clock."""

        clock = property(
            lambda self: self.inner.clock, lambda self, c: setattr(self.inner, "clock", c)
        )

    remote = Engine(CONFIG, backend=Clocked(MemoryBackend()))
    with FakeClock().install(remote) as clock:
        assert remote.rejections is not None
        assert remote.rejections._clock is clock
        assert remote.backend.clock is clock  # type: ignore[attr-defined]
    assert remote.rejections._clock is time.monotonic


# -- reset -------------------------------------------------------------------------------------


async def test_reset_forgets_the_counters_of_an_asgi_app() -> None:
    """``reset(app)`` forgets every counter of an app's engine: a full budget again."""
    app = starlette_app()
    assert await asgi_codes(app, 3) == LIMITED
    reset(app)
    assert await asgi_codes(app, 3) == LIMITED


def test_reset_forgets_the_counters_of_wsgi_and_flask_apps() -> None:
    """``reset`` works on a WSGI middleware and on a Flask app (per-view limits too)."""
    wsgi = WsgiMiddleware(wsgi_hello, config=CONFIG)
    assert wsgi_codes(wsgi, 3) == LIMITED
    reset(wsgi)
    assert wsgi_codes(wsgi, 3) == LIMITED
    app = flask_app()
    assert [c for c, _ in wsgi_codes(app, 2, "/view")] == [200, 429]
    reset(app)
    assert [c for c, _ in wsgi_codes(app, 1, "/view")] == [200]


def test_reset_forgets_the_counters_of_django_settings() -> None:
    """``reset(django.conf.settings)`` forgets the counters of ``settings.RATELIMIT``'s
    engine."""
    from django.conf import settings

    rl_django.configure()
    try:
        client = Client(REMOTE_ADDR="192.0.2.30")
        assert [client.get("/limited").status_code for _ in range(3)] == [200, 200, 429]
        reset(settings)
        assert client.get("/limited").status_code == 200
    finally:
        rl_django._engine = None


def test_reset_without_a_target_forgets_every_engine() -> None:
    """``reset()`` reaches every engine of the process, the decorators' own included."""
    first = WsgiMiddleware(wsgi_hello, config=CONFIG)
    second = WsgiMiddleware(wsgi_hello, config=CONFIG)
    for app in (first, second):
        assert wsgi_codes(app, 3) == LIMITED
    reset()
    for app in (first, second):
        assert wsgi_codes(app, 2) == LIMITED[:2]


# -- disabled ----------------------------------------------------------------------------------


async def test_disabled_covers_asgi_and_the_starlette_decorator() -> None:
    """Under ``disabled()`` the ASGI middleware and the Starlette decorator admit every
    request with no headers, count nothing, and limit again after the block."""

    @starlette_limit("1/minute")
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    decorated = Starlette(routes=[Route("/", endpoint)])
    app = starlette_app()
    with disabled():
        assert await asgi_codes(app, 3) == OFF
        assert await asgi_codes(decorated, 3) == OFF
    assert await asgi_codes(app, 3) == LIMITED
    assert [code for code, _ in await asgi_codes(decorated, 2)] == [200, 429]


def test_disabled_covers_wsgi_and_flask() -> None:
    """Under ``disabled()`` the WSGI middleware, Flask's extension and its per-view limits
    admit everything, with no headers."""
    wsgi = WsgiMiddleware(wsgi_hello, config=CONFIG)
    app = flask_app()
    with disabled():
        assert wsgi_codes(wsgi, 3) == OFF
        assert wsgi_codes(app, 3) == OFF
        assert wsgi_codes(app, 3, "/view") == OFF
    assert wsgi_codes(wsgi, 3) == LIMITED
    assert [code for code, _ in wsgi_codes(app, 2, "/view")] == [200, 429]


async def test_disabled_covers_django_sync_and_async() -> None:
    """Under ``disabled()`` Django's middleware admits everything on its sync and its
    async path, with no headers."""
    rl_django.configure()
    try:
        with disabled():
            sync = [Client(REMOTE_ADDR="192.0.2.31").get("/limited") for _ in range(3)]
            client = AsyncClient(REMOTE_ADDR="192.0.2.32")
            async_ = [await client.get("/limited") for _ in range(3)]
        for response in (*sync, *async_):
            assert response.status_code == 200
            assert not response.has_header("RateLimit")
        after = [(await client.get("/limited")).status_code for _ in range(3)]
        assert after == [200, 200, 429]
    finally:
        rl_django._engine = None


def test_disabled_is_restored_after_an_exception_and_nests() -> None:
    """The switch is back off after a block left by an exception, and an inner block's end
    leaves the outer block's switch on."""
    with pytest.raises(RuntimeError), disabled():
        assert is_disabled()
        raise RuntimeError("boom")
    assert not is_disabled()
    with disabled():
        with disabled():
            pass
        assert is_disabled()
    assert not is_disabled()


# -- the pytest plugin -------------------------------------------------------------------------


@pytest.fixture
def plugin_site(tmp_path: Path) -> Iterator[Path]:
    """A directory with a distribution declaring the ``pytest11`` entry point exactly as
    pyproject.toml does (the checkout itself is not installed with it)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = project["project"]["entry-points"]["pytest11"]
    assert entry == {"ratelimit": "ratelimit.testing.pytest_plugin"}
    info = tmp_path / "site" / "ratelimit_plugin_probe-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ratelimit-plugin-probe\n")
    (info / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items())
    )
    yield tmp_path / "site"


def test_pytest_plugin_fixtures_work_through_the_entry_point(
    plugin_site: Path, tmp_path: Path
) -> None:
    """A pytest run that loads the plugin only through its entry point gets working
    ``ratelimit_clock``, ``ratelimit_disabled`` and ``ratelimit_reset`` fixtures."""
    tests = tmp_path / "project"
    tests.mkdir()
    (tests / "test_app.py").write_text(
        textwrap.dedent(
            """
            from ratelimit import MemoryBackend
            from ratelimit.http.engine import Engine
            from ratelimit.http.keys import RequestInfo
            from ratelimit.testing import FakeClock, is_disabled

            ENGINE = Engine({"rules": [{"name": "r", "path": "/", "limit": "1/minute"}]})
            REQUEST = RequestInfo("GET", "/", "192.0.2.1")

            def kinds(n):
                plan = ENGINE.plan("GET", "/")
                return [ENGINE.run(plan, REQUEST).kind for _ in range(n)]

            def test_disabled(ratelimit_disabled):
                assert is_disabled()
                assert kinds(3) == ["allowed"] * 3

            def test_reset(ratelimit_reset):
                assert not is_disabled()
                assert kinds(2) == ["allowed", "rejected"]
                ratelimit_reset(ENGINE)
                assert kinds(1) == ["allowed"]

            def test_clock(ratelimit_clock, ratelimit_reset):
                assert isinstance(ratelimit_clock, FakeClock)
                ratelimit_clock.install(ENGINE)
                assert ENGINE.backend.clock is ratelimit_clock
                assert kinds(2) == ["allowed", "rejected"]
                ratelimit_clock.advance(60)
                assert kinds(1) == ["allowed"]

            def test_clock_uninstalled():
                assert not isinstance(ENGINE.backend.clock, FakeClock)
            """
        )
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{plugin_site}:{ROOT}",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-W",
            "error",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:asyncio",
        ],
        cwd=tests,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_reset_skips_what_it_cannot_clear_only_without_a_target() -> None:
    """A backend with no ``clear()`` is a ``TypeError`` for ``reset(app)``, and skipped by
    ``reset()`` of every engine (which still clears the others)."""
    odd = WsgiMiddleware(wsgi_hello, config=CONFIG, backend=FailingBackend())
    plain = WsgiMiddleware(wsgi_hello, config=CONFIG)
    assert wsgi_codes(plain, 3) == LIMITED
    with pytest.raises(TypeError, match="without a clear"):
        reset(odd)
    reset()
    assert wsgi_codes(plain, 1) == LIMITED[:1]

"""The status page: who may see it, JSON and HTML, never rate limited, drawn in Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.http.engine import Engine
from ratelimit.metrics.observer import Recorder
from ratelimit.wsgi import RateLimitMiddleware as WsgiMiddleware
from tests.conftest import FakeClock
from tests.metrics.conftest import Request as _Request
from tests.support.servers import uvicorn_server

CONFIG: dict[str, Any] = {
    "metrics": {"status_path": "/_ratelimit"},
    "rules": [
        {"name": "login", "path": "/auth/login", "methods": ["POST"], "limit": "3/minute"},
        {"name": "api", "path": "/api/**", "limit": "10/second", "algorithm": "token_bucket"},
        {"name": "gets", "path": "/**", "methods": ["GET"], "limit": "1/hour", "key": "global"},
    ],
}


async def ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app(engine: Engine) -> RateLimitMiddleware:
    inner = Starlette(routes=[Route("/{path:path}", ok, methods=["GET", "POST"])])
    return RateLimitMiddleware(inner, engine=engine)


def client(engine: Engine, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(engine), client=(peer, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_json_counts_and_top(clock: FakeClock) -> None:
    """JSON for Accept: application/json, with counts by outcome, the top offenders, the
    backend's health and the config's origin; the page itself is never rate limited."""
    engine = Engine(CONFIG, backend=MemoryBackend(clock=clock))
    async with client(engine, peer="198.51.100.7") as outsider:
        for _ in range(5):
            await outsider.post("/auth/login")
    async with client(engine) as local:
        for _ in range(3):  # GET /** allows 1/hour: the status page must still answer
            response = await local.get("/_ratelimit", headers={"Accept": "application/json"})
            assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    data = response.json()
    login = next(rule for rule in data["rules"] if rule["name"] == "login")
    assert login["counts"]["1m"] == {"allowed": 3, "rejected": 2}
    assert login["counts"]["15m"] == login["counts"]["1m"]
    assert login["top"] == [{"identity": "ip:198.51.100.7", "rejections": 2}]
    assert sum(login["series"]["rejected"]) == 2
    assert len(login["series"]["admitted"]) == 90
    assert data["backend"] == {
        "kind": "memory",
        "url": "memory://",
        "up": True,
        "failed_decisions": 0,
        "last_error_kind": None,
        "errors": {},
    }
    assert data["config"]["source"] == "config"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", data["config"]["loaded_at"])


async def test_outsiders_get_404(clock: FakeClock) -> None:
    """A peer outside status_allow gets a plain 404, as if there were no page."""
    engine = Engine(CONFIG, backend=MemoryBackend(clock=clock))
    async with client(engine, peer="203.0.113.5") as outsider:
        response = await outsider.get("/_ratelimit")
    assert response.status_code == 404
    assert b"ratelimit" not in response.content
    async with client(engine, peer="::ffff:127.0.0.1") as mapped:
        assert (await mapped.get("/_ratelimit")).status_code == 200


async def test_status_allow_and_methods(clock: FakeClock) -> None:
    """status_allow replaces the loopback default; HEAD has no body; POST is 405."""
    config = {**CONFIG, "metrics": {"status_path": "/ops", "status_allow": ["10.0.0.0/8"]}}
    engine = Engine(config, backend=MemoryBackend(clock=clock))
    async with client(engine) as local:
        assert (await local.get("/ops")).status_code == 404
    async with client(engine, peer="10.1.2.3") as inside:
        head = await inside.head("/ops")
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["content-length"]) > 0
        assert (await inside.post("/ops")).status_code == 405


def test_html_is_self_contained(clock: FakeClock) -> None:
    """The HTML page refreshes itself, loads nothing from elsewhere and escapes what it shows."""
    engine = Engine(CONFIG, backend=MemoryBackend(clock=clock))
    assert engine.status is not None
    page = engine.status.html()
    assert '<meta http-equiv="refresh" content="5">' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert page.count('<svg class="spark"') == 3


def test_wsgi_adapter_answers_too(clock: FakeClock) -> None:
    """The WSGI middleware answers the status path before its rules, loopback only."""
    engine = Engine(CONFIG, backend=MemoryBackend(clock=clock))

    def inner(environ: Any, start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"app"]

    wsgi = WsgiMiddleware(inner, engine=engine)
    seen: list[str] = []

    def call(peer: str) -> bytes:
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/_ratelimit",
            "REMOTE_ADDR": peer,
            "HTTP_ACCEPT": "application/json",
        }
        return b"".join(wsgi(environ, lambda status, headers, exc=None: seen.append(status)))

    assert call("127.0.0.1").startswith(b"{")
    assert call("192.0.2.1") == b"Not Found"
    assert seen == ["200 OK", "404 Not Found"]


# -- a real browser ------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(*args: str) -> str:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def traffic(url: str, stop: threading.Event, pace: Callable[[], float]) -> None:
    """Clients above their limits until ``stop``: one hammering login, two on the API."""
    with httpx.Client(base_url=url) as http:
        while not stop.is_set():
            http.post("/auth/login", headers={})
            for _ in range(4):
                http.get("/api/items")
            time.sleep(pace())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt install chromium)")
def test_page_in_chromium(tmp_path: Path) -> None:
    """Headless Chromium loads the page from uvicorn under traffic: a sparkline per rule
    with admitted and rejected lines, the offender, the backend up; and a screenshot.

    ``RATELIMIT_STATUS_SCREENSHOT=docs/status.png`` also writes the screenshot there, after
    15 minutes of traffic replayed on a status clock running 60 times faster.
    """
    target = os.environ.get("RATELIMIT_STATUS_SCREENSHOT")
    speed = 60.0 if target else 1.0
    start = time.time()

    def status_clock() -> float:
        return start + (time.time() - start) * speed

    config = {**CONFIG, "rules": CONFIG["rules"][:2]}
    engine = Engine(config)
    engine.observer = Recorder(engine, clock=status_clock)
    assert engine.status is not None
    engine.status.recorder = engine.observer
    stop = threading.Event()
    with uvicorn_server(app(engine)) as url:
        phase = iter([0.05] * 60 + [0.01] * 120 + [0.2] * 40)
        worker = threading.Thread(
            target=traffic, args=(url, stop, lambda: next(phase, 0.05)), daemon=True
        )
        worker.start()
        try:
            deadline = time.monotonic() + (15.0 if target else 2.0)
            while time.monotonic() < deadline:
                time.sleep(0.1)
            dom = chromium("--dump-dom", url + "/_ratelimit")
            shot = tmp_path / "status.png"
            chromium(f"--screenshot={shot}", "--window-size=1100,900", url + "/_ratelimit")
        finally:
            stop.set()
            worker.join(10)
    sparks = dict(
        re.findall(r'<svg class="spark" data-rule="(\w+)"[^>]*data-rejected="(\d+)"', dom)
    )
    assert set(sparks) == {"login", "api"}
    assert all(int(rejected) > 0 for rejected in sparks.values())
    for rule in ("login", "api"):
        section = dom.split(f'<section class="rule" data-rule="{rule}">', 1)[1]
        polylines = re.findall(r'<polyline class="(admitted|rejected)" points="([^"]+)"', section)
        assert [name for name, _ in polylines[:2]] == ["admitted", "rejected"]
        heights = {point.split(",")[1] for point in polylines[1][1].split()}
        assert len(heights) > 1, "the rejected line is not flat"
    assert "<code>ip:127.0.0.1</code>" in dom
    assert '<p class="health up">up</p>' in dom
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if target:
        shutil.copyfile(shot, target)


@pytest.mark.redis
async def test_top_from_redis_and_backend_health(redis_url: str) -> None:
    """With Redis the page's top offenders are every worker's (read with the asyncio client);
    another worker's rejections show up, and the backend is reported up."""
    from ratelimit.backends.redis import RedisBackend

    rules = [{"name": "login", "path": "/auth/login", "limit": "1/minute"}]
    config = {"metrics": {"status_path": "/_ratelimit"}, "rules": rules}
    other = Engine(config, backend=RedisBackend.from_url(redis_url, timeout=2.0))
    for _ in range(3):
        plan = other.plan("POST", "/auth/login")
        assert plan is not None
        other.run(plan, _Request("POST", "/auth/login", "198.51.100.7", {}))
    recorder = other.observer
    assert isinstance(recorder, Recorder) and recorder.redis_top is not None
    await recorder.redis_top.drain()  # in a running loop, even the sync path writes in a task
    engine = Engine(config, backend=RedisBackend.from_url(redis_url, timeout=2.0))
    async with client(engine) as local:
        data = (await local.get("/_ratelimit", headers={"Accept": "application/json"})).json()
    assert data["top_source"] == "redis" and data["top_error"] is None
    assert data["rules"][0]["top"] == [{"identity": "ip:198.51.100.7", "rejections": 2}]
    assert data["rules"][0]["counts"]["1m"] == {}  # this worker decided nothing
    assert data["backend"]["kind"] == "redis" and data["backend"]["up"] is True
    for backend in (other.backend, engine.backend):
        backend.close()  # type: ignore[attr-defined]
        await backend.aclose()  # type: ignore[attr-defined]

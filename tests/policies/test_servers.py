"""Each policy through a real server: uvicorn (ASGI), waitress (WSGI: Flask and Django)."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware as AsgiMiddleware
from ratelimit.wsgi import RateLimitMiddleware as WsgiMiddleware
from tests.support.servers import uvicorn_server, wsgi_server

RULES = [
    {
        "name": "login",
        "path": "/login",
        "methods": ["POST"],
        "limit": "3/hour",
        "count": "failures",
    },
    {"name": "exports", "path": "/export", "algorithm": "concurrency", "limit": 2},
    {
        "name": "api",
        "path": "/api",
        "tier": "header:x-plan",
        "limits": ["2/hour"],
        "tiers": {"pro": "5/hour", "internal": "exempt"},
    },
    {"name": "bytes", "path": "/upload", "limit": "1000/hour", "cost": "content-length"},
    {
        "name": "banned",
        "path": "/guess",
        "limit": "1/hour",
        "ban": {"after": 2, "within": "1 hour", "duration": "1 day"},
    },
]
CONFIG = {"rules": RULES, "deny": ["203.0.113.0/24"]}


class Gate:
    """Holds /export responses open until released, counting how many are in flight."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.inside = 0
        self.most = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def starlette_app(gate: Gate) -> Starlette:
    async def login(request: Request) -> PlainTextResponse:
        ok = request.headers.get("x-password") == "right"
        return PlainTextResponse("hi" if ok else "no", status_code=200 if ok else 401)

    async def export(request: Request) -> StreamingResponse:
        async def body() -> Any:
            gate.enter()
            try:
                while not gate.open.is_set():
                    await asyncio.sleep(0.01)
                yield b"done"
            finally:
                gate.leave()

        return StreamingResponse(body())

    async def plain(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [
        Route("/login", login, methods=["POST"]),
        Route("/export", export),
        Route("/api", plain),
        Route("/upload", plain, methods=["POST"]),
        Route("/guess", plain),
    ]
    return Starlette(routes=routes)


def flask_app(gate: Gate) -> Any:
    from flask import Flask, Response, request

    app = Flask("policies")

    @app.post("/login")
    def login() -> Any:
        ok = request.headers.get("x-password") == "right"
        return ("hi", 200) if ok else ("no", 401)

    @app.get("/export")
    def export() -> Any:
        def body() -> Any:
            gate.enter()
            try:
                gate.open.wait(10)
                yield b"done"
            finally:
                gate.leave()

        return Response(body())

    @app.get("/api")
    @app.get("/guess")
    def plain() -> str:
        return "ok"

    @app.post("/upload")
    def upload() -> str:
        return "ok"

    return app


def serve(stack: str, gate: Gate) -> Any:
    if stack == "uvicorn":
        app = AsgiMiddleware(starlette_app(gate), CONFIG, backend=MemoryBackend())
        return uvicorn_server(app, http="httptools")
    app = WsgiMiddleware(flask_app(gate).wsgi_app, CONFIG, backend=MemoryBackend())
    return wsgi_server(app, threads=8)


STACKS = ["uvicorn", "waitress"]


@pytest.mark.parametrize("stack", STACKS)
def test_count_failures_through_a_server(stack: str) -> None:
    """Only failed logins are counted, from the status the app answered."""
    with serve(stack, Gate()) as url, httpx.Client(base_url=url) as client:
        good = [client.post("/login", headers={"x-password": "right"}) for _ in range(5)]
        bad = [client.post("/login") for _ in range(4)]
    assert [r.status_code for r in good] == [200] * 5
    assert [r.status_code for r in bad] == [401, 401, 401, 429]


@pytest.mark.parametrize("stack", STACKS)
def test_concurrency_through_a_server(stack: str) -> None:
    """Two streamed responses in flight: the third is refused until one has been sent."""
    gate = Gate()
    with serve(stack, gate) as url:
        results: list[int] = []

        def fetch() -> None:
            results.append(httpx.get(url + "/export", timeout=20).status_code)

        held = [threading.Thread(target=fetch) for _ in range(2)]
        for thread in held:
            thread.start()
        deadline = time.monotonic() + 10
        while gate.inside < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = httpx.get(url + "/export", timeout=10)
        gate.open.set()
        for thread in held:
            thread.join(20)
        after = httpx.get(url + "/export", timeout=10)
    assert refused.status_code == 429
    assert 'qu="concurrent-requests"' in refused.headers["ratelimit-policy"]
    assert sorted(results) == [200, 200] and after.status_code == 200
    assert gate.most == 2


@pytest.mark.parametrize("stack", STACKS)
def test_tiers_bytes_ban_and_deny_through_a_server(stack: str) -> None:
    """Tiers, byte quotas, bans and the deny list behind a real server."""
    with serve(stack, Gate()) as url, httpx.Client(base_url=url) as client:
        pro = [client.get("/api", headers={"x-plan": "pro"}).status_code for _ in range(6)]
        internal = client.get("/api", headers={"x-plan": "internal"})
        upload = client.post("/upload", content=b"x" * 600)
        over = client.post("/upload", content=b"x" * 600)
        guesses = [client.get("/guess") for _ in range(4)]
    assert pro == [200] * 5 + [429]
    assert internal.status_code == 200 and "ratelimit" not in internal.headers
    assert upload.status_code == 200 and upload.headers["ratelimit"].startswith('"bytes";r=400')
    assert over.status_code == 429
    assert [g.status_code for g in guesses] == [200, 429, 429, 429]
    assert int(guesses[-1].headers["retry-after"]) > 3600  # banned for a day, not the hour


def test_deny_list_through_uvicorn() -> None:
    """A denied network gets 403 problem+json on every path (proxy-reported address)."""
    config = {**CONFIG, "trusted_proxies": ["127.0.0.1"]}
    app = AsgiMiddleware(starlette_app(Gate()), config, backend=MemoryBackend())
    with uvicorn_server(app, http="h11", proxy_headers=False) as url:
        denied = httpx.get(url + "/api", headers={"x-forwarded-for": "203.0.113.5"})
        free = httpx.get(url + "/nothing-here", headers={"x-forwarded-for": "203.0.113.5"})
        fine = httpx.get(url + "/api", headers={"x-forwarded-for": "192.0.2.5"})
    assert denied.status_code == 403 and free.status_code == 403
    assert denied.headers["content-type"] == "application/problem+json"
    assert fine.status_code == 200


def test_django_count_and_concurrency() -> None:
    """Django's middleware settles after the response: failures are counted, leases freed."""
    from django.test import Client, override_settings

    import tests.http.conftest  # noqa: F401  (configures Django for the test apps)
    from ratelimit.contrib import django as contrib

    rules = [
        {"name": "dj-login", "path": "/limited", "limit": "2/hour", "count": [200]},
        {"name": "dj-export", "path": "/stream", "algorithm": "concurrency", "limit": 1},
    ]
    with override_settings(RATELIMIT={"rules": rules}):
        contrib.configure()
        client = Client()
        counted = [client.get("/limited").status_code for _ in range(3)]
        streamed = client.get("/stream")
        assert streamed.status_code == 200
        second = client.get("/stream")  # the first stream is not consumed yet: slot held
        assert b"".join(streamed.streaming_content) == b"abc"  # type: ignore[attr-defined]
        streamed.close()
        third = client.get("/stream")
        b"".join(third.streaming_content)  # type: ignore[attr-defined]
    contrib.configure()
    assert counted == [200, 200, 429]
    assert second.status_code == 429 and third.status_code == 200


def test_count_overshoot_under_50_concurrent_failures() -> None:
    """50 failing logins in flight at once are all admitted (none has been counted yet) and
    all counted when they end: the overshoot is the number in flight, then the limit holds."""
    gate = Gate()

    async def slow_login(request: Request) -> PlainTextResponse:
        gate.enter()
        while not gate.open.is_set():
            await asyncio.sleep(0.005)
        gate.leave()
        return PlainTextResponse("no", status_code=401)

    app = Starlette(routes=[Route("/login", slow_login, methods=["POST"])])
    config = {"rules": [RULES[0]]}
    wrapped = AsgiMiddleware(app, config, backend=MemoryBackend())
    with uvicorn_server(wrapped, http="httptools") as url:

        async def flood() -> list[int]:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                tasks = [asyncio.create_task(client.post("/login")) for _ in range(50)]
                while gate.inside < 50:
                    await asyncio.sleep(0.01)
                gate.open.set()
                return [r.status_code for r in await asyncio.gather(*tasks)]

        statuses = asyncio.run(flood())
        after = httpx.post(url + "/login")
    assert statuses.count(401) == 50  # admitted: the overshoot is 50 − 3 = 47
    assert after.status_code == 429 and after.headers["ratelimit"].startswith('"login";r=0')


def _worker(url: str, prefix: str, limit: int, wanted: int, queue: Any) -> None:
    """Take a slot ``wanted`` times (retrying while all are busy, for at most 60 s), holding
    each for 2 ms while counting who is inside; report the most inside at once and the slots
    taken. Leaked slots would stop the retries from succeeding: fewer than ``wanted``."""
    import redis

    from ratelimit import Limit
    from ratelimit.backends.redis import RedisBackend
    from ratelimit.rate import Rate

    backend = RedisBackend.from_url(url, prefix=prefix, timeout=2.0)
    counter = redis.Redis.from_url(url)
    lease = Limit(Rate(limit, 30), "concurrency", name="exports")
    most, admitted = 0, 0
    deadline = time.monotonic() + 60
    while admitted < wanted and time.monotonic() < deadline:
        token = uuid.uuid4().hex
        if not backend.acquire("client", lease, token):
            time.sleep(0.0005)
            continue
        admitted += 1
        inside = counter.incr(prefix + "inside")
        most = max(most, int(inside))
        time.sleep(0.002)
        counter.decr(prefix + "inside")
        backend.release("client", lease, token)
    queue.put((most, admitted))


@pytest.mark.redis
def test_concurrency_is_exact_across_8_processes(redis_url: str) -> None:
    """8 processes share one client's concurrency limit of 3 through Redis: the overlaps
    recorded never exceed 3, slots are reused (20 admissions per process, 160 in all), and
    afterwards exactly 3 slots are free.

    Each process asks until it has its 20 (a fixed number of attempts made the total depend on
    how the machine scheduled 8 processes on 2 cores)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    prefix = f"c{uuid.uuid4().hex[:6]}:"
    procs = [ctx.Process(target=_worker, args=(redis_url, prefix, 3, 20, queue)) for _ in range(8)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    most = max(m for m, _ in results)
    admitted = sum(a for _, a in results)
    assert most <= 3
    assert admitted == 160
    # Every slot came back and the limit is exactly 3 (how many overlapped at once during the
    # run depends on scheduling, so it is not asserted): three more are taken, a fourth not.
    from ratelimit import Limit
    from ratelimit.backends.redis import RedisBackend
    from ratelimit.rate import Rate

    backend = RedisBackend.from_url(redis_url, prefix=prefix, timeout=2.0)
    lease = Limit(Rate(3, 30), "concurrency", name="exports")
    taken = [bool(backend.acquire("client", lease, uuid.uuid4().hex)) for _ in range(4)]
    backend.close()
    assert taken == [True, True, True, False]


def test_reload_through_uvicorn(tmp_path: Any) -> None:
    """``reload = true`` behind a real server: an edited file takes over at the next check
    (forced here instead of waiting a second), a broken one leaves the rules in place."""
    path = tmp_path / "ratelimit.toml"
    path.write_text('reload = true\n[[rules]]\nname = "api"\npath = "/api"\nlimit = "1/hour"\n')
    app = AsgiMiddleware(starlette_app(Gate()), str(path))
    watch = app.engine._watch
    assert watch is not None
    with uvicorn_server(app, http="httptools") as url, httpx.Client(base_url=url) as client:
        before = [client.get("/api").status_code for _ in range(2)]
        path.write_text(
            'reload = true\n[[rules]]\nname = "api2"\npath = "/api"\nlimit = "3/hour"\n'
        )
        watch._next, watch._mtime = 0.0, -1
        after = [client.get("/api").status_code for _ in range(4)]
        path.write_text("reload = [not toml")
        watch._next, watch._mtime = 0.0, -1
        broken = client.get("/api")
    assert before == [200, 429]
    assert after == [200, 200, 200, 429]  # a new rule name: new counters, its own limit
    assert broken.status_code == 429 and broken.headers["ratelimit"].startswith('"api2"')

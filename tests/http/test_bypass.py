"""Every spelling of a request that reaches a view also meets its rule, through real servers.

Each test here failed on the first version: mounts (ASGI ``root_path``, Starlette ``Mount``),
lower-case methods, a key header sent twice, a body after a ``HEAD`` rejection, long paths.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware as AsgiMiddleware
from ratelimit.http import rules as rules_module
from ratelimit.http.engine import Engine
from ratelimit.http.rules import ANY, match_segments, normalize_path, split_path
from ratelimit.wsgi import RateLimitMiddleware as WsgiMiddleware
from tests.support.servers import clear_of_a_minute_edge, uvicorn_server, wsgi_server

LOGIN = {"name": "login", "path": "/auth/login", "methods": ["POST"], "limit": "2/minute"}
KEYED = {"name": "api", "path": "/api/**", "key": "header:x-api-key", "limit": "2/minute"}
PAGE = {"name": "page", "path": "/page", "limit": "2/minute"}
CONFIG = {"rules": [LOGIN, KEYED, PAGE]}


async def _login(request: Request) -> PlainTextResponse:
    return PlainTextResponse("logged in")


async def _api(request: Request) -> PlainTextResponse:
    return PlainTextResponse("key " + request.headers.get("x-api-key", "-"))


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse("page")


def starlette_routes() -> list[Any]:
    return [
        Route("/auth/login", _login, methods=["POST"]),
        Route("/api/items", _api),
        Route("/page", _page, methods=["GET", "HEAD"]),
        Route("/free", _page),
    ]


def raw_request(url: str, lines: list[str], body: bytes = b"") -> tuple[int, bytes]:
    """Send one hand-written HTTP/1.1 request (any spelling) and return (status, raw reply)."""
    parts = urlsplit(url)
    head = "\r\n".join([*lines, f"Host: {parts.hostname}", "Connection: close", "", ""])
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    reply = b"".join(chunks)
    return int(reply.split(b" ", 2)[1]), reply


def statuses(url: str, lines: list[str], n: int = 3) -> list[int]:
    clear_of_a_minute_edge(1.0)  # the rules here are fixed windows of a minute, real clock
    return [raw_request(url, lines)[0] for _ in range(n)]


# -- mounts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_uvicorn_root_path_does_not_hide_the_rule(http: str) -> None:
    """Under ``uvicorn --root-path /prefix`` (a proxy strips the prefix) uvicorn puts it back
    in ``scope["path"]``; the rule on ``/auth/login`` still applies, since the app routes on
    what is below ``root_path``."""
    app = AsgiMiddleware(Starlette(routes=starlette_routes()), CONFIG, backend=MemoryBackend())
    with uvicorn_server(app, http=http, root_path="/prefix") as url:
        got = statuses(url, ["POST /auth/login HTTP/1.1", "Content-Length: 0"])
    assert got == [200, 200, 429]


def test_starlette_mount_with_the_middleware_on_the_sub_app() -> None:
    """A sub-app under ``Mount("/v1", ...)`` sees ``root_path="/v1"``: its rules still match."""
    sub = AsgiMiddleware(Starlette(routes=starlette_routes()), CONFIG, backend=MemoryBackend())
    app = Starlette(routes=[Mount("/v1", app=sub)])
    with uvicorn_server(app, http="h11") as url:
        got = statuses(url, ["POST /v1/auth/login HTTP/1.1", "Content-Length: 0"])
        free = statuses(url, ["GET /v1/free HTTP/1.1"])
    assert got == [200, 200, 429]
    assert free == [200, 200, 200]


def test_wsgi_script_name_mount() -> None:
    """A WSGI app mounted below ``SCRIPT_NAME`` is matched on ``PATH_INFO``."""
    inner = WsgiMiddleware(_flask_app(), CONFIG, backend=MemoryBackend())

    def mounted(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path.startswith("/v1/"):
            environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/v1", path[3:]
        return inner(environ, start_response)

    with wsgi_server(mounted) as url:
        got = statuses(url, ["POST /v1/auth/login HTTP/1.1", "Content-Length: 0"])
    assert got == [200, 200, 429]


# -- methods ---------------------------------------------------------------------------------


def _flask_app() -> Any:
    from flask import Flask, request

    app = Flask("bypass")

    @app.post("/auth/login")
    def login() -> str:
        return "logged in"

    @app.get("/api/items")
    def api() -> str:
        return "key " + request.headers.get("x-api-key", "-")

    @app.get("/page")
    def page() -> str:
        return "page"

    return app


@pytest.mark.parametrize("server", ["waitress", "werkzeug"])
def test_lower_case_method_reaches_the_view_and_meets_the_rule(server: str) -> None:
    """``post /auth/login`` is routed to the POST view by Flask under ``flask run``
    (werkzeug's server): it is limited like POST. Waitress refuses the spelling (400)."""
    app = WsgiMiddleware(_flask_app(), CONFIG, backend=MemoryBackend())
    with _wsgi(server, app) as url:
        got = statuses(url, ["post /auth/login HTTP/1.1", "Content-Length: 0"])
    assert got == ([200, 200, 429] if server == "werkzeug" else [400, 400, 400])


def test_lower_case_method_under_django_asgi_and_h11() -> None:
    """Django ASGI behind ``ratelimit.asgi`` under uvicorn's h11: ``post`` counts as POST."""
    from django.core.asgi import get_asgi_application

    rule = {"name": "limited", "path": "/limited", "methods": ["POST"], "limit": "2/minute"}
    app = AsgiMiddleware(get_asgi_application(), {"rules": [rule]}, backend=MemoryBackend())
    with uvicorn_server(app, http="h11") as url:
        got = statuses(url, ["post /limited HTTP/1.1", "Content-Length: 0"])
    assert got == [200, 200, 429]


@contextlib.contextmanager
def _wsgi(server: str, app: Any) -> Iterator[str]:
    if server == "waitress":
        with wsgi_server(app) as url:
            yield url
        return
    import threading

    from werkzeug.serving import make_server

    from tests.support.servers import free_port

    port = free_port()
    httpd = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        thread.join(10)


# -- key headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["uvicorn-httptools", "uvicorn-h11", "waitress"])
def test_a_key_header_sent_twice_is_one_identity(stack: str) -> None:
    """``X-Api-Key: k1`` plus ``X-Api-Key: junk`` is still k1 — the key the app sees —
    and spends k1's budget instead of minting a fresh one."""
    twice = ["GET /api/items HTTP/1.1", "X-Api-Key: k1", "X-Api-Key: junk"]
    once = ["GET /api/items HTTP/1.1", "X-Api-Key: k1"]
    if stack == "waitress":
        context = wsgi_server(WsgiMiddleware(_flask_app(), CONFIG, backend=MemoryBackend()))
    else:
        app = AsgiMiddleware(Starlette(routes=starlette_routes()), CONFIG, backend=MemoryBackend())
        context = uvicorn_server(app, http=stack.split("-")[1])
    with context as url:
        first = raw_request(url, once)
        doubled = [raw_request(url, twice) for _ in range(2)]
    assert first[0] == 200 and b"key k1" in first[1]
    assert [status for status, _ in doubled] == [200, 429]


# -- HEAD ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["waitress", "uvicorn-h11", "uvicorn-httptools"])
def test_head_rejection_has_no_body_and_keeps_the_connection_in_step(stack: str) -> None:
    """A 429 to HEAD carries no body: the next response on the keep-alive connection is
    read intact (a body there would be taken for the start of the next response)."""
    if stack == "waitress":
        context = wsgi_server(WsgiMiddleware(_flask_app(), CONFIG, backend=MemoryBackend()))
    else:
        app = AsgiMiddleware(Starlette(routes=starlette_routes()), CONFIG, backend=MemoryBackend())
        context = uvicorn_server(app, http=stack.split("-")[1])
    with context as url:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        try:
            heads = []
            for _ in range(3):
                conn.request("HEAD", "/page")
                response = conn.getresponse()
                heads.append((response.status, response.read()))
            conn.request("GET", "/api/items", headers={"X-Api-Key": "other"})
            after = conn.getresponse()
            body = after.read()
        finally:
            conn.close()
    assert heads == [(200, b""), (200, b""), (429, b"")]
    assert after.status == 200 and body == b"key other"


def test_head_reply_is_built_without_a_body() -> None:
    """The engine's own 429 and 503 replies to HEAD have empty bodies (every adapter)."""
    from ratelimit.http.keys import RequestInfo
    from tests.http.conftest import FailingBackend

    engine = Engine({"rules": [PAGE]}, backend=MemoryBackend())
    plan = engine.plan("HEAD", "/page")
    assert plan is not None
    replies = [engine.run(plan, RequestInfo("HEAD", "/page", "192.0.2.1")) for _ in range(3)]
    assert replies[2].reply is not None and replies[2].reply.status == 429
    assert replies[2].reply.body == b""
    down = Engine({"rules": [PAGE], "on_error": "deny"}, backend=FailingBackend())
    failed = down.run(plan, RequestInfo("HEAD", "/page", "192.0.2.1"))
    assert failed.reply is not None and failed.reply.status == 503 and failed.reply.body == b""


# -- bounded costs ---------------------------------------------------------------------------


class CountingSegments(list[str]):
    """A list of segments that counts how often the matcher reads it."""

    reads = 0

    def __getitem__(self, index: Any) -> Any:
        CountingSegments.reads += 1
        return super().__getitem__(index)


def test_matching_a_long_path_is_linear() -> None:
    """``/a/**/b/**/c`` against a 60 KB path reads each segment a bounded number of times
    (a regular expression with two ``**`` needed 7.7 s, quadratic in the length)."""
    _, pattern = rules_module._compile_path("/a/**/b/**/c")
    assert pattern is not None and pattern.count(ANY) == 2
    for n in (1_000, 10_000, 30_000):
        path = "/a" + "/b" * n  # never ends in /c: the worst case for backtracking
        segments = CountingSegments(split_path(normalize_path(path)))
        CountingSegments.reads = 0
        assert not match_segments(pattern, segments)
        assert CountingSegments.reads <= 4 * len(segments) + 4
    assert match_segments(pattern, split_path("/a/x/b/y/z/c"))


def test_distinct_long_paths_do_not_grow_the_plan_cache() -> None:
    """1,000 distinct 60 KB paths leave nothing in the plan cache; short ones are bounded."""
    engine = Engine({"rules": [{"name": "all", "path": "/**", "limit": "1000/s"}]})
    for i in range(1_000):
        assert engine.plan("GET", f"/{i}/" + "x" * 60_000) is not None
    assert len(engine._plans) == 0
    for i in range(10_000):
        engine.plan("GET", f"/short/{i}")
    assert len(engine._plans) <= 4096


# -- errors in user code ---------------------------------------------------------------------


def failing_key(request: Any) -> str:
    raise RuntimeError("bug in the key function")


def test_a_key_function_that_raises_is_a_500_not_a_fail_open() -> None:
    """An exception from the user's key function propagates: the server answers 500, the
    view never runs unlimited."""
    rule = {"name": "custom", "path": "/page", "key": "tests.http.test_bypass:failing_key"}
    config = {"rules": [{**rule, "limit": "5/minute"}], "on_error": "allow"}
    app = AsgiMiddleware(Starlette(routes=starlette_routes()), config, backend=MemoryBackend())
    with uvicorn_server(app, http="h11", log_level="critical") as url:
        status, _ = raw_request(url, ["GET /page HTTP/1.1"])
    assert status == 500

"""``charge`` through every adapter: response headers reach the settle step, and
``ratelimit.charge(request, n)`` finds its request's charges on every framework — also after
the client went away mid-stream, and after the response was over."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.http import HttpRequest, HttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from fastapi import Request as FastRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route

import ratelimit
import tests.http.conftest  # noqa: F401  (configures Django for the test apps)
from ratelimit.asgi import RateLimitMiddleware as AsgiMiddleware
from ratelimit.contrib import django as rl_django
from ratelimit.wsgi import RateLimitMiddleware as WsgiMiddleware
from tests.conftest import FakeClock
from tests.policies.test_charges import Recording
from tests.support.servers import uvicorn_server

RULE = {
    "name": "tokens",
    "path": "/v1/**",
    "limit": "100000/minute",
    "algorithm": "token_bucket",
    "cost": 100,
    "charge": "response-header:x-tokens",
    "unit": "tokens",
}
APP_RULE = {**RULE, "charge": "application"}


def deltas(backend: Recording) -> list[int]:
    return [call[2] for call in backend.charged]


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for a server thread to have settled (a bound on waiting, not a timing assert)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("not settled in time")
        time.sleep(0.01)


# -- ASGI ------------------------------------------------------------------------------------


def http_scope(path: str = "/v1/chat") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [],
        "client": ("192.0.2.1", 1234),
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("testserver", 80),
    }


async def call_asgi(app: Any, scope: dict[str, Any], disconnect_after: int = 0) -> list[Any]:
    """Run one request through ``app``; with ``disconnect_after``, the client goes away once
    that many body messages were sent (receive answers ``http.disconnect``)."""
    sent: list[Any] = []
    gone = asyncio.Event()
    body = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if body:
            return body.pop()
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        bodies = [m for m in sent if m["type"] == "http.response.body"]
        if disconnect_after and len(bodies) >= disconnect_after:
            gone.set()

    await app(scope, receive, send)
    return sent


def test_asgi_charges_from_the_response_header() -> None:
    """The ASGI middleware passes the app's response headers to the settle step."""
    backend = Recording(clock=FakeClock())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"X-Tokens", b"250")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = AsgiMiddleware(app, {"rules": [RULE]}, backend=backend)
    sent = asyncio.run(call_asgi(middleware, http_scope()))
    assert (b"ratelimit-policy", b'"tokens";q=100000;w=60;qu="tokens"') in sent[0]["headers"]
    assert deltas(backend) == [150]


def test_asgi_charges_from_headers_given_as_an_iterator() -> None:
    """An app whose ``http.response.start`` headers are a one-shot iterator: the client still
    gets them (with ours added) and the charge still reads them."""
    backend = Recording(clock=FakeClock())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = iter([(b"x-tokens", b"250"), (b"content-type", b"text/plain")])
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = AsgiMiddleware(app, {"rules": [RULE]}, backend=backend)
    sent = asyncio.run(call_asgi(middleware, http_scope()))
    assert (b"x-tokens", b"250") in sent[0]["headers"]
    assert any(name == b"ratelimit-policy" for name, _ in sent[0]["headers"])
    assert deltas(backend) == [150]


def test_asgi_raw_scope_report() -> None:
    """A raw ASGI app reports with ratelimit.charge(scope, n)."""
    backend = Recording(clock=FakeClock())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        ratelimit.charge(scope, 30)
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = AsgiMiddleware(app, {"rules": [APP_RULE]}, backend=backend)
    asyncio.run(call_asgi(middleware, http_scope()))
    assert deltas(backend) == [-70]


def starlette_app(reported: dict[str, Any]) -> Starlette:
    async def chat(request: Request) -> StreamingResponse:
        async def events() -> Any:
            used = 0
            try:
                for _ in range(3):
                    used += 70
                    yield b"data: tokens\n\n"
                await asyncio.Event().wait()  # a stream that never ends by itself
            finally:
                ratelimit.charge(request, used)  # usage known when the stream stops
                reported["done"] = True

        return StreamingResponse(events(), media_type="text/event-stream")

    async def plain(request: Request) -> PlainTextResponse:
        ratelimit.charge(request, 5)
        ratelimit.charge(request, 6)
        return PlainTextResponse("ok")

    async def later(request: Request) -> PlainTextResponse:
        async def report() -> None:
            await reported["go"].wait()
            ratelimit.charge(request, 1000)

        reported["task"] = asyncio.create_task(report())
        return PlainTextResponse("ok")

    routes = [
        Route("/v1/chat", chat, methods=["POST"]),
        Route("/v1/plain", plain, methods=["POST"]),
        Route("/v1/later", later, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def test_starlette_request_report_adds_up() -> None:
    """ratelimit.charge(request, n) from a Starlette endpoint; several calls add up."""
    backend = Recording(clock=FakeClock())
    app = AsgiMiddleware(starlette_app({}), {"rules": [APP_RULE]}, backend=backend)
    asyncio.run(call_asgi(app, http_scope("/v1/plain")))
    assert deltas(backend) == [11 - 100]


def test_asgi_client_disconnect_mid_stream_still_charges() -> None:
    """A client gone mid-stream: the stream stops, reports its usage, and the charge lands."""
    backend = Recording(clock=FakeClock())
    reported: dict[str, Any] = {}
    app = AsgiMiddleware(starlette_app(reported), {"rules": [APP_RULE]}, backend=backend)
    sent = asyncio.run(call_asgi(app, http_scope("/v1/chat"), disconnect_after=2))
    assert reported["done"]
    assert [m.get("more_body") for m in sent if m["type"] == "http.response.body"][:2] == [
        True,
        True,
    ]
    assert deltas(backend) == [210 - 100]


def test_asgi_report_after_the_response_still_lands() -> None:
    """A report made after the response was settled lands on its own (an event-loop task)."""
    backend = Recording(clock=FakeClock())
    reported: dict[str, Any] = {}
    app = AsgiMiddleware(starlette_app(reported), {"rules": [APP_RULE]}, backend=backend)

    async def scenario() -> None:
        reported["go"] = asyncio.Event()
        await call_asgi(app, http_scope("/v1/later"))
        assert deltas(backend) == []  # settled: the reservation stood so far
        reported["go"].set()
        await reported["task"]
        from ratelimit.http.policies.charges import _LATE

        await asyncio.gather(*_LATE)

    asyncio.run(scenario())
    assert deltas(backend) == [900]


def test_fastapi_request_report() -> None:
    """A FastAPI endpoint reports with its Request under the ASGI middleware."""
    from fastapi import FastAPI

    backend = Recording(clock=FakeClock())
    api = FastAPI()

    @api.post("/v1/fast")
    async def fast(request: FastRequest) -> dict[str, int]:
        ratelimit.charge(request, 44)
        return {"ok": 1}

    api.add_middleware(AsgiMiddleware, config={"rules": [APP_RULE]}, backend=backend)

    async def scenario() -> int:
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.post("/v1/fast")).status_code

    assert asyncio.run(scenario()) == 200
    assert deltas(backend) == [-56]


def test_uvicorn_stream_charge_and_disconnect() -> None:
    """Through uvicorn: a full stream is charged what it reported, and so is a stream whose
    client hung up after the first event."""
    backend = Recording()
    reported: dict[str, Any] = {}
    app = AsgiMiddleware(starlette_app(reported), {"rules": [APP_RULE]}, backend=backend)
    with uvicorn_server(app) as url:
        with httpx.stream("POST", url + "/v1/chat", timeout=10) as response:
            assert response.headers["ratelimit-policy"].endswith('qu="tokens"')
            next(response.iter_raw())
        wait_for(lambda: len(backend.charged) == 1)
    assert reported["done"]
    assert deltas(backend)[0] > 0  # the events sent before the client went (70 each)


# -- WSGI ------------------------------------------------------------------------------------


def environ(path: str = "/v1/chat") -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "REMOTE_ADDR": "192.0.2.1",
        "SERVER_NAME": "t",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def call_wsgi(app: Any, env: dict[str, Any]) -> list[bytes]:
    """Run one request as a server would: iterate the body, then close it."""
    body = app(env, lambda status, headers, exc_info=None: None)
    try:
        return list(body)
    finally:
        body.close()


def test_wsgi_charges_from_the_response_header() -> None:
    """The WSGI middleware passes the headers given to start_response to the settle step."""
    backend = Recording(clock=FakeClock())

    def app(env: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("X-Tokens", "40")])
        return iter([b"ok"])

    call_wsgi(WsgiMiddleware(app, {"rules": [RULE]}, backend=backend), environ())
    assert deltas(backend) == [-60]


def test_wsgi_environ_report_from_a_streaming_body() -> None:
    """A WSGI app reports with ratelimit.charge(environ, n), even from its body iterator."""
    backend = Recording(clock=FakeClock())

    def app(env: Any, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        ratelimit.charge(env, 321)
        yield b"b"

    call_wsgi(WsgiMiddleware(app, {"rules": [APP_RULE]}, backend=backend), environ())
    assert deltas(backend) == [221]


def test_flask_request_report() -> None:
    """A Flask view reports with flask.request."""
    from flask import Flask, request

    from ratelimit.contrib.flask import RateLimit

    backend = Recording(clock=FakeClock())
    app = Flask("charges")

    @app.post("/v1/flask")
    def view() -> str:
        ratelimit.charge(request, 150)
        return "ok"

    RateLimit(app, {"rules": [APP_RULE]}, backend=backend)
    response = app.test_client().post("/v1/flask")
    assert response.status_code == 200
    response.close()
    assert deltas(backend) == [50]


# -- Django ----------------------------------------------------------------------------------


def django_view(request: HttpRequest) -> HttpResponse:
    ratelimit.charge(request, 7)
    return HttpResponse("ok")


async def django_async_view(request: HttpRequest) -> HttpResponse:
    response = HttpResponse("ok")
    response["X-Tokens"] = "130"
    return response


def drf_view() -> Any:
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class Usage(APIView):
        authentication_classes: tuple[Any, ...] = ()
        permission_classes: tuple[Any, ...] = ()
        throttle_classes: tuple[Any, ...] = ()

        def post(self, request: Any) -> Any:
            ratelimit.charge(request, 12)  # a DRF Request
            return Response({"ok": 1})

    return Usage.as_view()


urlpatterns = [
    path("v1/django", django_view),
    path("v1/adjango", django_async_view),
    path("v1/drf", drf_view()),
]


@pytest.fixture
def django_backend() -> Iterator[Recording]:
    backend = Recording(clock=FakeClock())
    with override_settings(ROOT_URLCONF=__name__, RATELIMIT={"rules": [APP_RULE]}):
        rl_django.configure(backend=backend)
        yield backend
    rl_django._engine = None


def test_django_request_report(django_backend: Recording) -> None:
    """A Django view reports with its HttpRequest (sync middleware path)."""
    assert Client().post("/v1/django").status_code == 200
    assert deltas(django_backend) == [-93]


def test_drf_request_report(django_backend: Recording) -> None:
    """A DRF view reports with its DRF Request (the middleware decided the rule)."""
    assert Client().post("/v1/drf").status_code == 200
    assert deltas(django_backend) == [-88]


def test_django_async_path_charges_from_the_header(django_backend: Recording) -> None:
    """Django's async middleware path passes the response headers to the settle step."""
    rl_django.configure({"rules": [RULE]}, backend=django_backend)

    async def scenario() -> int:
        return (await AsyncClient().post("/v1/adjango")).status_code

    assert asyncio.run(scenario()) == 200
    assert deltas(django_backend) == [30]

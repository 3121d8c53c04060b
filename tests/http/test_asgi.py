"""The ASGI middleware: in-process (httpx) and under a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.http.headers import Reply
from tests.conftest import FakeClock
from tests.http.conftest import AsyncSleepRecorder, FailingBackend, RecordingBackend, asgi_client
from tests.support.servers import uvicorn_server


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text("echo:" + text)
    await websocket.close()


def make_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", hello),
            Route("/login", hello, methods=["GET", "POST"]),
            Route("/api/{rest:path}", hello),
            Route("/stream", stream),
            Route("/upload/{bucket}", hello, methods=["POST"]),
            Route("/free", hello),
            WebSocketRoute("/ws", echo_ws),
        ]
    )


RULES: list[dict[str, Any]] = [
    {"name": "login", "path": "/login", "methods": ["POST"], "limit": "2/minute"},
    {"name": "api", "path": "/api/**", "limits": ["3/second", "5/minute"]},
    {"name": "stream", "path": "/stream", "limit": "5/minute"},
    {"name": "ws", "path": "/ws", "limit": "1/minute"},
    {"name": "upload", "path": "/upload/{bucket}", "limit": "1/second", "burst": 3,
     "algorithm": "leaky_bucket"},
]  # fmt: skip


def middleware(backend: Any, **settings: Any) -> RateLimitMiddleware:
    return RateLimitMiddleware(make_app(), config={"rules": RULES, **settings}, backend=backend)


async def test_rejection_is_problem_json_with_retry_after(
    memory: MemoryBackend, clock: FakeClock
) -> None:
    """The third POST in a 2/minute window gets a 429 problem+json with Retry-After rounded up."""
    clock.now = 1000.5  # 19.5 s left in the minute window starting at 960
    async with asgi_client(middleware(memory)) as client:
        first = await client.post("/login")
        second = await client.post("/login")
        third = await client.post("/login")
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["ratelimit-policy"] == '"login";q=2;w=60'
    assert first.headers["ratelimit"] == '"login";r=1;t=20'
    assert second.headers["ratelimit"] == '"login";r=0;t=20'
    assert third.headers["content-type"] == "application/problem+json"
    assert third.headers["retry-after"] == "20"
    assert third.headers["ratelimit"] == '"login";r=0;t=20'
    body = third.json()
    assert body["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert body["violated-policies"] == ["login"]
    assert body["status"] == 429 and body["retry_after"] == 20 and "login" in body["detail"]
    assert int(third.headers["content-length"]) == len(third.content)


async def test_only_matching_method_and_path_are_limited(memory: MemoryBackend) -> None:
    """GET /login (rule is POST only) and unmatched paths pass untouched, without headers."""
    async with asgi_client(middleware(memory)) as client:
        responses = [await client.get("/login") for _ in range(5)]
        free = await client.get("/free")
    assert all(r.status_code == 200 and "ratelimit" not in r.headers for r in responses)
    assert free.status_code == 200 and "ratelimit-policy" not in free.headers


async def test_several_limits_report_the_most_restrictive(memory: MemoryBackend) -> None:
    """Every applied limit is listed in RateLimit-Policy; RateLimit names the tightest one."""
    async with asgi_client(middleware(memory)) as client:
        response = await client.get("/api/x")
    assert response.headers["ratelimit-policy"] == '"api.0";q=3;w=1, "api.1";q=5;w=60'
    assert response.headers["ratelimit"] == '"api.0";r=2;t=1'


async def test_clock_moves_the_window(memory: MemoryBackend, clock: FakeClock) -> None:
    """After the window passes (fake clock), the client is admitted again."""
    async with asgi_client(middleware(memory)) as client:
        for _ in range(3):
            assert (await client.get("/api/a")).status_code == 200
        assert (await client.get("/api/a")).status_code == 429
        clock.advance(1)
        assert (await client.get("/api/a")).status_code == 200


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        ("ietf", {"ratelimit", "ratelimit-policy"}, {"x-ratelimit-limit"}),
        ("legacy", {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"},
         {"ratelimit"}),
        ("both", {"ratelimit", "x-ratelimit-limit"}, set()),
        ("none", set(), {"ratelimit", "x-ratelimit-limit", "ratelimit-policy"}),
    ],
)  # fmt: skip
async def test_header_modes(
    memory: MemoryBackend, mode: str, present: set[str], absent: set[str]
) -> None:
    """headers = ietf | legacy | both | none select exactly those header sets."""
    async with asgi_client(middleware(memory, headers=mode)) as client:
        response = await client.post("/login")
    assert present <= set(response.headers)
    assert not absent & set(response.headers)
    if mode in ("legacy", "both"):
        assert response.headers["x-ratelimit-limit"] == "2"
        assert response.headers["x-ratelimit-remaining"] == "1"
        assert response.headers["x-ratelimit-reset"] == "20"


async def test_all_rules_are_checked_atomically(memory: MemoryBackend) -> None:
    """When one matching rule rejects, no other matching rule consumes anything."""
    rules = [
        {"name": "outer", "path": "/**", "limit": "10/minute"},
        {"name": "inner", "path": "/api/**", "limit": "1/minute"},
    ]
    recording = RecordingBackend(memory)
    app = RateLimitMiddleware(make_app(), config={"rules": rules}, backend=recording)
    app.engine.rejections = None  # every request asks the backend (see test_rejection_cache)
    async with asgi_client(app) as client:
        assert (await client.get("/api/x")).status_code == 200
        for _ in range(3):
            assert (await client.get("/api/x")).status_code == 429
        response = await client.get("/")
    assert response.headers["ratelimit"] == '"outer";r=8;t=20'
    assert all(call[1] == ("outer", "inner") for call in recording.calls[:4])
    assert len(recording.calls) == 5  # one backend call per request


async def test_rules_with_different_keys_check_before_consuming(memory: MemoryBackend) -> None:
    """Rules keyed differently are checked first and consume only if all admit."""
    rules = [
        {"name": "per-ip", "path": "/**", "limit": "10/minute"},
        {"name": "per-key", "path": "/api/**", "limit": "1/minute", "key": "header:x-api-key"},
    ]
    recording = RecordingBackend(memory)
    app = RateLimitMiddleware(make_app(), config={"rules": rules}, backend=recording)
    async with asgi_client(app) as client:
        assert (await client.get("/api/x", headers={"x-api-key": "k"})).status_code == 200
        assert (await client.get("/api/x", headers={"x-api-key": "k"})).status_code == 429
        assert (await client.get("/api/x", headers={"x-api-key": "other"})).status_code == 200
        response = await client.get("/")
    assert response.headers["ratelimit"] == '"per-ip";r=7;t=20'
    keys = {call[0] for call in recording.calls}
    assert keys == {"ip:203.0.113.7", "header:x-api-key:k", "header:x-api-key:other"}


async def test_shadow_mode_reports_but_never_rejects(
    memory: MemoryBackend, caplog: pytest.LogCaptureFixture
) -> None:
    """In shadow mode over-limit requests pass, with r=0 in the headers and a log record."""
    caplog.set_level(logging.INFO, logger="ratelimit")
    async with asgi_client(middleware(memory, shadow=True)) as client:
        responses = [await client.post("/login") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 200]
    assert responses[-1].headers["ratelimit"].startswith('"login";r=0;')
    assert any("shadow mode: would reject POST /login" in m for m in caplog.messages)


async def test_backend_failure_fails_open() -> None:
    """on_error = allow: a backend raising BackendError lets requests through, without a 500."""
    backend = FailingBackend()
    async with asgi_client(middleware(backend, on_error="allow")) as client:
        response = await client.post("/login")
    assert response.status_code == 200 and response.text == "hello"
    assert "ratelimit" not in response.headers and backend.calls == 1


@pytest.mark.parametrize("error", [ConnectionError("redis gone"), TypeError("a bug")])
async def test_non_backend_errors_propagate(error: Exception) -> None:
    """Only BackendError is an outage: any other exception from deciding propagates (a 500
    from the framework), even with on_error = allow, instead of silently failing open."""
    backend = FailingBackend(error)
    with pytest.raises(type(error)):
        async with asgi_client(middleware(backend, on_error="allow")) as client:
            await client.post("/login")
    assert backend.calls == 1


async def test_backend_failure_fails_closed(failing: FailingBackend) -> None:
    """on_error = deny: a failing backend answers 503 problem+json with Retry-After."""
    async with asgi_client(middleware(failing, on_error="deny")) as client:
        response = await client.post("/login")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 503


@pytest.mark.parametrize("on_error", ["allow", "deny", "local"])
async def test_an_overloaded_process_sheds_whatever_on_error_says(on_error: str) -> None:
    """A decision this process was too busy to finish (``kind="overload"``) is never a reason
    to admit: 503 problem+json with Retry-After, under every on_error; shadow mode admits."""
    from ratelimit.errors import BackendError

    overloaded = FailingBackend(BackendError("too busy", kind="overload"))
    async with asgi_client(middleware(overloaded, on_error=on_error)) as client:
        response = await client.post("/login")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "too busy to decide" in response.json()["detail"]
    async with asgi_client(middleware(overloaded, on_error="allow", shadow=True)) as client:
        assert (await client.post("/login")).status_code == 200


async def test_streaming_response_gets_headers_exactly_once(memory: MemoryBackend) -> None:
    """A streamed body keeps its chunks and gets each rate-limit header once."""
    async with asgi_client(middleware(memory)) as client:
        response = await client.get("/stream")
    assert response.text == "one,two,three"
    assert response.headers.get_list("ratelimit") == ['"stream";r=4;t=20']
    assert len(response.headers.get_list("ratelimit-policy")) == 1


async def test_leaky_bucket_shapes_without_blocking(memory: MemoryBackend) -> None:
    """Shaping delays admitted requests by the queue ahead (awaited, not blocking)."""
    app = middleware(memory)
    sleeper = AsyncSleepRecorder()
    app.sleep = sleeper  # type: ignore[method-assign]
    async with asgi_client(app) as client:
        codes = [(await client.post("/upload/b")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert sleeper.delays == [1.0, 2.0]


async def test_max_delay_rejects_requests_that_would_wait_too_long(memory: MemoryBackend) -> None:
    """A request that would wait longer than max_delay is rejected with 429 and not counted."""
    app = middleware(memory, max_delay=1.0)
    app.sleep = AsyncSleepRecorder()  # type: ignore[method-assign]
    async with asgi_client(app) as client:
        codes = [(await client.post("/upload/b")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_custom_reject_handler(memory: MemoryBackend) -> None:
    """on_reject replaces the 429 reply; the rate-limit headers are still added."""

    def handler(request: object, decision: object) -> Reply:
        return Reply(429, [(b"content-type", b"text/plain")], b"slow down")

    app = RateLimitMiddleware(
        make_app(), config={"rules": RULES}, backend=memory, on_reject=handler
    )
    async with asgi_client(app) as client:
        responses = [await client.post("/login") for _ in range(3)]
    assert responses[2].status_code == 429 and responses[2].text == "slow down"
    assert responses[2].headers["ratelimit"].startswith('"login";r=0')


class TokenAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        user = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(user)) if user else None


async def test_user_key_uses_scope_user_and_falls_back_to_ip(memory: MemoryBackend) -> None:
    """key = user counts per authenticated user, anonymous clients per address."""
    inner = RateLimitMiddleware(
        make_app(),
        config={"key": "user", "rules": [{"name": "u", "path": "/", "limit": "1/minute"}]},
        backend=memory,
    )
    outer = AuthenticationMiddleware(inner, backend=TokenAuth())
    async with asgi_client(outer) as client:
        assert (await client.get("/", headers={"x-user": "alice"})).status_code == 200
        assert (await client.get("/", headers={"x-user": "alice"})).status_code == 429
        assert (await client.get("/", headers={"x-user": "bob"})).status_code == 200
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/")).status_code == 429
    assert memory.get_state("user:alice", inner.engine.rules[0].limits[0]) is not None
    assert memory.get_state("ip:203.0.113.7", inner.engine.rules[0].limits[0]) is not None


async def test_lifespan_passes_through(memory: MemoryBackend) -> None:
    """Lifespan messages reach the wrapped app untouched."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        message = await receive()
        seen.append(message["type"])
        await send({"type": "lifespan.startup.complete"})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await RateLimitMiddleware(app, config={"rules": RULES}, backend=memory)(
        {"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send
    )
    assert seen == ["lifespan", "lifespan.startup"]
    assert sent == [{"type": "lifespan.startup.complete"}]


async def test_websocket_denied_with_close_1008_without_the_extension(
    memory: MemoryBackend,
) -> None:
    """A rejected handshake is closed with 1008 when the server has no denial response."""
    app = middleware(memory)
    sent: list[dict[str, Any]] = []
    inbox: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "client": ("192.0.2.1", 1),
             "extensions": {}, "subprotocols": []}  # fmt: skip
    inbox[:] = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "x"},
                {"type": "websocket.disconnect", "code": 1000}]  # fmt: skip
    await app(dict(scope), receive, send)  # admitted: the app accepts
    assert sent[0]["type"] == "websocket.accept"
    assert (b"ratelimit", b'"ws";r=0;t=20') in sent[0]["headers"]
    sent.clear()
    inbox[:] = [{"type": "websocket.connect"}]
    await app(dict(scope), receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "rate limited"}]


# ---------------------------------------------------------------- a real uvicorn server


def test_real_uvicorn_server_limits_and_sets_headers(memory: MemoryBackend) -> None:
    """Under uvicorn, the 429, problem+json, Retry-After and RateLimit headers go over the wire."""
    with uvicorn_server(middleware(memory)) as url:
        responses = [httpx.post(url + "/login") for _ in range(3)]
        streamed = httpx.get(url + "/stream")
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].headers["content-type"] == "application/problem+json"
    assert json.loads(responses[2].content)["status"] == 429
    assert "retry-after" in responses[2].headers
    assert streamed.text == "one,two,three" and len(streamed.headers.get_list("ratelimit")) == 1


def test_real_uvicorn_websocket_denial_response(memory: MemoryBackend) -> None:
    """Under uvicorn the second handshake is refused with the 429 reply (denial extension)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with uvicorn_server(middleware(memory), ws="websockets-sansio") as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        with connect(ws_url) as ws:
            ws.send("hi")
            assert ws.recv() == "echo:hi"
        with pytest.raises(InvalidStatus) as info:
            connect(ws_url)
    response = info.value.response
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    assert json.loads(response.body)["status"] == 429


BAD_HEADERS: list[bytes] = [
    b"",
    b"unknown",
    b"1.2.3.4, 198.51.100.9",
    b"[2001:db8::1]:80, 10.0.0.2",
    b"198.51.100.9:notaport",
    b"\xff\xfe\xe9, 1.2.3.4",
    b", ".join([b"1.2.3.4"] * 1000),
    b"x" * 10_000,
    b"::ffff:198.51.100.9",
]


@pytest.mark.parametrize("value", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
def test_real_uvicorn_never_500s_on_proxy_headers(memory: MemoryBackend, value: bytes) -> None:
    """Whatever X-Forwarded-For / Forwarded a client sends through a trusted peer: never a 500."""
    rules = [{"name": "all", "path": "/**", "limit": "1000/minute"}]
    apps = [
        RateLimitMiddleware(make_app(), config={"rules": rules, "trusted_proxies": ["127.0.0.1"],
                            "proxy_header": header}, backend=memory)
        for header in ("x-forwarded-for", "forwarded")
    ]  # fmt: skip
    for app in apps:
        with uvicorn_server(app, proxy_headers=False) as url:
            response = httpx.get(
                url + "/",
                headers=[(b"x-forwarded-for", value), (b"forwarded", b"for=" + value)],
            )
            assert response.status_code == 200, response.text


def test_real_uvicorn_trusted_proxy_identifies_the_client(memory: MemoryBackend) -> None:
    """Behind a trusted proxy (127.0.0.1), clients named in X-Forwarded-For count separately."""
    rules = [{"name": "one", "path": "/", "limit": "1/minute"}]
    app = RateLimitMiddleware(
        make_app(), config={"rules": rules, "trusted_proxies": ["127.0.0.0/8"]}, backend=memory
    )
    with uvicorn_server(app, proxy_headers=False) as url:
        a1 = httpx.get(url + "/", headers={"x-forwarded-for": "198.51.100.1"})
        a2 = httpx.get(url + "/", headers={"x-forwarded-for": "6.6.6.6, 198.51.100.1"})
        b1 = httpx.get(url + "/", headers={"x-forwarded-for": "198.51.100.2"})
    assert (a1.status_code, a2.status_code, b1.status_code) == (200, 429, 200)


async def test_concurrent_requests_admit_exactly_the_limit(memory: MemoryBackend) -> None:
    """Concurrent requests through the middleware admit exactly the limit."""
    async with asgi_client(middleware(memory)) as client:
        responses = await asyncio.gather(*(client.get("/api/x") for _ in range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 7

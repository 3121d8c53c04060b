"""The WSGI middleware: PEP 3333 in-process, Flask, and real waitress / wsgiref servers."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import httpx
import pytest
from flask import Flask

from ratelimit import MemoryBackend
from ratelimit.wsgi import RateLimitMiddleware
from tests.conftest import FakeClock
from tests.http.conftest import FailingBackend, SleepRecorder
from tests.support.servers import wsgi_server

RULES: list[dict[str, Any]] = [
    {"name": "login", "path": "/login", "methods": ["POST"], "limit": "2/minute"},
    {"name": "shape", "path": "/shape", "limit": "1/second", "algorithm": "leaky_bucket",
     "burst": 3},
    {"name": "all", "path": "/**", "limit": "100/minute"},
]  # fmt: skip


class Body:
    """A WSGI response iterable that records whether the server closed it."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield b"hello"

    def close(self) -> None:
        self.closed = True


class App:
    """A plain WSGI app remembering the bodies it returned."""

    def __init__(self) -> None:
        self.bodies: list[Body] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        body = Body()
        self.bodies.append(body)
        return body


def call(
    app: Any, path: str, method: str = "GET", **environ: Any
) -> tuple[str, dict[str, str], bytes]:
    env: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": method, "REMOTE_ADDR": "192.0.2.9"}
    env.update(environ)
    setup_testing_defaults(env)
    env["wsgi.input"] = io.BytesIO()
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = status, headers
        return lambda data: None

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return captured["status"], dict(captured["headers"]), body


def test_in_process_limits_with_problem_json(memory: MemoryBackend, clock: FakeClock) -> None:
    """The third POST is a 429 problem+json with Retry-After; admitted ones carry headers."""
    app = RateLimitMiddleware(App(), config={"rules": RULES}, backend=memory)
    results = [call(app, "/login", "POST") for _ in range(3)]
    assert [r[0] for r in results] == ["200 OK", "200 OK", "429 Too Many Requests"]
    assert results[0][1]["ratelimit-policy"] == '"login";q=2;w=60, "all";q=100;w=60'
    assert results[0][1]["ratelimit"] == '"login";r=1;t=20'
    _, headers, body = results[2]
    assert headers["content-type"] == "application/problem+json"
    assert headers["retry-after"] == "20" and b'"status":429' in body


def test_app_iterable_is_returned_and_closed(memory: MemoryBackend) -> None:
    """The app's iterable is handed to the server unchanged, so its close() runs."""
    inner = App()
    app = RateLimitMiddleware(inner, config={"rules": RULES}, backend=memory)
    call(app, "/anything")
    call(app, "/login", "POST")
    assert [body.closed for body in inner.bodies] == [True, True]


def test_unmatched_requests_pass_untouched(memory: MemoryBackend) -> None:
    """A request no rule matches gets no rate-limit headers."""
    app = RateLimitMiddleware(App(), config={"rules": RULES[:1]}, backend=memory)
    status, headers, _ = call(app, "/other")
    assert status == "200 OK" and "ratelimit" not in headers


def test_non_ascii_path_info_is_decoded(memory: MemoryBackend) -> None:
    """PATH_INFO (Latin-1-decoded bytes per PEP 3333) is matched as UTF-8 text."""
    rules = [{"name": "cafe", "path": "/café", "limit": "1/minute"}]
    app = RateLimitMiddleware(App(), config={"rules": rules}, backend=memory)
    raw = "/café".encode().decode("latin-1")
    assert call(app, raw)[0] == "200 OK"
    assert call(app, raw)[0] == "429 Too Many Requests"


def test_shaping_sleeps_in_the_worker(memory: MemoryBackend) -> None:
    """Leaky-bucket shaping waits with the sync sleep, by the queue ahead."""
    app = RateLimitMiddleware(App(), config={"rules": RULES}, backend=memory)
    sleeper = SleepRecorder()
    app.sleep = sleeper  # type: ignore[method-assign]
    codes = [call(app, "/shape")[0][:3] for _ in range(4)]
    assert codes == ["200", "200", "200", "429"]
    assert sleeper.delays == [1.0, 2.0]


@pytest.mark.parametrize(
    ("mode", "status"), [("allow", "200 OK"), ("deny", "503 Service Unavailable")]
)
def test_backend_failure_modes(failing: FailingBackend, mode: str, status: str) -> None:
    """A failing backend gives the app's answer (allow) or a 503 (deny), never a 500."""
    app = RateLimitMiddleware(App(), config={"rules": RULES, "on_error": mode}, backend=failing)
    result = call(app, "/login", "POST")
    assert result[0] == status
    if mode == "deny":
        assert result[1]["retry-after"] == "1"


def test_shadow_mode(memory: MemoryBackend) -> None:
    """Shadow mode never rejects."""
    app = RateLimitMiddleware(App(), config={"rules": RULES, "shadow": True}, backend=memory)
    assert {call(app, "/login", "POST")[0] for _ in range(5)} == {"200 OK"}


def test_user_key_reads_remote_user(memory: MemoryBackend) -> None:
    """key = user counts per REMOTE_USER, anonymous clients per address."""
    rules = [{"name": "u", "path": "/", "limit": "1/minute", "key": "user"}]
    app = RateLimitMiddleware(App(), config={"rules": rules}, backend=memory)
    assert call(app, "/", REMOTE_USER="alice")[0] == "200 OK"
    assert call(app, "/", REMOTE_USER="alice")[0].startswith("429")
    assert call(app, "/", REMOTE_USER="bob")[0] == "200 OK"
    assert call(app, "/")[0] == "200 OK"


def flask_app() -> Flask:
    app = Flask(__name__)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> str:
        return "login"

    @app.route("/stream")
    def stream() -> Any:
        return app.response_class(iter([b"a", b"b", b"c"]), mimetype="text/plain")

    return app


@pytest.mark.parametrize("kind", ["waitress", "wsgiref"])
def test_flask_under_a_real_wsgi_server(memory: MemoryBackend, kind: str) -> None:
    """Flask wrapped with app.wsgi_app = RateLimitMiddleware(...) is limited over real HTTP."""
    app = flask_app()
    app.wsgi_app = RateLimitMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, config={"rules": RULES}, backend=memory
    )
    with wsgi_server(app, kind=kind) as url:
        responses = [httpx.post(url + "/login") for _ in range(3)]
        streamed = httpx.get(url + "/stream")
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[2].json()["retry_after"] == 20
    assert responses[0].headers["ratelimit"].startswith('"login";r=1;')
    assert streamed.text == "abc" and len(streamed.headers.get_list("ratelimit")) == 1


def test_real_server_proxy_headers_never_500(memory: MemoryBackend) -> None:
    """Through a trusted peer, hostile X-Forwarded-For values never cause a 500 (waitress)."""
    app = RateLimitMiddleware(
        App(),
        config={"rules": RULES, "trusted_proxies": ["127.0.0.1"]},
        backend=memory,
    )
    values = [b"", b"unknown", b"1.2.3.4, 198.51.100.9", b"\xff\xfe", b"x" * 10_000,
              b", ".join([b"10.0.0.1"] * 1000), b"[::1]:80", b"::ffff:1.2.3.4"]  # fmt: skip
    with wsgi_server(app, clear_untrusted_proxy_headers=False) as url:
        for value in values:
            response = httpx.get(url + "/", headers=[(b"x-forwarded-for", value)])
            assert response.status_code == 200, value[:40]
        a = httpx.post(url + "/login", headers={"x-forwarded-for": "198.51.100.1"})
        b = httpx.post(url + "/login", headers={"x-forwarded-for": "198.51.100.2"})
        assert a.headers["ratelimit"] == b.headers["ratelimit"]  # separate counters

"""Django: the middleware (sync under WSGI, async under ASGI) and the view decorator."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from asgiref.sync import iscoroutinefunction
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application
from django.test import AsyncClient, Client, override_settings

from ratelimit import ConfigError, MemoryBackend
from ratelimit.contrib import django as rl_django
from ratelimit.contrib.django import DjangoRequest, RateLimitMiddleware, configure
from tests.conftest import FakeClock
from tests.http.conftest import AsyncSleepRecorder, FailingBackend
from tests.support.servers import uvicorn_server, wsgi_server


@pytest.fixture(autouse=True)
def engine(memory: MemoryBackend) -> Iterator[None]:
    """A fresh engine from settings.RATELIMIT on a fake-clock memory backend, per test."""
    configure(backend=memory)
    yield
    rl_django._engine = None


def test_sync_middleware_limits_with_problem_json(clock: FakeClock) -> None:
    """Under the sync handler, the third request to /limited is a 429 problem+json."""
    client = Client(REMOTE_ADDR="192.0.2.1")
    responses = [client.get("/limited") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0]["RateLimit-Policy"] == '"django-limited";q=2;w=60'
    assert responses[0]["RateLimit"] == '"django-limited";r=1;t=20'
    assert responses[2]["Content-Type"] == "application/problem+json"
    assert responses[2]["Retry-After"] == "20"
    assert client.get("/free").has_header("RateLimit") is False


async def test_async_middleware_path() -> None:
    """Under the async handler the middleware runs its async path and limits the same way."""
    client = AsyncClient(REMOTE_ADDR="192.0.2.2")
    codes = [(await client.get("/limited")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_middleware_is_sync_and_async_capable() -> None:
    """The middleware declares both capabilities and becomes a coroutine for async chains."""

    async def get_response(request: Any) -> Any:
        return None

    assert RateLimitMiddleware.sync_capable and RateLimitMiddleware.async_capable
    assert iscoroutinefunction(RateLimitMiddleware(get_response))
    assert not iscoroutinefunction(RateLimitMiddleware(lambda request: None))


def test_sync_decorator_limits_one_view() -> None:
    """@limit on a sync view gives it its own counter and the same 429 reply."""
    client = Client(REMOTE_ADDR="192.0.2.3")
    first, second = client.get("/decorated"), client.get("/decorated")
    assert (first.status_code, second.status_code) == (200, 429)
    assert first["RateLimit"] == '"decorated-sync";r=0;t=20'
    assert second["Content-Type"] == "application/problem+json"


async def test_async_decorator_limits_only_its_methods() -> None:
    """@limit(methods=["POST"]) on an async view limits POST and lets GET through."""
    client = AsyncClient(REMOTE_ADDR="192.0.2.4")
    gets = [(await client.get("/adecorated")).status_code for _ in range(3)]
    posts = [(await client.post("/adecorated")).status_code for _ in range(2)]
    assert gets == [200, 200, 200] and posts == [200, 429]


@pytest.mark.parametrize(("mode", "status"), [("allow", 200), ("deny", 503)])
def test_backend_failure_modes(mode: str, status: int) -> None:
    """A failing backend lets requests through (allow) or answers 503 (deny), never 500."""
    settings = {"on_error": mode, "rules": [{"name": "x", "path": "/limited", "limit": "1/s"}]}
    configure(settings, backend=FailingBackend())
    assert Client().get("/limited").status_code == status


def _request_log(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "django.request"]


def test_django_does_not_log_a_line_per_rejection(caplog: pytest.LogCaptureFixture) -> None:
    """django.request logs every 4xx: not our 429s (a flood would write a line per request);
    other 4xx stay logged, and the decorator's 429 is quiet too."""
    caplog.set_level(logging.INFO, logger="django.request")
    client = Client(REMOTE_ADDR="192.0.2.9")
    codes = [client.get("/limited").status_code for _ in range(5)]
    codes += [client.get("/decorated").status_code for _ in range(3)]
    assert codes == [200, 200, 429, 429, 429, 200, 429, 429]
    assert client.get("/no-such-page").status_code == 404
    assert _request_log(caplog) == [(logging.WARNING, "Not Found: /no-such-page")]


def test_the_filter_drops_only_the_status_we_replied() -> None:
    """A record of another status for a request we answered (an outer middleware replaced our
    reply) is still logged; ours is dropped; an unmarked request is always logged."""
    answered, other = SimpleNamespace(ratelimit_replied=429), SimpleNamespace()

    def passes(status: int, request: object) -> bool:
        record = logging.makeLogRecord({"status_code": status, "request": request})
        return rl_django._OWN_REPLIES.filter(record)

    assert (passes(429, answered), passes(500, answered), passes(429, other)) == (
        False,
        True,
        True,
    )


async def test_async_django_does_not_log_a_line_per_rejection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same under the async handler."""
    caplog.set_level(logging.INFO, logger="django.request")
    client = AsyncClient(REMOTE_ADDR="192.0.2.10")
    codes = [(await client.get("/limited")).status_code for _ in range(4)]
    assert codes == [200, 200, 429, 429]
    assert _request_log(caplog) == []


def test_django_does_not_log_an_error_per_request_in_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """on_error = "deny" answers 503: Django would log (and mail) an ERROR for each one."""
    caplog.set_level(logging.INFO, logger="django.request")
    settings = {"on_error": "deny", "rules": [{"name": "x", "path": "/limited", "limit": "1/s"}]}
    configure(settings, backend=FailingBackend())
    client = Client()
    assert [client.get("/limited").status_code for _ in range(3)] == [503] * 3
    assert _request_log(caplog) == []


async def test_async_shaping_awaits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaky-bucket shaping in the async middleware is awaited (recorded, not slept, here)."""
    rules = [{"name": "shape", "path": "/alimited", "limit": "1/second", "burst": 3,
              "algorithm": "leaky_bucket"}]  # fmt: skip
    configure({"rules": rules}, backend=MemoryBackend(clock=FakeClock()))
    sleeper = AsyncSleepRecorder()
    monkeypatch.setattr(RateLimitMiddleware, "asleep", sleeper)
    client = AsyncClient()
    codes = [(await client.get("/alimited")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert sleeper.delays == [1.0, 2.0]


def test_settings_errors_name_settings_ratelimit() -> None:
    """An invalid settings.RATELIMIT fails at start-up naming settings.RATELIMIT and the key."""
    with (
        override_settings(RATELIMIT={"rules": [{"path": "/x", "limit": "1/fortnight"}]}),
        pytest.raises(ConfigError, match=r"^settings\.RATELIMIT: rules\[0\]\.limit: invalid"),
    ):
        configure()


def test_settings_may_be_a_toml_path(tmp_path: Any) -> None:
    """settings.RATELIMIT may name a TOML file."""
    path = tmp_path / "rl.toml"
    path.write_text('[[rules]]\nname = "t"\npath = "/free"\nlimit = "1/minute"\n')
    with override_settings(RATELIMIT=str(path)):
        configure(backend=MemoryBackend(clock=FakeClock()))
        client = Client()
        assert [client.get("/free").status_code for _ in range(2)] == [200, 429]


def test_user_identity_is_the_primary_key() -> None:
    """key = user reads request.user.pk when authenticated, else falls back (None)."""
    meta = {"REMOTE_ADDR": "192.0.2.1", "HTTP_X_API_KEY": "k"}
    authed = SimpleNamespace(
        method="GET", path_info="/", META=meta, user=SimpleNamespace(is_authenticated=True, pk=7)
    )
    anon = SimpleNamespace(
        method="GET",
        path_info="/",
        META=meta,
        user=SimpleNamespace(is_authenticated=False, pk=None),
    )
    assert DjangoRequest(authed).user() == "7"  # type: ignore[arg-type]
    assert DjangoRequest(anon).user() is None  # type: ignore[arg-type]
    assert DjangoRequest(anon).header("x-api-key") == "k"  # type: ignore[arg-type]
    assert DjangoRequest(anon).peer == "192.0.2.1"  # type: ignore[arg-type]


def test_django_under_a_real_wsgi_server() -> None:
    """Django behind waitress: limited over real HTTP, streaming responses get the headers."""
    configure(
        {"rules": [{"name": "l", "path": "/limited", "limit": "2/minute"},
                   {"name": "s", "path": "/stream", "limit": "9/minute"}]},
        backend=MemoryBackend(clock=FakeClock()),
    )  # fmt: skip
    with wsgi_server(get_wsgi_application()) as url:
        codes = [httpx.get(url + "/limited").status_code for _ in range(3)]
        streamed = httpx.get(url + "/stream")
    assert codes == [200, 200, 429]
    assert streamed.text == "abc" and streamed.headers["ratelimit"] == '"s";r=8;t=20'


def test_django_under_real_uvicorn() -> None:
    """Django's ASGI handler under uvicorn runs the async middleware and limits."""
    with uvicorn_server(get_asgi_application(), lifespan="off") as url:
        codes = [httpx.get(url + "/limited").status_code for _ in range(3)]
        decorated = [httpx.post(url + "/adecorated").status_code for _ in range(2)]
    assert codes == [200, 200, 429] and decorated == [200, 429]


def test_decorator_and_middleware_headers_are_joined() -> None:
    """A decorated view under a matching middleware rule lists both policies in one field."""
    configure(
        {"rules": [{"name": "site", "path": "/**", "limit": "10/minute"}]},
        backend=MemoryBackend(clock=FakeClock()),
    )
    response = Client().get("/decorated")
    assert response["RateLimit-Policy"] == '"site";q=10;w=60, "decorated-sync";q=1;w=60'
    assert response["RateLimit"] == '"site";r=9;t=20, "decorated-sync";r=0;t=20'


STATUS_SETTINGS = {
    "metrics": {"status_path": "/_ratelimit"},
    "rules": [{"name": "all", "path": "/**", "limit": "1/hour", "key": "global"}],
}


def test_status_page_before_the_rules(clock: FakeClock) -> None:
    """The status page is answered before the rules (never rate limited), loopback only."""
    configure(STATUS_SETTINGS, backend=MemoryBackend(clock=clock))
    local = Client(REMOTE_ADDR="127.0.0.1")
    for _ in range(3):
        response = local.get("/_ratelimit", HTTP_ACCEPT="application/json")
        assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert [rule["name"] for rule in response.json()["rules"]] == ["all"]
    assert Client(REMOTE_ADDR="192.0.2.9").get("/_ratelimit").status_code == 404


async def test_async_status_page(clock: FakeClock) -> None:
    """The async middleware answers the status page too (HTML without a JSON Accept)."""
    configure(STATUS_SETTINGS, backend=MemoryBackend(clock=clock))
    response = await AsyncClient(REMOTE_ADDR="127.0.0.1").get("/_ratelimit")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert b'<meta http-equiv="refresh"' in response.content

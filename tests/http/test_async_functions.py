"""``async def`` key, tier and cost functions: awaited under ASGI, refused at start-up under
WSGI, and never a silent bypass (an awaitable where a value was due is a ``TypeError``)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import AsyncClient
from flask import Flask
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratelimit import ConfigError, MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.contrib import django as rl_django
from ratelimit.contrib import flask as rl_flask
from ratelimit.contrib.starlette import limit as starlette_limit
from ratelimit.http.engine import Engine
from ratelimit.http.keys import RequestInfo, is_async_callable
from ratelimit.wsgi import RateLimitMiddleware as WsgiMiddleware
from tests.conftest import FakeClock
from tests.http.conftest import RecordingBackend, asgi_client

HERE = "tests.http.test_async_functions"


async def async_key(request: RequestInfo) -> str | None:
    """The client named by the ``x-client`` header (an async key function)."""
    return request.header("x-client")


async def async_tier(request: RequestInfo) -> str | None:
    """The tier named by the ``x-plan`` header (an async tier function)."""
    return request.header("x-plan")


async def async_cost(request: RequestInfo) -> int:
    """Two units per request (an async cost function)."""
    return 2


async def _prefixed(prefix: str, request: RequestInfo) -> str | None:
    value = request.header("x-client")
    return None if value is None else prefix + value


#: An async key function hidden behind functools.partial.
partial_key = functools.partial(_prefixed, "p-")


class AsyncKey:
    """An object whose ``__call__`` is ``async def``."""

    async def __call__(self, request: RequestInfo) -> str | None:
        return request.header("x-client")


async_key_object = AsyncKey()


def sync_returning_coroutine(request: RequestInfo) -> Any:
    """A plain function that returns a coroutine (an undeclared async function)."""
    return async_key(request)


def sync_tier_returning_coroutine(request: RequestInfo) -> Any:
    """A plain tier function that returns a coroutine."""
    return async_tier(request)


def sync_cost_returning_coroutine(request: RequestInfo) -> Any:
    """A plain cost function that returns a coroutine."""
    return async_cost(request)


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def asgi_app(config: dict[str, Any], backend: Any) -> RateLimitMiddleware:
    app = Starlette(routes=[Route("/{rest:path}", hello)])
    return RateLimitMiddleware(app, config=config, backend=backend)


def wsgi_hello(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


# -- detection ------------------------------------------------------------------------------


def test_is_async_callable_sees_functions_partials_and_objects() -> None:
    """``async def`` functions, partials of them and objects with an async ``__call__`` are
    async; plain functions, classes and plain callables are not."""
    assert is_async_callable(async_key)
    assert is_async_callable(partial_key)
    assert is_async_callable(functools.partial(partial_key))
    assert is_async_callable(async_key_object)
    assert not is_async_callable(sync_returning_coroutine)
    assert not is_async_callable(AsyncKey)
    assert not is_async_callable(len)
    assert not is_async_callable(functools.partial(len))


# -- awaited under ASGI -----------------------------------------------------------------------


@pytest.mark.parametrize("key", [f"{HERE}:async_key", partial_key, async_key_object])
async def test_asgi_awaits_an_async_key(clock: FakeClock, key: Any) -> None:
    """Under ASGI an async key function is awaited: a ``2/minute`` rule admits exactly 2 of
    3 requests of one client, counted under its identity, and another client is apart."""
    backend = RecordingBackend(MemoryBackend(clock=clock))
    config = {"key": key, "rules": [{"name": "r", "path": "/**", "limit": "2/minute"}]}
    async with asgi_client(asgi_app(config, backend)) as client:
        codes = [
            (await client.get("/", headers={"x-client": "alice"})).status_code for _ in range(3)
        ]
        other = await client.get("/", headers={"x-client": "bob"})
    assert codes == [200, 200, 429]
    assert other.status_code == 200
    keys = {call[0] for call in backend.calls}
    assert len(keys) == 2
    assert all(k.startswith("custom:") and k.endswith(("alice", "bob")) for k in keys)


async def test_asgi_async_key_falls_back_to_the_address(clock: FakeClock) -> None:
    """An async key function that gives ``None`` counts the client by address, as a plain
    one does."""
    backend = RecordingBackend(MemoryBackend(clock=clock))
    config = {"rules": [{"name": "r", "path": "/**", "limit": "2/minute", "key": async_key}]}
    async with asgi_client(asgi_app(config, backend)) as client:
        assert (await client.get("/")).status_code == 200
    assert backend.calls[0][0] == "ip:203.0.113.7"


async def test_asgi_awaits_an_async_tier(clock: FakeClock) -> None:
    """An async tier function is awaited: a ``pro`` client gets the pro limits (and their
    headers), the others the rule's own."""
    config = {
        "rules": [
            {
                "name": "api",
                "path": "/**",
                "limit": "1/minute",
                "tier": f"{HERE}:async_tier",
                "tiers": {"pro": ["3/minute"]},
            }
        ]
    }
    app = asgi_app(config, MemoryBackend(clock=clock))
    async with asgi_client(app) as client:
        pro = [(await client.get("/", headers={"x-plan": "pro"})) for _ in range(4)]
        free = [(await client.get("/", headers={"x-plan": "free"})).status_code for _ in range(2)]
    assert [r.status_code for r in pro] == [200, 200, 200, 429]
    assert pro[0].headers["RateLimit-Policy"] == '"api.pro";q=3;w=60'
    assert free == [200, 429]


async def test_asgi_awaits_an_async_cost(clock: FakeClock) -> None:
    """An async cost function is awaited and its value counted: at 2 units a request, a
    limit of 4 admits 2 requests."""
    config = {"rules": [{"name": "r", "path": "/**", "limit": "4/minute", "cost": async_cost}]}
    async with asgi_client(asgi_app(config, MemoryBackend(clock=clock))) as client:
        responses = [await client.get("/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["RateLimit"].startswith('"r";r=2;')


async def test_asgi_awaits_an_awaitable_from_a_plain_tier_or_cost(clock: FakeClock) -> None:
    """Under ASGI, a plain tier or cost function that returns an awaitable is awaited too."""
    config = {
        "rules": [
            {
                "name": "api",
                "path": "/**",
                "limit": "1/minute",
                "cost": sync_cost_returning_coroutine,
                "tier": sync_tier_returning_coroutine,
                "tiers": {"pro": ["4/minute"]},
            }
        ]
    }
    async with asgi_client(asgi_app(config, MemoryBackend(clock=clock))) as client:
        codes = [(await client.get("/", headers={"x-plan": "pro"})).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_starlette_decorator_awaits_an_async_key(clock: FakeClock) -> None:
    """The Starlette decorator awaits an async key function: 2 of 3 admitted per client."""

    @starlette_limit("2/minute", key=async_key, backend=MemoryBackend(clock=clock))
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    async with asgi_client(app) as client:
        alice = [(await client.get("/", headers={"x-client": "a"})).status_code for _ in range(3)]
        bob = (await client.get("/", headers={"x-client": "b"})).status_code
    assert alice == [200, 200, 429]
    assert bob == 200


@pytest.fixture
def django_engine() -> Iterator[None]:
    """Leaves Django's shared engine unset after the test."""
    yield
    rl_django._engine = None


async def test_django_async_middleware_awaits_an_async_key(
    clock: FakeClock, django_engine: None
) -> None:
    """Django's async middleware awaits an async key function: 2 of 3 admitted."""
    rules = [{"name": "d", "path": "/limited", "limit": "2/minute"}]
    rl_django.configure({"key": async_key, "rules": rules}, backend=MemoryBackend(clock=clock))
    client = AsyncClient(REMOTE_ADDR="192.0.2.9")
    codes = [
        (await client.get("/limited", headers={"x-client": "c"})).status_code for _ in range(3)
    ]
    other = (await client.get("/limited", headers={"x-client": "d"})).status_code
    assert codes == [200, 200, 429]
    assert other == 200


# -- refused at start-up under WSGI ----------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"key": f"{HERE}:async_key"}, "config: key"),
        ({"key": partial_key}, "config: key"),
        ({"rules": [{"path": "/", "limit": "1/minute", "key": async_key_object}]}, "rules[0].key"),
        (
            {"rules": [{"path": "/", "limit": "1/s", "tier": async_tier, "tiers": {"pro": "2/s"}}]},
            "config: rules[0].tier",
        ),
        ({"rules": [{"path": "/", "limit": "1/s", "cost": f"{HERE}:async_cost"}]}, "rules[0].cost"),
    ],
)
def test_wsgi_middleware_refuses_async_functions(config: dict[str, Any], setting: str) -> None:
    """The WSGI middleware refuses an async key, tier or cost function when it is built,
    naming the setting and saying why."""
    with pytest.raises(ConfigError) as info:
        WsgiMiddleware(wsgi_hello, config=config)
    message = str(info.value)
    assert setting in message
    assert "async function, which the WSGI middleware cannot await" in message
    assert "no event loop" in message


def test_flask_refuses_an_async_key_at_init() -> None:
    """``RateLimit(app)`` refuses a config with an async key function, naming the key."""
    app = Flask(__name__)
    app.config["RATELIMIT"] = {"key": async_key}
    with pytest.raises(ConfigError, match=r'app.config\["RATELIMIT"\]: key: an async function'):
        rl_flask.RateLimit(app)


def test_flask_limit_refuses_an_async_key() -> None:
    """Flask's ``@limit(key=...)`` refuses an async key function when it decorates."""
    with pytest.raises(ConfigError, match="which Flask cannot await"):
        rl_flask.limit("1/minute", key=f"{HERE}:async_key")(lambda: "x")


def test_django_sync_middleware_refuses_an_async_tier(django_engine: None) -> None:
    """Django's sync middleware refuses an async tier function when it is built."""
    rules = [{"path": "/", "limit": "1/s", "tier": async_tier, "tiers": {"pro": ["2/s"]}}]
    rl_django.configure({"rules": rules})
    with pytest.raises(ConfigError) as info:
        rl_django.RateLimitMiddleware(lambda request: None)
    assert "settings.RATELIMIT: rules[0].tier: an async function" in str(info.value)
    assert "Django's sync middleware path" in str(info.value)


def test_django_limit_refuses_an_async_key_on_a_sync_view_only() -> None:
    """Django's ``@limit`` refuses an async key function on a sync view, not on an async one."""

    async def async_view(request: Any) -> Any:
        return None

    rl_django.limit("1/minute", key=async_key)(async_view)
    with pytest.raises(ConfigError, match="a sync Django view cannot await"):
        rl_django.limit("1/minute", key=async_key)(lambda request: None)


def test_reload_keeps_the_rules_when_a_sync_engine_gets_an_async_function(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reloaded file that brings an async function to a WSGI engine is refused like a bad
    file: the old rules stay."""
    path = tmp_path / "ratelimit.toml"
    path.write_text('[[rules]]\nname = "a"\npath = "/"\nlimit = "1/minute"\n')
    engine = WsgiMiddleware(wsgi_hello, config=str(path)).engine
    path.write_text(
        f'[[rules]]\nname = "b"\npath = "/"\nlimit = "1/minute"\nkey = "{HERE}:async_key"\n'
    )
    assert engine.reload() is False
    assert [rule.name for rule in engine.rules] == ["a"]
    assert "rules[0].key: an async function" in caplog.text


# -- never a silent bypass -------------------------------------------------------------------


def _wsgi_get(app: Any, headers: dict[str, str] | None = None) -> Any:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "192.0.2.1"}
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return app(environ, lambda status, headers, exc_info=None: None)


@pytest.mark.parametrize(
    "rule",
    [
        {"key": sync_returning_coroutine},
        {"tier": sync_tier_returning_coroutine, "tiers": {"pro": ["5/minute"]}},
        {"cost": sync_cost_returning_coroutine},
    ],
)
def test_wsgi_plain_function_returning_an_awaitable_raises(rule: dict[str, Any]) -> None:
    """Under WSGI, a plain key, tier or cost function returning an awaitable raises a
    ``TypeError`` that says what to do (and its coroutine is closed, so no warning)."""
    config = {"rules": [{"name": "r", "path": "/", "limit": "2/minute", **rule}]}
    app = WsgiMiddleware(wsgi_hello, config=config)
    with pytest.raises(TypeError, match=r"returned an awaitable \(coroutine\).*async def"):
        _wsgi_get(app, {"x-client": "a", "x-plan": "pro"})


async def test_asgi_plain_key_returning_an_awaitable_raises(clock: FakeClock) -> None:
    """Under ASGI, a plain key function returning an awaitable is a ``TypeError`` too (it
    must be declared async), never a fresh counter per request."""
    config = {"rules": [{"path": "/**", "limit": "2/minute", "key": sync_returning_coroutine}]}
    async with asgi_client(asgi_app(config, MemoryBackend(clock=clock))) as client:
        with pytest.raises(TypeError, match="the key function"):
            await client.get("/", headers={"x-client": "a"})


@pytest.mark.parametrize("what", ["key", "tier", "cost"])
def test_blocking_engine_run_refuses_async_functions(what: str) -> None:
    """``Engine.run`` (the blocking driver) refuses an async function's awaitable with a
    ``TypeError`` naming the kind of function, on an engine no adapter checked."""
    rule: dict[str, Any] = {"name": "r", "path": "/", "limit": "2/minute"}
    rule.update(
        {
            "key": {"key": async_key},
            "tier": {"tier": async_tier, "tiers": {"pro": ["5/minute"]}},
            "cost": {"cost": async_cost},
        }[what]
    )
    engine = Engine({"rules": [rule]})
    plan = engine.plan("GET", "/")
    assert plan is not None
    request = RequestInfo("GET", "/", "192.0.2.1")
    with pytest.raises(TypeError, match=f"the {what} function .* returned an awaitable"):
        engine.run(plan, request)


async def test_asgi_shadow_mode_with_an_async_key(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """In shadow mode an async key's rejections are admitted and logged once, with no
    coroutine left un-awaited (warnings are errors here)."""
    config = {
        "shadow": True,
        "rules": [{"name": "r", "path": "/**", "limit": "1/minute", "key": async_key}],
    }
    caplog.set_level("INFO", logger="ratelimit")
    async with asgi_client(asgi_app(config, MemoryBackend(clock=clock))) as client:
        codes = [(await client.get("/", headers={"x-client": "a"})).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    assert caplog.text.count("shadow mode: would reject") == 1

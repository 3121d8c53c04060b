"""The engine: counter keys match Rule.counter_key, costs, custom keys, plans and fallbacks."""

from __future__ import annotations

from typing import Any

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.http.engine import Engine
from ratelimit.http.keys import RequestInfo
from tests.http.conftest import FailingBackend, RecordingBackend, asgi_client


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def tenant_key(request: RequestInfo) -> str | None:
    """A custom key function: the x-tenant header."""
    return request.header("x-tenant")


async def test_counter_key_names_the_keys_the_middleware_uses(memory: MemoryBackend) -> None:
    """Rule.counter_key(identity) is exactly the backend key the middleware counted under."""
    rules = [
        {"name": "by-ip", "path": "/ip", "limit": "5/minute"},
        {"name": "by-key", "path": "/key", "limit": "5/minute", "key": "header:X-Api-Key"},
        {"name": "by-tenant", "path": "/tenant", "limit": "5/minute",
         "key": "tests.http.test_engine:tenant_key"},
        {"name": "everyone", "path": "/global", "limit": "5/minute", "key": "global"},
    ]  # fmt: skip
    app = RateLimitMiddleware(ok_app, config={"rules": rules}, backend=memory)
    async with asgi_client(app, client=("2001:db8:1:2::99", 1)) as client:
        await client.get("/ip")
        await client.get("/key", headers={"x-api-key": "k1"})
        await client.get("/tenant", headers={"x-tenant": "acme"})
        await client.get("/global")
    config = app.engine.config
    expected = {
        "by-ip": "2001:db8:1:2::/64",
        "by-key": "k1",
        "by-tenant": "acme",
        "everyone": "whatever",
    }
    for name, identity in expected.items():
        rule = config.rule(name)
        assert memory.get_state(rule.counter_key(identity), rule.limits[0]) is not None, name


async def test_rule_cost_is_charged(memory: MemoryBackend) -> None:
    """A rule with cost = 3 consumes 3 per request."""
    rules = [{"name": "heavy", "path": "/**", "limit": "10/minute", "cost": 3}]
    app = RateLimitMiddleware(ok_app, config={"rules": rules}, backend=memory)
    async with asgi_client(app) as client:
        codes = [(await client.get("/")).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


async def test_rules_with_different_costs_are_separate_calls(memory: MemoryBackend) -> None:
    """Rules with different costs are checked in separate calls, dry run first."""
    rules = [
        {"name": "a", "path": "/**", "limit": "10/minute"},
        {"name": "b", "path": "/**", "limit": "10/minute", "cost": 5},
    ]
    recording = RecordingBackend(memory)
    app = RateLimitMiddleware(ok_app, config={"rules": rules}, backend=recording)
    async with asgi_client(app) as client:
        codes = [(await client.get("/")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    consumes = [call for call in recording.calls if call[3]]
    assert [(call[1], call[2]) for call in consumes] == [(("a",), 1), (("b",), 5)] * 2


def test_sync_and_async_drivers_agree(memory: MemoryBackend) -> None:
    """run() and arun() give the same outcomes for the same plan and requests."""
    import asyncio

    engine = Engine({"rules": [{"name": "r", "path": "/", "limit": "2/minute"}]}, backend=memory)
    plan = engine.plan("GET", "/")
    assert plan is not None
    request = RequestInfo("GET", "/", "192.0.2.1")
    sync = [engine.run(plan, request).reply is None for _ in range(3)]
    engine2 = Engine(
        {"rules": [{"name": "r", "path": "/", "limit": "2/minute"}]}, backend=MemoryBackend()
    )
    plan2 = engine2.plan("GET", "/")
    assert plan2 is not None

    async def drive() -> list[bool]:
        return [(await engine2.arun(plan2, request)).reply is None for _ in range(3)]

    assert sync == asyncio.run(drive()) == [True, True, False]


def test_multi_group_backend_failure_goes_to_on_error() -> None:
    """A failure inside a multi-call plan answers with the on_error mode too."""
    rules = [
        {"name": "a", "path": "/**", "limit": "1/s"},
        {"name": "b", "path": "/**", "limit": "1/s", "key": "global"},
    ]
    engine = Engine({"rules": rules, "on_error": "deny"}, backend=FailingBackend())
    plan = engine.plan("GET", "/")
    assert plan is not None and plan.single is None
    outcome = engine.run(plan, RequestInfo("GET", "/", "192.0.2.1"))
    assert outcome.reply is not None and outcome.reply.status == 503


def test_default_engine_builds_its_backend_from_the_url() -> None:
    """Without a backend object the engine builds one from config.backend."""
    engine = Engine({"backend": "memory://?max_keys=10"})
    assert isinstance(engine.backend, MemoryBackend) and engine.backend.max_keys == 10

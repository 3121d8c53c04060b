"""The engine: counter keys match Rule.counter_key, costs, custom keys, plans and fallbacks."""

from __future__ import annotations

from typing import Any

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.http.engine import Engine
from ratelimit.http.keys import RequestInfo
from tests.http.conftest import CLIENT, FailingBackend, RecordingBackend, asgi_client


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
    assert plan is not None and len(plan.groups) == 2
    outcome = engine.run(plan, RequestInfo("GET", "/", "192.0.2.1"))
    assert outcome.reply is not None and outcome.reply.status == 503


def test_default_engine_builds_its_backend_from_the_url() -> None:
    """Without a backend object the engine builds one from config.backend."""
    engine = Engine({"backend": "memory://?max_keys=10"})
    assert isinstance(engine.backend, MemoryBackend) and engine.backend.max_keys == 10


class RecordingEachBackend(RecordingBackend):
    """A RecordingBackend that also offers (and records) the atomic ``decide_each``."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.each_calls: list[list[tuple[str, str, int]]] = []

    def decide_each(self, items: Any, consume: bool = True) -> Any:
        self.each_calls.append([(key, limit.id, cost) for key, limit, cost in items])
        return self.inner.decide_each(items, consume)

    async def adecide_each(self, items: Any, consume: bool = True) -> Any:
        return self.decide_each(items, consume)


async def test_rules_with_different_keys_and_costs_are_one_atomic_call(
    memory: MemoryBackend,
) -> None:
    """Rules keyed by address and by API key, with different costs, are decided in ONE
    backend call; when one rejects, the other consumes nothing."""
    rules = [
        {"name": "per-ip", "path": "/**", "limit": "10/minute"},
        {"name": "per-key", "path": "/api/**", "limit": "3/minute", "key": "header:x-api-key",
         "cost": 2},
    ]  # fmt: skip
    backend = RecordingEachBackend(memory)
    app = RateLimitMiddleware(ok_app, config={"rules": rules}, backend=backend)  # type: ignore[arg-type]
    async with asgi_client(app) as client:
        headers = {"x-api-key": "k1"}
        assert (await client.get("/api/x", headers=headers)).status_code == 200
        assert (await client.get("/api/x", headers=headers)).status_code == 429
    assert backend.calls == []  # no per-group calls: everything went through decide_each
    assert len(backend.each_calls) == 2
    assert {(limit_id, cost) for _, limit_id, cost in backend.each_calls[0]} == {
        ("per-ip", 1),
        ("per-key", 2),
    }
    config = app.engine.config
    ip_key = config.counter_key("per-ip", CLIENT[0])
    assert (ip_key, "per-ip", 1) in backend.each_calls[1]
    # Only the first request consumed from per-ip: the rejected second one took nothing.
    assert memory.decide(ip_key, config.rule("per-ip").limits, 0, False)[0].remaining == 9


async def test_without_atomic_cross_key_calls_the_engine_checks_then_consumes(
    memory: MemoryBackend,
) -> None:
    """A backend that cannot join different clients' keys (Redis Cluster) gets a dry run per
    group, then one consuming call per group."""
    rules = [
        {"name": "per-ip", "path": "/**", "limit": "10/minute"},
        {"name": "per-key", "path": "/api/**", "limit": "3/minute", "key": "header:x-api-key"},
    ]
    backend = RecordingEachBackend(memory)
    backend.atomic_across_keys = False  # type: ignore[attr-defined]
    app = RateLimitMiddleware(ok_app, config={"rules": rules}, backend=backend)  # type: ignore[arg-type]
    async with asgi_client(app) as client:
        assert (await client.get("/api/x", headers={"x-api-key": "k1"})).status_code == 200
    assert backend.each_calls == []
    assert [consume for *_, consume in backend.calls] == [False, False, True, True]


def test_on_error_local_decides_in_process_with_a_share_of_each_limit() -> None:
    """on_error = local: while the backend fails, each limit times local_fraction is
    enforced in process memory (outcome ``local``), and a 429 still comes when it is spent."""
    config = {
        "rules": [{"name": "a", "path": "/**", "limit": "4/minute"}],
        "on_error": "local",
        "local_fraction": 0.5,
    }
    backend = FailingBackend()
    engine = Engine(config, backend=backend)
    plan = engine.plan("GET", "/x")
    assert plan is not None
    request = RequestInfo("GET", "/x", "192.0.2.1")
    outcomes = [engine.run(plan, request) for _ in range(3)]
    assert [o.kind for o in outcomes] == ["local", "local", "rejected"]
    assert outcomes[2].reply is not None and outcomes[2].reply.status == 429
    assert backend.calls == 3  # the shared backend is tried every time (its breaker decides)


async def test_on_error_local_async_driver() -> None:
    """The asyncio driver takes the same local path."""
    config = {"rules": [{"name": "a", "path": "/**", "limit": "1/minute"}], "on_error": "local"}
    engine = Engine(config, backend=FailingBackend())
    plan = engine.plan("GET", "/x")
    assert plan is not None
    request = RequestInfo("GET", "/x", "192.0.2.1")
    kinds = [(await engine.arun(plan, request)).kind for _ in range(2)]
    assert kinds == ["local", "rejected"]

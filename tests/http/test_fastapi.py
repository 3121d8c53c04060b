"""FastAPI: ``Depends(limit(...))`` on routes, routers and nested routers (contrib.fastapi)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.requests import Request

from ratelimit import ConfigError, MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.contrib.fastapi import RequestRefused, limit
from tests.conftest import FakeClock
from tests.http.conftest import FailingBackend, asgi_client
from tests.support.servers import uvicorn_server


def nested_app(backend: Any) -> FastAPI:
    """An app with a route limit, a router limit (per route) and a three-level nesting."""
    app = FastAPI()

    @app.get("/solo", dependencies=[Depends(limit("2/minute", backend=backend))])
    async def solo() -> dict[str, str]:
        return {"solo": "yes"}

    inner = APIRouter(prefix="/inner", dependencies=[Depends(limit("1/minute", backend=backend))])

    @inner.get("/leaf")
    async def leaf() -> dict[str, str]:
        return {"leaf": "yes"}

    @inner.get("/other")
    def other() -> dict[str, str]:
        return {"other": "yes"}

    middle = APIRouter(prefix="/middle")
    middle.include_router(inner)
    app.include_router(middle, prefix="/v1")
    return app


def nested(endpoint: str, rate: str) -> str:
    """The policy name of a per-route limit on an endpoint of :func:`nested_app`."""
    return f"tests.http.test_fastapi.nested_app.<locals>.{endpoint} {rate}"


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body of a 429, checked for its content type."""
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content)
    return body


async def test_route_dependency_limits_with_problem_json_and_headers(
    memory: MemoryBackend,
) -> None:
    """A route's Depends(limit) admits its rate, then a 429 problem+json with our headers."""
    async with asgi_client(nested_app(memory)) as client:
        responses = [await client.get("/solo") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].json() == {"solo": "yes"}
    label = nested("solo", "2/minute")
    assert responses[0].headers["ratelimit-policy"] == f'"{label}";q=2;w=60'
    assert responses[1].headers["ratelimit"].startswith(f'"{label}";r=0;t=')
    body = problem(responses[2])
    assert body["status"] == 429 and body["violated-policies"] == [label]
    assert int(responses[2].headers["retry-after"]) == body["retry_after"] >= 1
    assert responses[2].headers["ratelimit-policy"] == f'"{label}";q=2;w=60'


async def test_nested_routers_limit_each_route(memory: MemoryBackend) -> None:
    """A router included in a router included in the app: its limit applies, per route."""
    async with asgi_client(nested_app(memory)) as client:
        leaf = [(await client.get("/v1/middle/inner/leaf")).status_code for _ in range(2)]
        other = [(await client.get("/v1/middle/inner/other")).status_code for _ in range(2)]
        last = await client.get("/v1/middle/inner/leaf")
    assert leaf == [200, 429] and other == [200, 429]
    assert last.headers["ratelimit-policy"] == f'"{nested("leaf", "1/minute")}";q=1;w=60'


async def test_shared_limit_is_one_counter_for_every_route(memory: MemoryBackend) -> None:
    """shared=True: the routes of a router draw on one counter, named by ``name``."""
    shared = limit("3/minute", name="api", shared=True, backend=memory)
    router = APIRouter(dependencies=[Depends(shared)])

    @router.get("/a")
    async def a() -> dict[str, str]:
        return {}

    @router.get("/b")
    async def b() -> dict[str, str]:
        return {}

    outer = APIRouter()
    outer.include_router(router, prefix="/x")
    app = FastAPI()
    app.include_router(outer)
    async with asgi_client(app) as client:
        codes = [(await client.get(path)).status_code for path in ("/x/a", "/x/b", "/x/a", "/x/b")]
        rejected = await client.get("/x/a")
    assert codes == [200, 200, 200, 429]
    assert problem(rejected)["violated-policies"] == ["api"]


def test_shared_needs_a_name() -> None:
    """shared=True without a name is refused when the dependency is made."""
    with pytest.raises(ConfigError, match="needs a name"):
        limit("1/minute", shared=True)


async def test_methods_and_key_options(memory: MemoryBackend) -> None:
    """methods= limits only those methods; key= picks the identity (one budget per header)."""
    app = FastAPI()
    dep = limit("1/minute", methods=["POST"], key="header:x-api-key", backend=memory)

    @app.api_route("/thing", methods=["GET", "POST"], dependencies=[Depends(dep)])
    async def thing() -> dict[str, str]:
        return {}

    async with asgi_client(app) as client:
        gets = [(await client.get("/thing")).status_code for _ in range(3)]
        k1 = [(await client.post("/thing", headers={"x-api-key": "k1"})).status_code for _ in "ab"]
        k2 = (await client.post("/thing", headers={"x-api-key": "k2"})).status_code
    assert gets == [200, 200, 200] and k1 == [200, 429] and k2 == 200


async def test_the_middleware_engine_is_used(clock: FakeClock) -> None:
    """Under RateLimitMiddleware the dependency decides on the middleware's engine (its
    backend, its headers mode), not on its own."""
    backend = MemoryBackend(clock=clock)
    app = FastAPI()

    @app.get("/m", dependencies=[Depends(limit("1/minute", name="m"))])
    async def m() -> dict[str, str]:
        return {}

    app.add_middleware(RateLimitMiddleware, config={"headers": "legacy"}, backend=backend)
    async with asgi_client(app) as client:
        first, second = await client.get("/m"), await client.get("/m")
        clock.advance(60)
        third = await client.get("/m")
    assert (first.status_code, second.status_code, third.status_code) == (200, 429, 200)
    assert first.headers["x-ratelimit-limit"] == "1" and "ratelimit" not in first.headers


@pytest.mark.parametrize(("mode", "status"), [("allow", 200), ("deny", 503)])
async def test_backend_failure_follows_on_error(mode: str, status: int) -> None:
    """A failing backend admits (allow) or answers the 503 problem+json (deny), never 500."""
    app = FastAPI()
    dep = limit("1/minute", config={"on_error": mode}, backend=FailingBackend())  # type: ignore[arg-type]

    @app.get("/f", dependencies=[Depends(dep)])
    async def f() -> dict[str, str]:
        return {}

    async with asgi_client(app) as client:
        response = await client.get("/f")
    assert response.status_code == status
    if status == 503:
        assert problem(response)["status"] == 503 and response.headers["retry-after"] == "1"


async def test_an_application_handler_takes_precedence(memory: MemoryBackend) -> None:
    """A handler the application registered for RequestRefused is kept, not replaced."""
    app = FastAPI()

    async def mine(request: Request, exc: Exception) -> PlainTextResponse:
        assert isinstance(exc, RequestRefused)
        return PlainTextResponse("slow down", status_code=exc.status_code, headers=exc.headers)

    app.add_exception_handler(RequestRefused, mine)

    @app.get("/h", dependencies=[Depends(limit("1/minute", backend=memory))])
    async def h() -> dict[str, str]:
        return {}

    async with asgi_client(app) as client:
        await client.get("/h")
        rejected = await client.get("/h")
    assert rejected.status_code == 429 and rejected.text == "slow down"
    assert rejected.headers["ratelimit"].startswith('"tests.http.test_fastapi.')
    assert '.h 1/minute";r=0;' in rejected.headers["ratelimit"]


async def test_endpoints_returning_a_response_are_limited(memory: MemoryBackend) -> None:
    """An endpoint that returns its own Response is limited the same way."""
    app = FastAPI()

    @app.get("/r", dependencies=[Depends(limit("1/minute", backend=memory))])
    async def r() -> JSONResponse:
        return JSONResponse({"r": 1})

    async with asgi_client(app) as client:
        codes = [(await client.get("/r")).status_code for _ in range(2)]
    assert codes == [200, 429]


def test_nested_routers_under_a_real_uvicorn_server() -> None:
    """Through uvicorn, the nested router's limit answers 429 problem+json with headers."""
    with uvicorn_server(nested_app(MemoryBackend())) as url:
        responses = [httpx.get(url + "/v1/middle/inner/leaf") for _ in range(2)]
        solo = [httpx.get(url + "/solo") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 429]
    label = nested("leaf", "1/minute")
    assert problem(responses[1])["violated-policies"] == [label]
    assert responses[0].headers["ratelimit"].startswith(f'"{label}";r=0;')
    assert [r.status_code for r in solo] == [200, 200, 429]


async def test_router_and_route_limits_both_apply(memory: MemoryBackend) -> None:
    """A router's limit and a route's own limit (unnamed, other rates) count apart; both hold."""
    router = APIRouter(dependencies=[Depends(limit("3/minute", backend=memory))])

    @router.get("/tight", dependencies=[Depends(limit("1/minute", backend=memory))])
    async def tight() -> dict[str, str]:
        return {}

    @router.get("/loose")
    async def loose() -> dict[str, str]:
        return {}

    app = FastAPI()
    app.include_router(router)
    async with asgi_client(app) as client:
        tight_codes = [(await client.get("/tight")).status_code for _ in range(2)]
        loose_codes = [(await client.get("/loose")).status_code for _ in range(4)]
        first = await client.get("/loose")
    assert tight_codes == [200, 429] and loose_codes == [200, 200, 200, 429]
    assert first.status_code == 429


async def test_disabled_turns_the_dependency_off(memory: MemoryBackend) -> None:
    """Under ``ratelimit.testing.disabled()`` a ``limit`` dependency admits everything, with
    no rate-limit headers; afterwards it limits again."""
    from ratelimit.testing import disabled

    async with asgi_client(nested_app(memory)) as client:
        with disabled():
            responses = [await client.get("/solo") for _ in range(4)]
        assert [r.status_code for r in responses] == [200] * 4
        assert all("ratelimit" not in r.headers for r in responses)
        after = [(await client.get("/solo")).status_code for _ in range(3)]
    assert after == [200, 200, 429]

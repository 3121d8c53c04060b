"""The @limit decorator on Starlette and FastAPI endpoints, with and without the middleware."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from fastapi import Response as FastAPIResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.contrib.starlette import limit
from tests.conftest import FakeClock
from tests.http.conftest import FailingBackend, asgi_client
from tests.support.servers import uvicorn_server


class Item(BaseModel):
    name: str


def fastapi_app(backend: Any) -> FastAPI:
    app = FastAPI()

    @app.post("/items")
    @limit("2/minute", name="create-item", backend=backend)
    async def create(item: Item) -> dict[str, str]:
        return {"created": item.name}

    @app.get("/items/{item_id}")
    @limit("1/minute", name="read-item", backend=backend)
    def read(item_id: int, verbose: bool = False) -> dict[str, Any]:
        return {"id": item_id, "verbose": verbose}

    @app.get("/raw")
    @limit("1/minute", name="raw", backend=backend)
    async def raw(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.url.path)

    return app


async def test_fastapi_endpoints_keep_their_signature(memory: MemoryBackend) -> None:
    """FastAPI still validates bodies, path and query params of decorated endpoints."""
    async with asgi_client(fastapi_app(memory)) as client:
        created = await client.post("/items", json={"name": "a"})
        invalid = await client.post("/items", json={"nope": 1})
        read = await client.get("/items/5?verbose=true")
    assert created.status_code == 200 and created.json() == {"created": "a"}
    assert invalid.status_code == 422
    assert read.json() == {"id": 5, "verbose": True}


async def test_fastapi_limits_and_headers(memory: MemoryBackend, clock: FakeClock) -> None:
    """A decorated FastAPI endpoint returns headers on success and a 429 when over the limit."""
    async with asgi_client(fastapi_app(memory)) as client:
        first = await client.post("/items", json={"name": "a"})
        second = await client.post("/items", json={"name": "b"})
        third = await client.post("/items", json={"name": "c"})
        raw = [await client.get("/raw") for _ in range(2)]
    assert first.headers["ratelimit"] == '"create-item";r=1;t=20'
    assert first.headers["ratelimit-policy"] == '"create-item";q=2;w=60'
    assert second.status_code == 200 and third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["retry_after"] == 20 and third.headers["retry-after"] == "20"
    assert [r.status_code for r in raw] == [200, 429] and raw[0].text == "/raw"


async def test_starlette_endpoint_sync_and_async(memory: MemoryBackend) -> None:
    """Plain Starlette endpoints (async and sync) are limited per endpoint."""

    @limit("1/minute", name="a", backend=memory)
    async def a(request: Request) -> PlainTextResponse:
        return PlainTextResponse("a")

    @limit("1/minute", name="b", backend=memory, methods=["POST"])
    def b(request: Request) -> JSONResponse:
        return JSONResponse({"b": request.method})

    app = Starlette(routes=[Route("/a", a), Route("/b", b, methods=["GET", "POST"])])
    async with asgi_client(app) as client:
        assert [(await client.get("/a")).status_code for _ in range(2)] == [200, 429]
        assert [(await client.get("/b")).status_code for _ in range(3)] == [200, 200, 200]
        assert [(await client.post("/b")).status_code for _ in range(2)] == [200, 429]


async def test_decorator_uses_the_middleware_engine(memory: MemoryBackend) -> None:
    """Under RateLimitMiddleware the decorator uses its backend and settings (on_error here)."""

    @limit("1/minute", name="mw")
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    wrapped = RateLimitMiddleware(app, config={"on_error": "deny"}, backend=FailingBackend())
    async with asgi_client(wrapped) as client:
        response = await client.get("/")
    assert response.status_code == 503  # the middleware's failing backend, fail closed
    shared = RateLimitMiddleware(app, backend=memory)
    async with asgi_client(shared) as client:
        assert [(await client.get("/")).status_code for _ in range(2)] == [200, 429]
    assert memory.get_state("ip:203.0.113.7", endpoint_limit(memory)) is not None


def endpoint_limit(memory: MemoryBackend) -> Any:
    from ratelimit import Limit

    return Limit("1/minute", name="mw")


def test_fastapi_under_real_uvicorn(memory: MemoryBackend) -> None:
    """A decorated FastAPI app under uvicorn answers 429 over real HTTP."""
    with uvicorn_server(fastapi_app(memory)) as url:
        codes = [httpx.get(url + "/items/1").status_code for _ in range(2)]
    assert codes == [200, 429]


async def test_fastapi_endpoint_taking_only_request_gets_headers(memory: MemoryBackend) -> None:
    """An endpoint with only a Request parameter returning a dict still gets the headers."""
    app = FastAPI()

    @app.get("/only")
    @limit("2/minute", name="only", backend=memory)
    async def only(request: Request) -> dict[str, str]:
        return {"path": request.url.path}

    async with asgi_client(app) as client:
        response = await client.get("/only")
    assert response.json() == {"path": "/only"}
    assert response.headers["ratelimit"] == '"only";r=1;t=20'


async def test_fastapi_endpoint_with_its_own_response_parameter(memory: MemoryBackend) -> None:
    """An endpoint that takes FastAPI's Response keeps it, and the headers land on it."""
    app = FastAPI()

    @app.get("/own")
    @limit("2/minute", name="own", backend=memory)
    async def own(response: FastAPIResponse) -> dict[str, bool]:
        response.headers["x-own"] = "1"
        return {"ok": True}

    async with asgi_client(app) as client:
        result = await client.get("/own")
    assert result.json() == {"ok": True} and result.headers["x-own"] == "1"
    assert result.headers["ratelimit"] == '"own";r=1;t=20'

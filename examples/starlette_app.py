"""A Starlette app limited by ``examples/ratelimit.toml``.

Run from the repository root::

    uvicorn examples.starlette_app:app

then ``curl -i -X POST localhost:8000/auth/login`` six times: the sixth answer is a 429.
``curl localhost:8000/metrics`` shows the Prometheus metrics, ``localhost:8000/_ratelimit``
the status page.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from ratelimit.asgi import RateLimitMiddleware
from ratelimit.contrib.starlette import limit

CONFIG = Path(__file__).with_name("ratelimit.toml")


async def home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("Hello from Starlette\n")


async def login(request: Request) -> JSONResponse:
    return JSONResponse({"token": "demo"})


async def items(request: Request) -> JSONResponse:
    return JSONResponse({"items": [1, 2, 3]})


async def upload(request: Request) -> JSONResponse:
    return JSONResponse({"bucket": request.path_params["bucket"], "stored": True})


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


@limit("3/minute", name="report")  # a per-endpoint limit declared in code
async def report(request: Request) -> JSONResponse:
    return JSONResponse({"report": "expensive"})


async def metrics(request: Request) -> Response:
    """The Prometheus scrape (every worker's under gunicorn's multiprocess mode)."""
    from ratelimit.metrics.prometheus import exposition

    body, content_type = exposition()
    return Response(body, media_type=content_type)


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for message in websocket.iter_text():
        await websocket.send_text(message)


app = Starlette(
    routes=[
        Route("/", home),
        Route("/auth/login", login, methods=["POST"]),
        Route("/api/items", items),
        Route("/upload/{bucket}", upload, methods=["POST"]),
        Route("/healthz", healthz),
        Route("/report", report),
        Route("/metrics", metrics),
        WebSocketRoute("/ws", echo),
    ],
    middleware=[Middleware(RateLimitMiddleware, config=CONFIG)],
)

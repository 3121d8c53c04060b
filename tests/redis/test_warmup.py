"""The ASGI middleware warms its Redis backend up at ``lifespan.startup``: the worker's event
loop connects and loads the scripts before the first request (a cold Redis Cluster client
needs several round trips, which a burst of first requests must not wait on)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ratelimit import RedisBackend
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.backends.redis_script import SCRIPT_SHA
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis


async def _app(scope: Any, receive: Any, send: Any) -> None:
    """An application that completes the lifespan protocol."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _start(app: Any) -> list[dict[str, Any]]:
    """Run the lifespan startup and shutdown; the messages the app sent."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    return sent


async def test_startup_loads_the_scripts_before_any_request(redis_proc: RedisServer) -> None:
    """After ``SCRIPT FLUSH``, a lifespan startup alone loads the decision script (so the
    first requests need no ``EVAL``), and the application still sees its startup."""
    redis_proc.command("SCRIPT", "FLUSH")
    backend = RedisBackend.from_url(redis_proc.url)
    config = {"rules": [{"name": "x", "path": "/x", "limit": "5/minute"}]}
    app = RateLimitMiddleware(_app, config=config, backend=backend)
    try:
        sent = await _start(app)
    finally:
        await backend.aclose()
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert redis_proc.command("SCRIPT", "EXISTS", SCRIPT_SHA) == [1]


async def test_startup_passes_while_redis_is_down() -> None:
    """A Redis that does not answer at startup does not stop the application from starting
    (decisions take the ``on_error`` path until it answers)."""
    from tests.support.servers import free_port

    backend = RedisBackend.from_url(f"redis://127.0.0.1:{free_port()}/0")
    config = {"rules": [{"name": "x", "path": "/x", "limit": "5/minute"}]}
    app = RateLimitMiddleware(_app, config=config, backend=backend)
    try:
        sent = await _start(app)
    finally:
        await backend.aclose()
    assert sent[0]["type"] == "lifespan.startup.complete"

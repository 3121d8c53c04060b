"""A small Starlette app with one rate-limited route per algorithm.

``GET /demo/<algorithm>`` answers ``ok`` under the rule named after the algorithm, all five
with the same limit (:data:`DEMO_RATE`; the buckets with burst :data:`DEMO_BURST`), keyed by
client address, with IETF ``RateLimit`` headers. ``GET /`` lists the routes.

:class:`ServerTiming` wraps the whole stack and adds
``Server-Timing: ratelimit;dur=<ms>, arrived;desc="<s>"``: ``dur`` is the time from the
request's arrival to its response start (the app answers at once, so that is the
middleware's time, the leaky bucket's shaping delay included) and ``arrived`` the arrival
time on this process's ``time.monotonic()`` clock, the clock the memory backend decides with.
The demo, running in the same process, uses both: to report how long shaping held requests,
and to count admissions by the time the server saw them rather than the time they were sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ratelimit.algorithms import ALGORITHMS

__all__ = ["DEMO_BURST", "DEMO_RATE", "ServerTiming", "create_app", "demo_config"]

#: The limit of every demo route.
DEMO_RATE = "10/second"
#: The bucket size of the token and leaky buckets (the same as the limit: equal capacities).
DEMO_BURST = 10
#: The longest leaky-bucket shaping wait; with burst 10 at 10/second no wait exceeds 0.9 s.
DEMO_MAX_DELAY = 2.0


def demo_config(backend: str = "memory://") -> dict[str, Any]:
    """The middleware config of the demo (SPEC §5 shape), with ``backend`` as the backend URL."""
    rules: list[dict[str, Any]] = []
    for algorithm in ALGORITHMS:
        rule: dict[str, Any] = {
            "name": algorithm,
            "path": f"/demo/{algorithm}",
            "limit": DEMO_RATE,
            "algorithm": algorithm,
        }
        if algorithm in ("token_bucket", "leaky_bucket"):
            rule["burst"] = DEMO_BURST
        rules.append(rule)
    return {
        "backend": backend,
        "key": "ip",
        "headers": "ietf",
        "on_error": "deny",  # a backend failure shows as 503s in the demo, not as admissions
        "max_delay": DEMO_MAX_DELAY,
        "rules": rules,
    }


class ServerTiming:
    """ASGI wrapper adding ``Server-Timing: ratelimit;dur=<ms>, arrived;desc="<s>"``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        arrived = time.monotonic()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.monotonic() - arrived) * 1000
                value = b'ratelimit;dur=%.1f, arrived;desc="%.6f"' % (ms, arrived)
                headers = [*message.get("headers", ()), (b"server-timing", value)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, timed_send)


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _index(request: Request) -> Response:
    return JSONResponse(
        {"limit": DEMO_RATE, "routes": [f"/demo/{algorithm}" for algorithm in ALGORITHMS]}
    )


def create_app(backend: str = "memory://", metrics: dict[str, Any] | None = None) -> ASGIApp:
    """The demo ASGI app: routes, the rate-limit middleware on ``backend``, Server-Timing.

    ``metrics``: a ``[metrics]`` table for the middleware (``ratelimit demo`` turns on the
    status page). At lifespan shutdown the backend's asyncio connections (Redis) are closed.
    """
    from ratelimit.asgi import RateLimitMiddleware

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        aclose = getattr(limited.engine.backend, "aclose", None)
        if aclose is not None:
            await aclose()

    routes = [Route("/", _index)]
    routes += [Route(f"/demo/{algorithm}", _ok) for algorithm in ALGORITHMS]
    config = demo_config(backend)
    if metrics:
        config["metrics"] = metrics
    limited = RateLimitMiddleware(Starlette(routes=routes, lifespan=lifespan), config=config)
    return ServerTiming(limited)

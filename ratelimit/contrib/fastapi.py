"""Per-route limits for FastAPI as a dependency: :func:`limit`.

::

    from fastapi import APIRouter, Depends, FastAPI
    from ratelimit.contrib.fastapi import limit

    @app.post("/login", dependencies=[Depends(limit("5/minute"))])
    async def login(form: LoginForm): ...                      # no Request parameter needed

    router = APIRouter(prefix="/api", dependencies=[Depends(limit("100/minute"))])
    # every route of the router (and of the routers included in it) gets its own counter;
    # Depends(limit("1000/hour", name="api", shared=True)): one counter for all of them

Under :class:`ratelimit.asgi.RateLimitMiddleware` the limits use the middleware's engine
(its backend, ``key``, ``headers``, ``on_error`` settings); without it, the engine given by
``config`` / ``backend``, else one shared in-memory engine with the default settings (as
:func:`ratelimit.contrib.starlette.limit`).

The rate-limit headers go on the response through FastAPI's injected ``Response`` (merged
into the response FastAPI builds from the endpoint's return value). A refused request
raises :class:`RequestRefused`, whose handler sends the engine's reply: the 429
``application/problem+json`` body with ``Retry-After`` and the rate-limit headers (or the
403 / 503 of ``deny`` lists and ``on_error = "deny"``). The handler registers itself with
the application the first time a request is refused; registering it yourself
(``app.add_exception_handler(RequestRefused, refused_handler)``) works as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ratelimit.asgi import Scope, request_info
from ratelimit.backends.base import Backend
from ratelimit.contrib._decorator import decorator_rule
from ratelimit.contrib.starlette import EngineSource, reply_response, set_headers
from ratelimit.errors import ConfigError
from ratelimit.http.config import Config
from ratelimit.http.headers import Reply
from ratelimit.http.keys import KeySpec
from ratelimit.http.rules import Rule
from ratelimit.limits import Limit
from ratelimit.rate import Rate

__all__ = ["RequestRefused", "limit", "refused_handler"]

#: Where Starlette's exception middleware leaves its handler tables in the scope: the
#: routes look handlers up there when an endpoint (or a dependency) raises.
_HANDLERS_KEY = "starlette.exception_handlers"
#: The most routes one dependency keeps a rule for (routes, not request paths: bounded).
_MAX_ROUTES = 4096


class RequestRefused(HTTPException):
    """A request refused by a :func:`limit` (429; 403 for a ``deny`` list; 503 when the
    backend fails under ``on_error = "deny"``). ``reply`` is the engine's reply.

    An :class:`~starlette.exceptions.HTTPException`, so that an application where the
    handler is missing still answers with the status and the rate-limit headers."""

    def __init__(self, reply: Reply) -> None:
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reply.headers
            if name not in (b"content-type", b"content-length")
        }
        super().__init__(reply.status, headers=headers)
        self.reply = reply


async def refused_handler(request: Request, exc: Exception) -> Response:
    """The exception handler of :class:`RequestRefused`: the engine's reply, as it is."""
    assert isinstance(exc, RequestRefused)
    return reply_response(exc.reply)


def _register_handler(scope: Scope) -> None:
    """Make :func:`refused_handler` the application's handler of :class:`RequestRefused`,
    unless it has one already."""
    tables = scope.get(_HANDLERS_KEY)
    if tables is not None:
        tables[0].setdefault(RequestRefused, refused_handler)


def limit(
    *rates: str | Rate | Limit,
    name: str | None = None,
    shared: bool = False,
    algorithm: str = "fixed_window",
    burst: int | None = None,
    mode: str | None = None,
    max_delay: float | None = None,
    key: KeySpec | None = None,
    cost: int = 1,
    methods: Sequence[str] | None = None,
    config: Config | Any = None,
    backend: Backend | None = None,
) -> Callable[[Request, Response], Awaitable[None]]:
    """A FastAPI dependency limiting the routes it is attached to.

    Args:
        rates: one or more rates (``"5/minute"``) or :class:`~ratelimit.Limit` objects.
        name: names the counters (and the policy in the headers): per route, the rule is
            ``"<endpoint's dotted name> <name>"``; ``name`` defaults to the limits as text
            (``"app.users.login 5/minute"``).
        shared: one counter for every route the dependency is attached to, named ``name``
            (then required); default: one counter per route (per endpoint function: a
            router included twice shares its routes' counters).
        algorithm, burst, mode, max_delay: as for :class:`~ratelimit.Limit`.
        key: the client identity (default: the engine config's ``key``).
        cost: what one request costs.
        methods: only these methods are limited (default: all).
        config, backend: the engine to use when no middleware provides one.
    """
    if shared and not name:
        raise ConfigError("limit(shared=True) needs a name: it names the shared counters")
    engine_for = EngineSource(config, backend)

    def rule_named(rule_name: str) -> Rule:
        return decorator_rule(
            limit,
            rates,
            name=rule_name,
            algorithm=algorithm,
            burst=burst,
            mode=mode,
            max_delay=max_delay,
            key=key,
            cost=cost,
            methods=methods,
        )

    one = rule_named(name or "limit")  # checks the arguments now, at import time
    base = name or _describe(one.limits)
    per_route: dict[str, Rule] = {}

    def rule_of(scope: Scope) -> Rule:
        """The route's own rule (or the shared one)."""
        if shared:
            return one
        route = scope.get("route")
        endpoint = getattr(route, "endpoint", None) or scope.get("endpoint")
        label = f"{getattr(endpoint, '__module__', '?')}.{getattr(endpoint, '__qualname__', '?')}"
        rule = per_route.get(label)
        if rule is None:
            if len(per_route) >= _MAX_ROUTES:
                per_route.clear()
            rule = per_route[label] = rule_named(f"{label} {base}")
        return rule

    async def ratelimit_dependency(request: Request, response: Response) -> None:
        scope = request.scope
        rule = rule_of(scope)
        if not rule.matches(scope["method"], "/"):
            return
        engine = engine_for(scope)
        outcome = await engine.arun(engine.plan_for_rules((rule,)), request_info(scope))
        if outcome.reply is not None:
            _register_handler(scope)
            raise RequestRefused(outcome.reply)
        if outcome.delay:
            await asyncio.sleep(outcome.delay)
        set_headers(response, outcome.headers)

    return ratelimit_dependency


def _describe(limits: Sequence[Limit]) -> str:
    """``"5/minute"``, ``"10/second token_bucket burst 20"``: what a dependency enforces
    (its default name: unnamed limits of different rates on one route keep apart)."""
    parts = []
    for item in limits:
        text = str(item.rate)
        if item.algorithm != "fixed_window":
            text += f" {item.algorithm}"
        if item.burst is not None:
            text += f" burst {item.burst}"
        parts.append(text)
    return ", ".join(parts)

"""Per-endpoint limits for Starlette and FastAPI: the :func:`limit` decorator.

::

    from ratelimit.contrib.starlette import limit

    @limit("5/minute", methods=["POST"])
    async def login(request): ...                       # Starlette endpoint

    @app.post("/login")
    @limit("5/minute")
    async def login(form: LoginForm): ...               # FastAPI: no Request parameter needed

Under :class:`ratelimit.asgi.RateLimitMiddleware` the decorator uses the middleware's engine
(its backend, key, headers, on_error settings); without it, the engine given by ``config`` /
``backend``, else one shared in-memory engine with the default settings.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ratelimit.asgi import SCOPE_KEY, Scope, request_info
from ratelimit.backends.base import Backend
from ratelimit.contrib._decorator import decorator_rule
from ratelimit.http.config import Config
from ratelimit.http.engine import Engine
from ratelimit.http.headers import HeaderPairs, Reply
from ratelimit.http.keys import KeySpec
from ratelimit.limits import Limit
from ratelimit.rate import Rate

__all__ = ["EngineSource", "limit", "reply_response", "set_headers"]

_REQUEST = "ratelimit_request"
_RESPONSE = "ratelimit_response"
_default: Engine | None = None


def _default_engine() -> Engine:
    global _default
    if _default is None:
        _default = Engine()
    return _default


class EngineSource:
    """Where an endpoint limit finds its engine: the middleware's (left in the scope by
    :class:`ratelimit.asgi.RateLimitMiddleware`), else one of its own built from ``config`` /
    ``backend`` on first use, else the process's shared in-memory engine."""

    def __init__(self, config: Config | Any = None, backend: Backend | None = None) -> None:
        self.config = config
        self.backend = backend
        self._own: Engine | None = None

    def __call__(self, scope: Scope) -> Engine:
        """The engine for a request's ``scope``."""
        engine: Engine | None = scope.get(SCOPE_KEY)
        if engine is not None:
            return engine
        if self.config is None and self.backend is None:
            return _default_engine()
        if self._own is None:
            self._own = Engine(self.config, backend=self.backend)
        return self._own


def set_headers(response: Response, headers: HeaderPairs) -> None:
    """Add the engine's header pairs to a Starlette response."""
    for name, value in headers:
        response.headers.append(name.decode("latin-1"), value.decode("latin-1"))


def reply_response(reply: Reply) -> Response:
    """The Starlette response of an engine's reply (429, 403 or 503), headers as given."""
    response = Response(reply.body, status_code=reply.status)
    del response.headers["content-length"]  # the reply's own (a HEAD reply has no body)
    set_headers(response, reply.headers)
    return response


def limit(
    *rates: str | Rate | Limit,
    name: str | None = None,
    algorithm: str = "fixed_window",
    burst: int | None = None,
    mode: str | None = None,
    max_delay: float | None = None,
    key: KeySpec | None = None,
    cost: int | str = 1,
    methods: Sequence[str] | None = None,
    config: Config | Any = None,
    backend: Backend | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Limit one Starlette or FastAPI endpoint; its counters are its own.

    Args:
        rates: one or more rates (``"5/minute"``) or :class:`~ratelimit.Limit` objects.
        name: the rule name (default: the endpoint's dotted name).
        algorithm, burst, mode, max_delay: as for :class:`~ratelimit.Limit`.
        key: the client identity (default: the engine config's ``key``).
        cost: what one request costs: a whole number, ``"content-length"`` (request body
            bytes; a body without a valid ``Content-Length`` gets 411) or ``"module:callable"``.
        methods: only these methods are limited (default: all).
        config, backend: the engine to use when no middleware provides one.

    FastAPI endpoints keep their signature: the decorator adds hidden ``Request`` and
    ``Response`` parameters, so the endpoint needs no ``request`` argument.
    """

    def decorate(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        rule = decorator_rule(
            endpoint,
            rates,
            name=name,
            algorithm=algorithm,
            burst=burst,
            mode=mode,
            max_delay=max_delay,
            key=key,
            cost=cost,
            methods=methods,
        )
        rules = (rule,)
        engine_for = EngineSource(config, backend)
        names = {"request": _REQUEST, "response": _RESPONSE}
        is_async = inspect.iscoroutinefunction(endpoint)

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            request: HTTPConnection | None = kwargs.pop(_REQUEST, None) or kwargs.get(
                names["request"]
            )
            response_param: Response | None = kwargs.pop(_RESPONSE, None) or kwargs.get(
                names["response"]
            )
            if request is None:
                request = next(
                    a for a in (*args, *kwargs.values()) if isinstance(a, HTTPConnection)
                )
            scope = request.scope
            method = scope["method"] if scope["type"] == "http" else "GET"
            if not rule.matches(method, "/"):
                return await _call(endpoint, is_async, args, kwargs)
            engine = engine_for(scope)
            outcome = await engine.arun(engine.plan_for_rules(rules), request_info(scope))
            if outcome.reply is not None:
                return reply_response(outcome.reply)
            if outcome.delay:
                await asyncio.sleep(outcome.delay)
            result = await _call(endpoint, is_async, args, kwargs)
            if outcome.headers:
                if isinstance(result, Response):
                    set_headers(result, outcome.headers)
                elif response_param is not None:
                    set_headers(response_param, outcome.headers)
            return result

        # FastAPI builds its dependencies from the signature: add hidden Request / Response
        # parameters (keyword-only, so Starlette's positional call ignores them), unless the
        # endpoint has its own (FastAPI fills only one parameter of each kind).
        try:
            signature = inspect.signature(endpoint, eval_str=True)
        except (NameError, SyntaxError, TypeError):  # annotations that only FastAPI may resolve
            signature = inspect.signature(endpoint)
        params = list(signature.parameters.values())
        for param in params:
            if isinstance(param.annotation, type):
                if issubclass(param.annotation, HTTPConnection):
                    names["request"] = param.name
                elif issubclass(param.annotation, Response):
                    names["response"] = param.name
        extra = [
            inspect.Parameter(names[kind], inspect.Parameter.KEYWORD_ONLY, annotation=annotation)
            for kind, annotation in (("request", Request), ("response", Response))
            if names[kind].startswith("ratelimit_")
        ]
        keep = [p for p in params if p.kind != inspect.Parameter.VAR_KEYWORD]
        varkw = [p for p in params if p.kind == inspect.Parameter.VAR_KEYWORD]
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*keep, *extra, *varkw]
        )
        return wrapper

    return decorate


async def _call(endpoint: Callable[..., Any], is_async: bool, args: Any, kwargs: Any) -> Any:
    if is_async:
        return await endpoint(*args, **kwargs)
    return await run_in_threadpool(endpoint, *args, **kwargs)

"""Pure ASGI middleware (not ``BaseHTTPMiddleware``): HTTP and WebSocket; lifespan passes
through, the backend warmed up at its start (connected from the worker's event loop, a
Redis Cluster's slot map read, the scripts loaded) so that the first burst of requests does
not wait on that.

::

    from ratelimit.asgi import RateLimitMiddleware
    app = RateLimitMiddleware(app, config="ratelimit.toml")
    # Starlette / FastAPI: app.add_middleware(RateLimitMiddleware, config="ratelimit.toml")

Rate-limit headers are added once to ``http.response.start`` (so streaming responses get
them too) and to ``websocket.accept``. A rejected WebSocket handshake gets the 429 reply
through the ASGI WebSocket denial response extension when the server offers it, else the
handshake is closed with code 1008 (policy violation). Leaky-bucket shaping waits with
``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ratelimit.backends.base import Backend
from ratelimit.http.config import Config
from ratelimit.http.engine import Engine, Pending, RejectHandler
from ratelimit.http.headers import HeaderPairs, Reply
from ratelimit.http.keys import RequestInfo
from ratelimit.http.policies.charges import attach

__all__ = ["AsgiRequest", "RateLimitMiddleware", "capped_receive"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The scope key under which the middleware leaves its engine (for the endpoint decorators).
SCOPE_KEY = "ratelimit.engine"


class AsgiRequest(RequestInfo):
    """A :class:`RequestInfo` over an ASGI scope."""

    __slots__ = ()

    def header(self, name: str) -> str | None:
        """The header's value (repeated fields joined with ``,``, as one field would carry
        them), decoded as Latin-1."""
        target = name.encode("latin-1")
        values = [v.decode("latin-1") for k, v in self.native["headers"] if k.lower() == target]
        return ",".join(values) if values else None

    def user(self) -> str | None:
        """``scope["user"]`` (Starlette's AuthenticationMiddleware) when authenticated."""
        return user_identity(self.native.get("user"))

    def user_attribute(self, name: str) -> str | None:
        """An attribute of the authenticated ``scope["user"]``."""
        return user_attribute(self.native.get("user"), name)


def user_identity(user: Any) -> str | None:
    """The identity of a Starlette user object, or ``None`` when anonymous."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        ident = user.identity
    except (NotImplementedError, AttributeError):
        ident = getattr(user, "display_name", None)
    return str(ident) if ident else None


def route_path(scope: Scope) -> str:
    """The path the application routes on: ``scope["path"]`` below ``root_path``.

    ASGI servers put the mount point in both (``uvicorn --root-path /prefix``; a Starlette
    ``Mount("/v1", app=...)`` hands its sub-app ``root_path="/v1"`` and the full path), and
    routers match what is left, so rules must too.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root):
        rest = path[len(root) :]
        if not rest:
            return "/"
        if rest[0] == "/":
            return rest
    return path


def user_attribute(user: Any, name: str) -> str | None:
    """Attribute ``name`` of an authenticated user object as text, else ``None``."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    value = getattr(user, name, None)
    return None if value is None else str(value)


def request_info(scope: Scope, path: str | None = None) -> AsgiRequest:
    """The engine's view of an HTTP or WebSocket scope (``path``: its :func:`route_path`,
    when the caller has it already)."""
    client = scope.get("client")
    method = scope["method"].upper() if scope["type"] == "http" else "GET"
    if path is None:
        path = route_path(scope)
    return AsgiRequest(method, path, client[0] if client else None, scope)


class RateLimitMiddleware:
    """Rate-limit an ASGI application.

    Args:
        app: the ASGI application to wrap.
        config: a TOML path, a dict of the same shape or a :class:`~ratelimit.Config`.
        backend: a ready backend object instead of ``config.backend`` (for tests, or to
            share one backend between apps).
        on_reject: ``(request, decision) -> Reply`` replacing the 429 problem+json reply.
        engine: a ready :class:`~ratelimit.http.engine.Engine` (overrides the others).
    """

    #: How shaping waits (replaceable in tests).
    sleep: Callable[[float], Awaitable[Any]] = staticmethod(asyncio.sleep)

    def __init__(
        self,
        app: ASGIApp,
        config: Config | Any = None,
        *,
        backend: Backend | None = None,
        on_reject: RejectHandler | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.app = app
        self.engine = engine or Engine(config, backend=backend, on_reject=on_reject)

    def _warming(self, receive: Receive) -> Receive:
        """``receive`` of a lifespan scope, warming the backend up before the application
        sees ``lifespan.startup`` (a backend that cannot work, such as a server without Lua
        scripting, then fails the start-up; one that does not answer yet does not), and
        giving its unused shares back before it sees ``lifespan.shutdown``."""
        engine = self.engine

        async def receive_warm() -> Message:
            message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                await engine.awarm()
            elif kind == "lifespan.shutdown":
                await engine.aend_shares()
            return message

        return receive_warm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            if kind == "lifespan":
                receive = self._warming(receive)
            await self.app(scope, receive, send)  # lifespan and anything else: passed on
            return
        engine = self.engine
        scope[SCOPE_KEY] = engine
        path = route_path(scope)
        status = engine.status
        if status is not None and path == status.path and kind == "http":
            from ratelimit.metrics.status import asgi_reply  # never rate limited itself

            await send_reply(send, await asgi_reply(status, scope))
            return
        plan = engine.plan(scope["method"] if kind == "http" else "GET", path)
        if plan is None:
            await self.app(scope, receive, send)
            return
        outcome = await engine.arun(plan, request_info(scope, path))
        if outcome.reply is not None:
            if kind == "http":
                await send_reply(send, outcome.reply)
            else:
                await deny_websocket(scope, receive, send, outcome.reply)
            return
        if outcome.delay:
            await self.sleep(outcome.delay)
        if outcome.body_limit is not None and kind == "http":
            receive = capped_receive(receive, outcome.body_limit)
        extra = outcome.headers
        start = "http.response.start" if kind == "http" else "websocket.accept"
        pending = outcome.pending
        if pending is not None:
            if pending.charges is not None:  # for ratelimit.charge(request, n)
                attach(scope, pending.charges)
            await _settling(self.app, engine, pending, scope, receive, send, start, extra)
            return
        if not extra:
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _adding_headers(send, start, extra))


async def _settling(
    app: ASGIApp,
    engine: Engine,
    pending: Pending,
    scope: Scope,
    receive: Receive,
    send: Send,
    start: str,
    extra: HeaderPairs,
) -> None:
    """Call ``app``, then settle ``pending`` with the response status and headers — however
    the response ends: sent, the client gone (the app returns or is cancelled) or the app
    raising (counted as a 500). The settling is shielded, so a cancelled request still gives
    its lease back and lands its charge."""
    status = 500
    headers: Any = ()
    sent = _adding_headers(send, start, extra)

    async def send_noting_status(message: Message) -> None:
        nonlocal status, headers
        kind = message["type"]
        if kind == "http.response.start":
            status = message["status"]
            headers = message.get("headers", ())
            if not isinstance(headers, list | tuple):  # an iterator: read once, for both
                headers = list(headers)
                message = {**message, "headers": headers}
        elif kind == "websocket.accept":
            status = 101
        await sent(message)

    try:
        await app(scope, receive, send_noting_status)
    finally:
        await asyncio.shield(engine.asettle(pending, status, headers))


def capped_receive(receive: Receive, limit: int) -> Receive:
    """``receive``, giving the application at most ``limit`` request body bytes: the
    declared ``Content-Length`` a byte quota charged (0 when the request declared none, such
    as an HTTP/2 request without the header). A body message that would go past it is not
    passed on: the application gets ``http.disconnect`` instead, then and on every later call,
    as if the client had gone (a truncated body presented as complete would be worse)."""
    left = limit
    cut = False

    async def receive_capped() -> Message:
        nonlocal left, cut
        if cut:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            size = len(message.get("body", b""))
            if size > left:
                cut = True
                return {"type": "http.disconnect"}
            left -= size
        return message

    return receive_capped


def _adding_headers(send: Send, start: str, extra: HeaderPairs) -> Send:
    """``send``, adding ``extra`` to the first ``start`` message (exactly once)."""
    pending = True

    async def send_with_headers(message: Message) -> None:
        nonlocal pending
        if pending and message["type"] == start:
            pending = False
            message = dict(message)  # the app's dict is not ours to change
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return send_with_headers


async def send_reply(send: Send, reply: Reply) -> None:
    """Send a complete HTTP response."""
    await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
    await send({"type": "http.response.body", "body": reply.body})


async def deny_websocket(scope: Scope, receive: Receive, send: Send, reply: Reply) -> None:
    """Refuse a WebSocket handshake: the HTTP reply if the server can send one, else 1008."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client went away
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": reply.status,
                "headers": reply.headers,
            }
        )
        await send({"type": "websocket.http.response.body", "body": reply.body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": "rate limited"})

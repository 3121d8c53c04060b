"""PEP 3333 WSGI middleware (Flask, Django under WSGI, any WSGI app).

::

    from ratelimit.wsgi import RateLimitMiddleware
    app.wsgi_app = RateLimitMiddleware(app.wsgi_app, config="ratelimit.toml")   # Flask

The application's iterable is returned as is, so the server closes it (PEP 3333).
Leaky-bucket shaping waits with ``time.sleep`` in the worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any

from ratelimit.backends.base import Backend
from ratelimit.http.config import Config
from ratelimit.http.engine import Engine, RejectHandler
from ratelimit.http.headers import HeaderPairs
from ratelimit.http.keys import RequestInfo
from ratelimit.http.policies.charges import attach

__all__ = [
    "LimitedInput",
    "RateLimitMiddleware",
    "Settling",
    "WsgiRequest",
    "status_line",
    "str_headers",
]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


#: The request headers a WSGI environ carries without the ``HTTP_`` prefix.
_UNPREFIXED = frozenset({"CONTENT_LENGTH", "CONTENT_TYPE"})


class WsgiRequest(RequestInfo):
    """A :class:`RequestInfo` over a WSGI environ."""

    __slots__ = ()

    def header(self, name: str) -> str | None:
        """``HTTP_<NAME>`` from the environ (the server already joined repeated fields);
        ``CONTENT_LENGTH`` and ``CONTENT_TYPE``, which PEP 3333 keeps without the prefix."""
        var = name.upper().replace("-", "_")
        if var not in _UNPREFIXED:
            var = "HTTP_" + var
        value: str | None = self.native.get(var) or None
        return value

    def user(self) -> str | None:
        """``REMOTE_USER``, set by the server or an authentication middleware."""
        value: str | None = self.native.get("REMOTE_USER") or None
        return value


def wsgi_path(environ: Environ) -> str:
    """``PATH_INFO`` as text (PEP 3333 hands it over as Latin-1-decoded bytes)."""
    path: str = environ.get("PATH_INFO") or "/"
    if not path.isascii():
        path = path.encode("latin-1", "replace").decode("utf-8", "replace")
    return path


def status_line(status: int) -> str:
    """``"429 Too Many Requests"``."""
    return f"{status} {HTTPStatus(status).phrase}"


def str_headers(headers: HeaderPairs) -> list[tuple[str, str]]:
    """The engine's byte headers as WSGI's native strings."""
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]


class RateLimitMiddleware:
    """Rate-limit a WSGI application.

    Args:
        app: the WSGI application to wrap.
        config: a TOML path, a dict of the same shape or a :class:`~ratelimit.Config`.
        backend: a ready backend object instead of ``config.backend``.
        on_reject: ``(request, decision) -> Reply`` replacing the 429 problem+json reply.
        engine: a ready :class:`~ratelimit.http.engine.Engine` (overrides the others).
    """

    #: How shaping waits (replaceable in tests).
    sleep: Callable[[float], Any] = staticmethod(time.sleep)

    def __init__(
        self,
        app: WSGIApp,
        config: Config | Any = None,
        *,
        backend: Backend | None = None,
        on_reject: RejectHandler | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.app = app
        self.engine = engine or Engine(config, backend=backend, on_reject=on_reject)
        self.engine.require_sync("the WSGI middleware")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        engine = self.engine
        method = environ["REQUEST_METHOD"].upper()
        path = wsgi_path(environ)  # PATH_INFO: already below the mount point (SCRIPT_NAME)
        status = engine.status
        if status is not None and path == status.path:
            from ratelimit.metrics.status import wsgi_reply  # never rate limited itself

            page = wsgi_reply(status, environ)
            start_response(status_line(page.status), str_headers(page.headers))
            return [page.body]
        plan = engine.plan(method, path)
        if plan is None:
            return self.app(environ, start_response)
        request = WsgiRequest(method, path, environ.get("REMOTE_ADDR"), environ)
        outcome = engine.run(plan, request)
        reply = outcome.reply
        if reply is not None:
            start_response(status_line(reply.status), str_headers(reply.headers))
            return [reply.body]
        if outcome.delay:
            self.sleep(outcome.delay)
        if outcome.body_limit is not None:
            environ["wsgi.input"] = LimitedInput(environ["wsgi.input"], outcome.body_limit)
        pending = outcome.pending
        if not outcome.headers and pending is None:
            return self.app(environ, start_response)
        extra = str_headers(outcome.headers)
        seen: list[Any] = [500, ()]  # the status and headers the app answered

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            seen[:] = int(status.split(None, 1)[0]), headers
            return start_response(status, [*headers, *extra], exc_info)

        if pending is None:
            return self.app(environ, start_with_headers)
        if pending.charges is not None:  # for ratelimit.charge(request, n)
            attach(environ, pending.charges)
        try:
            body = self.app(environ, start_with_headers)
        except BaseException:
            engine.settle(pending, 500)
            raise
        return Settling(body, lambda: engine.settle(pending, seen[0], seen[1]))


class LimitedInput:
    """``wsgi.input`` giving at most ``limit`` bytes: the ``CONTENT_LENGTH`` a byte quota
    charged (PEP 3333: an application should not read past it; this makes sure it cannot,
    whatever the server passes on). Past the limit every read returns ``b""`` (end of body).
    """

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def _size(self, size: int | None) -> int:
        if size is None or size < 0 or size > self._left:
            return self._left
        return size

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left of the limit when ``size`` is -1)."""
        size = self._size(size)
        if size == 0:
            return b""
        data: bytes = self._stream.read(size)
        self._left -= len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        """One line, never past the limit."""
        size = self._size(size)
        if size == 0:
            return b""
        data: bytes = self._stream.readline(size)
        self._left -= len(data)
        return data

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        """The lines left within the limit."""
        return list(self)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class Settling:
    """The application's response iterable, settling the request (the ``count`` of a
    policy, a concurrency lease, a charge) when the server closes it — after the last byte was sent,
    or the client went away (PEP 3333: the server always calls ``close()``)."""

    def __init__(self, body: Iterable[bytes], settle: Callable[[], None]) -> None:
        self._body = body
        self._settle: Callable[[], None] | None = settle

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        """Close the application's iterable, then settle (once)."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            settle, self._settle = self._settle, None
            if settle is not None:
                settle()

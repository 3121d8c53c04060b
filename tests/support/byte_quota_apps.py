"""Applications behind a byte quota (``cost = "content-length"``) for the chunked-body tests.

Every application reads the whole request body it is given and answers ``read=<bytes>``,
so a test adds up, from the responses, how many body bytes reached the application. Served
by real servers: the ASGI ones in a uvicorn thread, the WSGI ones by waitress or, as a user
would run them, ``gunicorn tests.support.byte_quota_apps:wsgi_app``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware as AsgiMiddleware
from ratelimit.wsgi import RateLimitMiddleware as WsgiMiddleware

#: 1,000 request body bytes per client and hour, on a sliding window (no window edge).
BYTES_RULE = {
    "name": "bytes",
    "path": "/upload",
    "limit": "1000/hour",
    "algorithm": "sliding_window",
    "cost": "content-length",
}
CONFIG = {"rules": [BYTES_RULE]}


async def asgi_inner(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that reads the body until it ends or the client is gone, and answers how
    many bytes it was given."""
    if scope["type"] != "http":
        return
    read = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"read=%d" % read
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_inner(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """A WSGI app that reads ``wsgi.input`` to its end (PEP 3333: ``CONTENT_LENGTH`` bytes,
    or to the end when the server marks the input terminated) and answers how many it read."""
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated") or environ.get("CONTENT_LENGTH"):
        read = 0
        while chunk := stream.read(65536):
            read += len(chunk)
    else:
        read = 0
    body = b"read=%d" % read
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def asgi_app() -> AsgiMiddleware:
    """A fresh ASGI stack (its own memory backend)."""
    return AsgiMiddleware(asgi_inner, CONFIG, backend=MemoryBackend())


def make_wsgi_app() -> WsgiMiddleware:
    """A fresh WSGI stack (its own memory backend)."""
    return WsgiMiddleware(wsgi_inner, CONFIG, backend=MemoryBackend())


#: The WSGI stack gunicorn serves (one per worker process).
wsgi_app = make_wsgi_app()


def starlette_app() -> Any:
    """A Starlette app whose endpoint carries the byte quota as a decorator."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ratelimit.contrib.starlette import limit

    @limit("1000/hour", algorithm="sliding_window", cost="content-length", name="bytes")
    async def upload(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"read={len(await request.body())}")

    return Starlette(routes=[Route("/upload", upload, methods=["POST"])])


def flask_app() -> Any:
    """A Flask app whose view carries the byte quota as ``@limit`` (under the extension)."""
    from flask import Flask, request

    from ratelimit.contrib.flask import RateLimit, limit

    app = Flask("byte_quota")
    RateLimit(app, config={"rules": []}, backend=MemoryBackend())

    @app.post("/upload")
    @limit("1000/hour", algorithm="sliding_window", cost="content-length", name="bytes")
    def upload() -> str:
        return f"read={len(request.get_data())}"

    return app


#: The Flask app gunicorn serves (``tests.support.byte_quota_apps:flask_wsgi``).
flask_wsgi = flask_app()

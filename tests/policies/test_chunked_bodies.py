"""Byte quotas (``cost = "content-length"``) and bodies without a valid ``Content-Length``,
through real servers with raw sockets: five chunked POSTs of 600 bytes against a quota of
1,000 bytes never get more than 1,000 bytes to the application.

Servers that pass the chunked framing on (uvicorn with h11 or httptools, gunicorn's sync
worker) get a 411 from every adapter — the ASGI and WSGI middlewares, Django under WSGI and
ASGI, the Starlette and Flask decorators; waitress buffers a chunked body and sets
``CONTENT_LENGTH`` itself, so there the real length is charged and the quota holds with 429s.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

import pytest

from ratelimit import MemoryBackend
from ratelimit.asgi import RateLimitMiddleware as AsgiMiddleware
from ratelimit.asgi import capped_receive
from ratelimit.wsgi import LimitedInput
from tests.support.byte_quota_apps import asgi_app, asgi_inner, make_wsgi_app, starlette_app
from tests.support.servers import server_process, uvicorn_server, wsgi_server

QUOTA = 1000
BODY = b"x" * 600
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def raw_post(url: str, head: bytes, body: bytes) -> tuple[int, bytes]:
    """Send ``POST /upload`` with the extra header lines ``head`` and the already framed
    ``body`` on a fresh connection; return the status and the response body."""
    parts = urlsplit(url)
    request = b"POST /upload HTTP/1.1\r\nHost: %b\r\nConnection: close\r\n%b\r\n%b" % (
        parts.netloc.encode(),
        head,
        body,
    )
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # the server refused without reading the rest: what it sent is complete
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), received[:200]
    head_part, _, content = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head_part.lower():
        content = dechunk(content)
    return int(status_line.split()[1]), content


def dechunk(data: bytes) -> bytes:
    """The payload of a chunked response body."""
    out = b""
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, data = out + data[:size], data[size + 2 :]
    return out


def chunked(body: bytes) -> bytes:
    """``body`` as two chunks and the last chunk."""
    half = len(body) // 2
    return b"%x\r\n%b\r\n%x\r\n%b\r\n0\r\n\r\n" % (half, body[:half], len(body) - half, body[half:])


def five_chunked_uploads(url: str) -> tuple[list[int], int]:
    """Five chunked 600-byte POSTs: their statuses, and the body bytes the app was given."""
    statuses, admitted = [], 0
    for _ in range(5):
        status, content = raw_post(url, b"Transfer-Encoding: chunked\r\n", chunked(BODY))
        statuses.append(status)
        if status == 200:
            assert content.startswith(b"read="), content
            admitted += int(content[5:])
        elif status == 411:
            assert b'"status":411' in content and b"Length Required" in content
    return statuses, admitted


def declared_upload(url: str) -> int:
    """One 600-byte POST with a Content-Length: its status."""
    return raw_post(url, b"Content-Length: 600\r\n", BODY)[0]


def env() -> dict[str, str]:
    """The environment of a server subprocess: this worktree's code first."""
    return {"PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}


def _uvicorn(http: str) -> AbstractContextManager[str]:
    return uvicorn_server(asgi_app(), http=http)


def _gunicorn(target: str) -> AbstractContextManager[str]:
    command = [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync"]
    return server_process([*command, "-b", "127.0.0.1:{port}", target], cwd=ROOT, env=env())


def _uvicorn_process(target: str) -> AbstractContextManager[str]:
    command = [sys.executable, "-m", "uvicorn", target, "--port", "{port}", "--http", "h11"]
    return server_process([*command, "--log-level", "warning"], cwd=ROOT, env=env())


REFUSING_SERVERS = {
    "uvicorn-h11": lambda: _uvicorn("h11"),
    "starlette-decorator-uvicorn": lambda: uvicorn_server(starlette_app(), http="h11"),
    "flask-decorator-gunicorn": lambda: _gunicorn("tests.support.byte_quota_apps:flask_wsgi"),
    "uvicorn-httptools": lambda: _uvicorn("httptools"),
    "gunicorn-sync": lambda: _gunicorn("tests.support.byte_quota_apps:wsgi_app"),
    "django-gunicorn": lambda: _gunicorn("tests.support.byte_quota_django:application"),
    "django-asgi-uvicorn": lambda: _uvicorn_process(
        "tests.support.byte_quota_django:asgi_application"
    ),
}


@pytest.mark.parametrize("server", sorted(REFUSING_SERVERS))
def test_chunked_uploads_get_411_and_nothing_through(server: str) -> None:
    """Behind servers that pass chunked framing on, every chunked upload to a byte quota is
    refused with 411 before the app reads a byte, and the quota is still whole afterwards."""
    with REFUSING_SERVERS[server]() as url:
        statuses, admitted = five_chunked_uploads(url)
        after = declared_upload(url)
    assert statuses == [411] * 5
    assert admitted == 0 <= QUOTA
    assert after == 200  # the refusals cost nothing


def test_waitress_charges_the_buffered_length() -> None:
    """waitress buffers a chunked body and sets CONTENT_LENGTH: the real 600 bytes are
    charged, so one upload gets through and the other four are refused with 429."""
    with wsgi_server(make_wsgi_app()) as url:
        statuses, admitted = five_chunked_uploads(url)
    assert statuses == [200, 429, 429, 429, 429]
    assert admitted == 600 <= QUOTA


def test_a_declared_body_is_counted_through_uvicorn() -> None:
    """The control: 600-byte uploads with a Content-Length are counted, so the second one
    is over the 1,000-byte quota."""
    with _uvicorn("h11") as url:
        statuses = [declared_upload(url) for _ in range(3)]
    assert statuses == [200, 429, 429]


# -- the adapters cut the body at the charged length ------------------------------------------


def _messages(*bodies: bytes) -> Iterator[dict[str, Any]]:
    for i, body in enumerate(bodies):
        yield {"type": "http.request", "body": body, "more_body": i < len(bodies) - 1}


def test_capped_receive_stops_at_the_limit() -> None:
    """capped_receive passes body messages while they fit, then answers http.disconnect
    (and keeps doing so) instead of a message that would go past the limit."""
    import asyncio

    source = _messages(b"a" * 400, b"b" * 400, b"c" * 400)

    async def receive() -> dict[str, Any]:
        return next(source)

    async def scenario() -> list[dict[str, Any]]:
        capped = capped_receive(receive, 1000)
        return [await capped() for _ in range(4)]

    got = asyncio.run(scenario())
    assert [m["type"] for m in got] == ["http.request"] * 2 + ["http.disconnect"] * 2
    assert sum(len(m.get("body", b"")) for m in got) == 800


def test_asgi_body_without_content_length_reaches_the_app_as_nothing() -> None:
    """A request that declares no length (as HTTP/2 may) but sends a body anyway costs 0 and
    its app gets no body byte: the middleware cuts it at the 0 bytes charged."""
    import asyncio

    app = AsgiMiddleware(asgi_inner, {"rules": [_rule()]}, backend=MemoryBackend())
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/upload",
        "headers": [],
        "client": ("192.0.2.1", 1),
        "http_version": "2",
    }
    source = _messages(BODY, BODY)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(source)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"read=0"


def test_limited_input_reads_at_most_the_limit() -> None:
    """LimitedInput gives read, readline and iteration no byte past its limit."""
    import io

    stream = LimitedInput(io.BytesIO(b"line one\nline two\nline three\n"), 13)
    assert stream.readline() == b"line one\n"
    assert stream.read() == b"line"
    assert stream.read(5) == b"" and stream.readline() == b""
    lines = list(LimitedInput(io.BytesIO(b"ab\ncd\nef\n"), 5))
    assert lines == [b"ab\n", b"cd"]


def _rule() -> dict[str, Any]:
    from tests.support.byte_quota_apps import BYTES_RULE

    return dict(BYTES_RULE)

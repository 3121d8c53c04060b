"""The load generator's HTTP/1.1 client against a real uvicorn server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ratelimit.cli.http1 import Client
from tests.support.servers import uvicorn_server


async def _chunks() -> AsyncIterator[bytes]:
    for part in (b"a" * 10, b"b" * 5000, b"c"):
        yield part


async def _stream(request: Request) -> Response:
    return StreamingResponse(_chunks(), headers={"X-Kind": "chunked"})


async def _close(request: Request) -> Response:
    return PlainTextResponse("bye", headers={"Connection": "close"})


async def _echo(request: Request) -> Response:
    return PlainTextResponse(
        "x" * 100,
        status_code=201,
        headers={"X-Method": request.method, "X-Token": request.headers.get("x-token", "")},
    )


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A uvicorn server with a chunked, a closing and an echoing route."""
    app = Starlette(
        routes=[
            Route("/stream", _stream),
            Route("/close", _close),
            Route("/echo", _echo, methods=["GET", "POST", "HEAD"]),
        ]
    )
    with uvicorn_server(app) as url:
        yield url


async def test_reads_chunked_bodies_and_reuses_the_connection(server: str) -> None:
    """A chunked body is read to its end, so the next request on the connection works."""
    client = Client(server)
    try:
        for _ in range(3):
            response = await client.request("/stream")
            assert response.status == 200
            assert response.headers["x-kind"] == "chunked"
        assert len(client._idle) == 1  # one connection, reused
    finally:
        client.close()


async def test_connection_close_is_honoured(server: str) -> None:
    """A ``Connection: close`` response is not reused; the next request opens a new one."""
    client = Client(server)
    try:
        assert (await client.request("/close")).status == 200
        assert client._idle == []
        assert (await client.request("/close")).status == 200
    finally:
        client.close()


async def test_method_headers_and_head(server: str) -> None:
    """The method and extra headers are sent; a HEAD response has no body to wait for."""
    for method in ("POST", "HEAD", "GET"):
        client = Client(server, method, [("X-Token", "t1")])
        try:
            response = await client.request("/echo")
            assert response.status == 201
            assert response.headers["x-method"] == method
            assert response.headers["x-token"] == "t1"
            assert (await client.request("/echo")).status == 201
        finally:
            client.close()


async def test_a_connection_closed_by_the_server_is_replaced() -> None:
    """When the server closed an idle keep-alive connection, the request is sent again on a
    new one (and only then: nothing of an answer had arrived)."""
    connections = 0

    async def one_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # keep-alive promised (HTTP/1.1), but the server closes anyway

    server = await asyncio.start_server(one_answer_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Client(f"http://127.0.0.1:{port}")
    try:
        assert (await client.request("/")).status == 200
        assert len(client._idle) == 1
        assert (await client.request("/")).status == 200
        assert connections == 2
    finally:
        client.close()
        server.close()
        await server.wait_closed()

"""The load generator's HTTP side (aiohttp) against a real uvicorn server and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from yarl import URL

from ratelimit.cli.loadgen import DROPPED, ERROR, Sample, Stream, _send, _session, run_streams
from tests.support.servers import free_port, uvicorn_server

PEERS: list[int] = []


async def _chunks() -> AsyncIterator[bytes]:
    for part in (b"a" * 10, b"b" * 5000, b"c"):
        yield part


async def _stream(request: Request) -> Response:
    assert request.client is not None
    PEERS.append(request.client.port)
    return StreamingResponse(_chunks(), headers={"RateLimit": '"s";r=1;t=1'})


async def _close(request: Request) -> Response:
    return PlainTextResponse("bye", headers={"Connection": "close", "RateLimit": "closed"})


async def _echo(request: Request) -> Response:
    seen = (
        f"{request.method} token={request.headers.get('x-token')} "
        f"length={request.headers.get('content-length')} ua={request.headers.get('user-agent')}"
    )
    response = PlainTextResponse("x" * 100, status_code=201, headers={"RateLimit": seen})
    response.headers.append("RateLimit-Policy", '"a";q=1;w=1')
    response.headers.append("RateLimit-Policy", '"b";q=2;w=1')
    return response


async def _redirect(request: Request) -> Response:
    return RedirectResponse("/echo", status_code=302, headers={"Retry-After": "7"})


async def _slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return PlainTextResponse("late")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A uvicorn server with chunked, closing, echoing, redirecting and slow routes."""
    app = Starlette(
        routes=[
            Route("/stream", _stream),
            Route("/close", _close),
            Route("/echo", _echo, methods=["GET", "POST", "HEAD"]),
            Route("/redirect", _redirect),
            Route("/slow", _slow),
        ]
    )
    with uvicorn_server(app) as url:
        yield url


async def run(
    url: str,
    count: int = 3,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> list[Sample]:
    """``count`` requests one after the other on one client (one keep-alive connection at a
    time), each sent as the generator sends it: no schedule, so none is ever dropped, however
    slow the machine."""
    loop = asyncio.get_running_loop()
    session = _session(1, headers, timeout)
    stream = Stream(url, [0.0] * count, 1)
    try:
        for _ in range(count):
            sample = Sample(due=0.0)
            stream.samples.append(sample)
            stream.in_flight += 1
            await _send(session, URL(url), method, stream, sample, loop.time())
    finally:
        await session.close()
    assert stream.in_flight == 0
    return stream.samples


async def test_the_schedule_is_open_loop(server: str) -> None:
    """Requests due at once go out at once, one per free slot; one due while every slot is
    busy is dropped, not queued."""
    enough = Stream(server + "/echo", [0.0] * 3, 3)
    short = Stream(server + "/slow", [0.0] * 2, 1)
    await run_streams([enough, short])
    assert [s.status for s in enough.samples] == [201] * 3
    assert sorted(s.status for s in short.samples) == [DROPPED, 200]


async def test_bodies_are_read_and_connections_reused(server: str) -> None:
    """Chunked bodies are read to their end and the keep-alive connection is reused."""
    PEERS.clear()
    samples = await run(server + "/stream", count=4)
    assert [s.status for s in samples] == [200] * 4
    assert samples[0].ratelimit == '"s";r=1;t=1'
    assert len(set(PEERS)) == 1  # one connection for the four requests
    assert all(s.latency > 0 and s.sent >= s.due for s in samples)


async def test_connection_close_is_honoured(server: str) -> None:
    """A ``Connection: close`` answer is not reused: every request still gets its answer."""
    samples = await run(server + "/close", count=3)
    assert [(s.status, s.ratelimit) for s in samples] == [(200, "closed")] * 3


async def test_method_headers_and_repeated_fields(server: str) -> None:
    """The method and extra headers are sent (POST with Content-Length: 0); repeated response
    fields are joined like one field; HEAD works."""
    for method, length in (("POST", "0"), ("GET", "None"), ("HEAD", "None")):
        samples = await run(server + "/echo", count=2, method=method, headers=[("X-Token", "t1")])
        assert [s.status for s in samples] == [201, 201]
        assert samples[0].ratelimit == f"{method} token=t1 length={length} ua=ratelimit-loadtest"
        assert samples[0].policy == '"a";q=1;w=1, "b";q=2;w=1'
    (sample,) = await run(server + "/echo", count=1, headers=[("user-agent", "mine")])
    assert sample.ratelimit is not None and sample.ratelimit.endswith("ua=mine")


async def test_redirects_are_reported_not_followed(server: str) -> None:
    """A 302 is what the server answered: the generator does not follow it."""
    (sample,) = await run(server + "/redirect", count=1)
    assert sample.status == 302 and sample.retry_after == "7"


async def test_errors_are_recorded_by_kind(server: str) -> None:
    """No server: "connection refused"; an answer slower than the timeout: "timeout"."""
    refused = await run(f"http://127.0.0.1:{free_port()}/", count=2)
    assert [(s.status, s.error) for s in refused] == [(ERROR, "connection refused")] * 2
    (slow,) = await run(server + "/slow", count=1, timeout=0.2)
    assert (slow.status, slow.error) == (ERROR, "timeout")
    assert slow.latency >= 0.2


@pytest.mark.parametrize("when", ["after its answer", "when the next request arrives"])
async def test_a_connection_closed_by_the_server_is_replaced(when: str) -> None:
    """A server that closes a keep-alive connection after one answer: the next request goes
    out on a new connection and is answered — also when the close only comes once that
    request was sent on the old connection (the race every keep-alive client meets; the
    request is idempotent, so it is sent again on a new connection)."""
    handlers: list[asyncio.Task[None]] = []

    async def one_answer_then_close(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
            if when == "when the next request arrives":
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                    await reader.readuntil(b"\r\n\r\n")  # read, never answered
        finally:
            writer.close()  # keep-alive promised (HTTP/1.1), but the server closes anyway
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    server = await asyncio.start_server(one_answer_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        samples = await run(f"http://127.0.0.1:{port}/", count=3)
    finally:
        server.close()
        await server.wait_closed()
        # every connection's handler ends here (the client has closed its side), so no
        # socket is left for the garbage collector to find after the loop has closed
        await asyncio.gather(*handlers)
    assert [(s.status, s.error) for s in samples] == [(200, None)] * 3
    assert len(handlers) == 3  # three connections: each closed one was replaced

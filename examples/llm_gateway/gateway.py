"""An AI API gateway: a FastAPI proxy that rations requests *and tokens* per API key.

Every client sends its key as ``Authorization: Bearer <key>``. ``ratelimit.toml`` (next to
this file) gives each key 60 requests and 20,000 tokens a minute. How many tokens a request
costs is known only at the end of its answer, in the ``usage`` of the model's last event; so
the ``tokens`` rule reserves 500 when the request arrives (``cost``), and the gateway reports
the real count with ``ratelimit.charge(request, n)`` (``charge = "application"``): the
middleware charges the difference, or gives it back, in one atomic step.

Run it from the repository root, beside the stub model server::

    uvicorn examples.llm_gateway.model_server:app --port 8001
    uvicorn examples.llm_gateway.gateway:app --port 8000

Environment: ``MODEL_SERVER_URL`` (default ``http://127.0.0.1:8001``), ``GATEWAY_API_KEYS``
(the keys served, comma-separated; default the demo keys of the locust scenario), and
``GATEWAY_BACKEND`` to replace the config's ``backend`` (``redis://localhost:6379/0`` when
several gateway workers must share the budgets).

Budgets belong to *valid* keys only: the rules' key is :func:`client_of`, which names a
request by its API key when the gateway knows that key, and by its address otherwise — and
the gateway refuses an unknown key with 401. A client that makes up keys therefore never
gets a fresh budget: all its attempts count against its address.

The answer is relayed chunk by chunk as it streams. The upstream stream is read by a task of
its own, not by the response: a client that hangs up mid-answer stops receiving, but the
gateway still reads the answer to its end, learns its usage and charges it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

import ratelimit
from ratelimit.asgi import RateLimitMiddleware
from ratelimit.http.keys import RequestInfo

__all__ = ["API_KEYS", "CONFIG", "api_key", "app", "client_of", "usage_of"]

CONFIG = Path(__file__).with_name("ratelimit.toml")
UPSTREAM = os.environ.get("MODEL_SERVER_URL", "http://127.0.0.1:8001")
#: The API keys this gateway serves (a real one would look them up in its key store).
API_KEYS = frozenset(
    key.strip()
    for key in os.environ.get(
        "GATEWAY_API_KEYS", "sk-light,sk-steady,sk-heavy,sk-bursty,sk-demo"
    ).split(",")
    if key.strip()
)

log = logging.getLogger("llm_gateway")

#: The relays in flight: kept referenced (asyncio holds tasks weakly) and awaited at shutdown,
#: so that no usage goes uncharged when the server stops.
_relays: set[asyncio.Task[None]] = set()


def rate_limit_config() -> Path | dict[str, Any]:
    """``ratelimit.toml``, with its ``backend`` replaced by ``$GATEWAY_BACKEND`` if set."""
    backend = os.environ.get("GATEWAY_BACKEND")
    if not backend:
        return CONFIG
    with CONFIG.open("rb") as file:
        config = tomllib.load(file)
    config["backend"] = backend
    return config


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    timeout = httpx.Timeout(120.0, connect=5.0)
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(base_url=UPSTREAM, timeout=timeout, limits=limits) as client:
        app.state.upstream = client
        yield
        if _relays:  # answers still streaming: read them to the end and charge them
            await asyncio.gather(*_relays, return_exceptions=True)


def api_key(authorization: str | None) -> str | None:
    """The API key of an ``Authorization: Bearer <key>`` header, if the gateway serves it."""
    if authorization is None or not authorization.startswith("Bearer "):
        return None
    key = authorization[7:].strip()
    return key if key in API_KEYS else None


def client_of(request: RequestInfo) -> str:
    """Who pays for a request (the rules' ``key``): its API key when the gateway knows it,
    else its address — a made-up key buys no budget of its own."""
    key = api_key(request.header("authorization"))
    return f"key:{key}" if key is not None else f"addr:{request.peer}"


def usage_of(event: bytes) -> int | None:
    """``usage.total_tokens`` of one server-sent event's data, if it has one."""
    for line in event.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data.startswith(b"{"):
            continue  # "[DONE]"
        try:
            usage = json.loads(data).get("usage")
        except (ValueError, AttributeError):
            return None
        if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
            total: int = usage["total_tokens"]
            return total
    return None


async def _relay(
    request: Request,
    upstream: httpx.Response,
    chunks: asyncio.Queue[bytes | None],
    client_gone: asyncio.Event,
) -> None:
    """Read the upstream answer to its end, whatever the client does: hand each event to the
    response (while the client listens), charge the usage as soon as the last event shows
    it, before that event is passed on."""
    charged = False
    buffer = b""
    try:
        async for data in upstream.aiter_bytes():
            buffer = (buffer + data).replace(b"\r\n", b"\n")  # SSE lines may end in CRLF
            *events, buffer = buffer.split(b"\n\n")
            for event in events:
                total = usage_of(event)
                if total is not None and not charged:
                    charged = True
                    try:
                        ratelimit.charge(request, total)
                    except Exception:  # a bug to see in the log; the answer still goes out
                        log.exception("charging %d tokens failed", total)
                if not client_gone.is_set():
                    chunks.put_nowait(event + b"\n\n")
        if buffer.strip() and not client_gone.is_set():
            chunks.put_nowait(buffer)
    except httpx.HTTPError as exc:
        log.warning("upstream stream broken: %s", exc)
    except Exception:
        log.exception("relay failed")
    finally:
        await upstream.aclose()
        if not charged:
            # No usage came (the model failed mid-answer): the reservation stands.
            log.warning("no usage in the upstream answer; the reservation stands")
        chunks.put_nowait(None)


async def _drain(
    chunks: asyncio.Queue[bytes | None], client_gone: asyncio.Event
) -> AsyncIterator[bytes]:
    """The response body: the relay's events, until it says the answer is complete."""
    try:
        while (chunk := await chunks.get()) is not None:
            yield chunk
    finally:
        # Ended, or cancelled because the client disconnected: the relay goes on alone.
        client_gone.set()


app = FastAPI(title="LLM gateway (ratelimit-middleware example)", lifespan=lifespan)
app.add_middleware(RateLimitMiddleware, config=rate_limit_config())


@app.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    if api_key(request.headers.get("authorization")) is None:
        ratelimit.charge(request, 0)  # nothing generated: the reservation goes back
        return JSONResponse(
            {"error": {"message": "unknown API key"}},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )
    body = await request.body()
    client: httpx.AsyncClient = request.app.state.upstream
    outgoing = client.build_request(
        "POST",
        "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json", "accept": "text/event-stream"},
    )
    try:
        upstream = await client.send(outgoing, stream=True)
    except httpx.HTTPError as exc:
        ratelimit.charge(request, 0)  # nothing was generated: give the reservation back
        return JSONResponse({"error": {"message": f"model server: {exc}"}}, status_code=502)
    if upstream.status_code != 200:
        content = await upstream.aread()
        await upstream.aclose()
        ratelimit.charge(request, 0)
        return Response(
            content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    client_gone = asyncio.Event()
    relay = asyncio.create_task(_relay(request, upstream, chunks, client_gone))
    _relays.add(relay)
    relay.add_done_callback(_relays.discard)
    return StreamingResponse(
        _drain(chunks, client_gone),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache"},
    )


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

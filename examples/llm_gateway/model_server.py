"""A stand-in for a language model server: ``POST /v1/chat/completions``, streamed as SSE.

It answers the shape of an OpenAI-style streaming chat completion, without a model::

    data: {"choices": [{"index": 0, "delta": {"content": "alpha bravo ..."}}]}
    ...
    data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
           "usage": {"prompt_tokens": 12, "completion_tokens": 200, "total_tokens": 212}}
    data: [DONE]

The token counts follow from the request alone, so a test knows them in advance: the prompt
has one token per word of the messages' ``content``, the answer exactly ``max_tokens`` tokens
(200 when the body does not say), one word each. Run it from the repository root::

    uvicorn examples.llm_gateway.model_server:app --port 8001

``MODEL_SERVER_CHUNK_DELAY`` (seconds, default 0.01) is the pause between two chunks, so a
long answer takes a moment to stream, as a real one does.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["WORDS_PER_CHUNK", "app", "completion_words", "prompt_tokens"]

#: Tokens (words) per streamed chunk.
WORDS_PER_CHUNK = 50
DEFAULT_MAX_TOKENS = 200
_VOCABULARY = (
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliett",
    "kilo",
    "lima",
    "mike",
    "november",
    "oscar",
    "papa",
    "quebec",
    "romeo",
    "sierra",
    "tango",
    "uniform",
    "victor",
    "whiskey",
    "xray",
    "yankee",
    "zulu",
)


def _chunk_delay() -> float:
    return float(os.environ.get("MODEL_SERVER_CHUNK_DELAY", "0.01"))


def prompt_tokens(body: dict[str, Any]) -> int:
    """One token per whitespace-separated word of every message's ``content``."""
    messages = body.get("messages") or []
    return sum(
        len(str(message.get("content", "")).split())
        for message in messages
        if isinstance(message, dict)
    )


def completion_words(count: int) -> list[str]:
    """The answer: ``count`` words of the phonetic alphabet, in order, round and round."""
    return [_VOCABULARY[i % len(_VOCABULARY)] for i in range(count)]


def _event(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def _stream(model: str, prompt: int, completion: int) -> AsyncIterator[bytes]:
    words = completion_words(completion)
    delay = _chunk_delay()
    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "model": model}
    for start in range(0, len(words), WORDS_PER_CHUNK):
        text = " ".join(words[start : start + WORDS_PER_CHUNK])
        if start:
            text = " " + text
        yield _event({**base, "choices": [{"index": 0, "delta": {"content": text}}]})
        if delay:
            await asyncio.sleep(delay)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
    yield _event({**last, "usage": usage})
    yield _event("[DONE]")


async def chat_completions(request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": {"message": "the body is not JSON"}}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": {"message": "the body is not an object"}}, status_code=400)
    max_tokens = body.get("max_tokens", DEFAULT_MAX_TOKENS)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return JSONResponse(
            {"error": {"message": "max_tokens must be a positive integer"}}, status_code=400
        )
    model = str(body.get("model", "stub-1"))
    return StreamingResponse(
        _stream(model, prompt_tokens(body), max_tokens),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache"},
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)

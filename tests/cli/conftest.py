"""Fixtures of the CLI tests: run ``python -m ratelimit`` as a user would, real servers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ratelimit.asgi import RateLimitMiddleware
from tests.support.redis_server import HAVE_REDIS, SKIP_REASON, RedisServer, redis_server
from tests.support.servers import uvicorn_server

ROOT = Path(__file__).resolve().parents[2]

#: The limit of ``/limited`` on the test server.
LIMITED = "20/second"

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def _run(
    *args: str, timeout: float = 90.0, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ratelimit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=env,
        check=False,
    )


@pytest.fixture
def run_cli() -> RunCli:
    """``run_cli("check", path)`` runs ``python -m ratelimit check path`` and returns the result."""
    return _run


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def _slow(request: Request) -> Response:
    await asyncio.sleep(0.3)
    return PlainTextResponse("slow\n")


async def _needs_key(request: Request) -> Response:
    if request.headers.get("x-api-key") != "s3cret":
        return PlainTextResponse("no key\n", status_code=401)
    return PlainTextResponse("ok\n")


def limited_app() -> RateLimitMiddleware:
    """``/limited`` at 20/second (fixed window); ``/free``, ``/slow`` (0.3 s) and ``/needs-key``
    (401 unless ``X-Api-Key: s3cret``) without a limit."""
    routes = [
        Route("/limited", _ok),
        Route("/free", _ok),
        Route("/slow", _slow),
        Route("/needs-key", _needs_key),
    ]
    app = Starlette(routes=routes)
    config = {
        "backend": "memory://",
        "headers": "ietf",
        "rules": [
            {"name": "limited", "path": "/limited", "limit": LIMITED, "algorithm": "fixed_window"}
        ],
    }
    return RateLimitMiddleware(app, config=config)


@pytest.fixture(scope="module")
def limited_server() -> Iterator[str]:
    """A real uvicorn server (in a thread) of :func:`limited_app`; yields its base URL."""
    with uvicorn_server(limited_app()) as url:
        yield url


def first_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """Check the CLI failed the documented way (exit 1, one line, no traceback); return it."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ratelimit: error: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """A real redis-server for the module's tests (skipped, with the reason, without one)."""
    if not HAVE_REDIS:
        pytest.skip(SKIP_REASON)
    with redis_server() as server:
        yield server

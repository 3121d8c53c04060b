"""Redis killed and restarted under load, through the ASGI middleware served by uvicorn.

Each phase sends as a fresh client identity (``x-client`` header): a client that Redis
rejected a moment ago is answered from the engine's rejection cache, without a backend call.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratelimit import RedisBackend
from ratelimit.asgi import RateLimitMiddleware
from tests.conftest import FakeClock
from tests.support.redis_server import RedisServer
from tests.support.servers import uvicorn_server

pytestmark = pytest.mark.redis

LIMIT = 20


def _app(backend: RedisBackend, on_error: str) -> Any:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await backend.aclose()  # the asyncio client belongs to uvicorn's loop

    inner = Starlette(routes=[Route("/x", ok)], lifespan=lifespan)
    config = {
        "backend": "memory://",  # replaced by the backend object below
        "on_error": on_error,
        # A sliding log has no window edge for the test to straddle on Redis' real clock.
        "rules": [
            {
                "name": "x",
                "path": "/x",
                "key": "header:x-client",
                "limit": f"{LIMIT}/minute",
                "algorithm": "sliding_log",
            }
        ],
    }
    return RateLimitMiddleware(inner, config=config, backend=backend)


@contextlib.contextmanager
def _load(url: str, who: dict[str, str]) -> Iterator[list[tuple[float, int]]]:
    """Requests in a loop from a background thread (bounded to 60 s) as the client
    ``who["id"]`` (changed by the test between phases); yields (sent, status)."""
    seen: list[tuple[float, int]] = []
    stop = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=10) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                started = time.monotonic()
                reply = client.get(url + "/x", headers={"x-client": who["id"]})
                seen.append((started, reply.status_code))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def _backend(redis_url: str, breaker_clock: FakeClock) -> RedisBackend:
    """A backend whose breaker opens after 3 failures for 5 s of the given clock."""
    return RedisBackend.from_url(
        redis_url,
        timeout=0.5,
        breaker_threshold=3,
        breaker_cooldown=5.0,
        breaker_clock=breaker_clock,
    )


def _wait_for(seen: list[tuple[float, int]], count: int) -> None:
    deadline = time.monotonic() + 30
    while len(seen) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(seen) >= count, "the load generator stalled"


def test_fail_open_serves_200_while_redis_is_down_and_limits_after_restart(
    redis_proc: RedisServer, redis_url: str
) -> None:
    """on_error=allow: only 200s while Redis is down; after restart, 429s come back."""
    breaker_clock = FakeClock()
    backend = _backend(redis_url, breaker_clock)
    who = {"id": "before"}
    with uvicorn_server(_app(backend, "allow")) as url, _load(url, who) as seen:
        _wait_for(seen, LIMIT + 10)  # Redis up: the limit bites
        assert {status for _, status in seen[: LIMIT + 10]} == {200, 429}
        redis_proc.stop()
        who["id"] = "during"
        killed = time.monotonic()
        _wait_for(seen, len(seen) + 60)
        during = [status for t, status in seen if t > killed]
        assert during and set(during) == {200}  # fail open, never a 500
        redis_proc.start()  # empty: the counters start over
        breaker_clock.advance(5.0)  # the cool-down is over: the next call probes
        restarted = time.monotonic()
        _wait_for(seen, len(seen) + LIMIT + 20)
    after = [status for t, status in seen if t > restarted]
    assert 429 in after  # limiting resumed, without restarting the app
    assert set(after) <= {200, 429}
    assert backend.breaker.is_open is False


def test_fail_closed_answers_503_while_redis_is_down(
    redis_proc: RedisServer, redis_url: str
) -> None:
    """on_error=deny: 503 with Retry-After while Redis is down, 200 again after restart."""
    breaker_clock = FakeClock()
    backend = _backend(redis_url, breaker_clock)
    app = _app(backend, "deny")
    with uvicorn_server(app) as url, httpx.Client(timeout=10, headers={"x-client": "c"}) as client:
        assert client.get(url + "/x").status_code == 200
        redis_proc.stop()
        replies = [client.get(url + "/x") for _ in range(10)]
        assert [r.status_code for r in replies] == [503] * 10
        assert all(r.headers.get("retry-after") for r in replies)
        redis_proc.start()
        breaker_clock.advance(5.0)
        assert client.get(url + "/x").status_code == 200


def test_an_outage_logs_one_warning_and_one_info(
    redis_proc: RedisServer, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed under load: one WARNING when the circuit opens (no traceback), none per
    request and none for a failed probe, and one INFO at recovery counting every decision
    that went to on_error meanwhile."""
    caplog.set_level(logging.INFO, logger="ratelimit")
    breaker_clock = FakeClock()
    backend = _backend(redis_url, breaker_clock)
    who = {"id": "one"}
    with uvicorn_server(_app(backend, "allow")) as url, _load(url, who) as seen:
        _wait_for(seen, 5)
        redis_proc.stop()
        killed = len(seen)
        _wait_for(seen, killed + 100)
        breaker_clock.advance(5.0)  # a probe while Redis is still down: fails, reopens
        _wait_for(seen, killed + 200)
        redis_proc.start()
        breaker_clock.advance(5.0)
        recovered = len(seen)
        _wait_for(seen, recovered + 10)
    assert backend.breaker.is_open is False
    records = [r for r in caplog.records if r.name.startswith("ratelimit")]
    levels = [r.levelname for r in records]
    assert levels == ["WARNING", "INFO"], [r.getMessage() for r in records]
    warning, info = records
    assert "circuit open" in warning.getMessage() and "ConnectionError" in warning.getMessage()
    assert warning.exc_info is None  # no traceback below DEBUG
    failed = int(re.search(r"(\d+) decisions failed", info.getMessage()).group(1))  # type: ignore[union-attr]
    # Every request between the kill and the recovery, give or take those in flight at each.
    assert recovered - killed - 2 <= failed <= recovered - killed + 5, (failed, recovered - killed)
    assert failed >= 200

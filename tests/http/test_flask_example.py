"""examples/flask_app.py, started with its documented command, uses the Flask extension."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratelimit.testing import FakeClock, disabled, reset
from tests.support.servers import clear_of_a_minute_edge, server_process

ROOT = Path(__file__).resolve().parents[2]
COMMAND = ["python", "-m", "flask", "--app", "examples.flask_app", "run", "--port", "{port}"]


@pytest.mark.slow
def test_flask_example_config_rules_and_per_view_limit() -> None:
    """The config's login rule and the /report view's 3/minute limit both apply."""
    with server_process(COMMAND, cwd=str(ROOT), timeout=60) as url:
        clear_of_a_minute_edge()  # both limits are fixed windows of a minute
        reports = [httpx.get(url + "/report") for _ in range(4)]
        logins = [httpx.post(url + "/auth/login") for _ in range(6)]
        head = httpx.head(url + "/report")
    assert [r.status_code for r in reports] == [200, 200, 200, 429]
    assert reports[0].headers["ratelimit-policy"].startswith('"report";q=3;w=60')
    assert reports[3].headers["content-type"] == "application/problem+json"
    assert [r.status_code for r in logins] == [200] * 5 + [429]
    assert head.status_code == 429 and head.content == b""


def get(client: Any, path: str) -> int:
    """GET ``path``; the response is closed (as a server does: the /report route holds a
    concurrency slot until then)."""
    with client.get(path) as response:
        status: int = response.status_code
    return status


def test_flask_example_in_process_on_a_fake_clock(
    ratelimit_reset: object, ratelimit_clock: FakeClock
) -> None:
    """In process, on fresh counters and a fake clock: the /report view's fourth call is a
    429, and a minute later by the fake clock (no sleeping) it passes again."""
    from examples.flask_app import app

    ratelimit_clock.install(app)
    client = app.test_client()
    reports = [get(client, "/report") for _ in range(4)]
    ratelimit_clock.advance(60)
    assert reports == [200, 200, 200, 429]
    assert get(client, "/report") == 200


def test_flask_example_reset_between_steps(ratelimit_reset: Callable[[object], None]) -> None:
    """``ratelimit_reset(app)`` inside a test gives every client a full budget again."""
    from examples.flask_app import app

    client = app.test_client()
    assert [get(client, "/report") for _ in range(4)][-1] == 429
    ratelimit_reset(app)
    assert get(client, "/report") == 200


def test_flask_example_with_limits_disabled() -> None:
    """Under ``disabled()`` the config's login rule and the /report view's limit admit
    everything, with no rate-limit headers; after the block they apply again."""
    from examples.flask_app import app

    reset(app)
    client = app.test_client()
    with disabled():
        responses = [client.post("/auth/login") for _ in range(10)]
        responses += [client.get("/report") for _ in range(10)]
    for response in responses:
        response.close()
        assert response.status_code == 200
        assert "RateLimit" not in response.headers
    assert [get(client, "/report") for _ in range(4)] == [200, 200, 200, 429]

"""examples/flask_app.py, started with its documented command, uses the Flask extension."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

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

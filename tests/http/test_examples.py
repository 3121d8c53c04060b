"""The example apps, each started with its documented command, enforce examples/ratelimit.toml."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ratelimit.http.config import load_config
from tests.support.servers import clear_of_a_minute_edge, server_process

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {
    "starlette": ["python", "-m", "uvicorn", "examples.starlette_app:app", "--port", "{port}"],
    "fastapi": ["python", "-m", "uvicorn", "examples.fastapi_app:app", "--port", "{port}"],
    "flask": ["python", "-m", "flask", "--app", "examples.flask_app", "run", "--port", "{port}"],
    "django": ["python", "examples/django_project/manage.py", "runserver", "127.0.0.1:{port}",
               "--noreload"],
}  # fmt: skip


def test_example_config_is_valid() -> None:
    """examples/ratelimit.toml loads and has the documented rules."""
    config = load_config(ROOT / "examples" / "ratelimit.toml")
    assert [rule.name for rule in config.rules] == [
        "login",
        "login-failures",
        "api",
        "report-concurrency",
        "upload-bytes",
        "upload",
        "/healthz",
        "site",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("framework", sorted(COMMANDS))
def test_example_app_limits_login(framework: str) -> None:
    """The sixth login POST within a minute is a 429; /healthz is exempt."""
    body = {"username": "u", "password": "p"}
    with server_process(COMMANDS[framework], cwd=str(ROOT), timeout=60) as url:
        clear_of_a_minute_edge()  # the login rule: a fixed window of 5/minute
        logins = [httpx.post(url + "/auth/login", json=body) for _ in range(6)]
        health = httpx.get(url + "/healthz")
        home = httpx.get(url + "/")
    assert [r.status_code for r in logins] == [200] * 5 + [429]
    assert logins[0].headers["ratelimit-policy"] == (
        '"login";q=5;w=60, "login-failures";q=20;w=900, "site";q=300;w=60'
    )
    assert logins[5].headers["content-type"] == "application/problem+json"
    assert int(logins[5].headers["retry-after"]) >= 1
    assert health.status_code == 200 and "ratelimit" not in health.headers
    assert home.headers["ratelimit"].startswith('"site";r=')


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["starlette", "fastapi", "django"])
def test_example_per_view_decorator(framework: str) -> None:
    """The /report view's decorator limit (3/minute) applies on top of the config rules."""
    with server_process(COMMANDS[framework], cwd=str(ROOT), timeout=60) as url:
        clear_of_a_minute_edge()  # a fixed window of 3/minute
        codes = [httpx.get(url + "/report").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]

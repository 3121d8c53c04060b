"""The example apps, each started with its documented command, enforce examples/ratelimit.toml."""

from __future__ import annotations

import importlib
from pathlib import Path

import httpx
import pytest

from ratelimit.http.config import load_config
from ratelimit.testing import FakeClock
from tests.http.conftest import asgi_client
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


# -- in process, with ratelimit.testing's fixtures (what docs/testing.md shows) ----------------

LOGIN = {"username": "u", "password": "p"}


@pytest.mark.parametrize("module", ["examples.starlette_app", "examples.fastapi_app"])
async def test_example_asgi_app_in_process_on_a_fake_clock(
    module: str, ratelimit_reset: object, ratelimit_clock: FakeClock
) -> None:
    """In process, on fresh counters and a fake clock: the sixth login is a 429, and two
    minutes later by the fake clock (no sleeping) logins pass again."""
    app = importlib.import_module(module).app
    ratelimit_clock.install(app)
    async with asgi_client(app) as client:
        logins = [(await client.post("/auth/login", json=LOGIN)).status_code for _ in range(6)]
        ratelimit_clock.advance(120)
        later = await client.post("/auth/login", json=LOGIN)
    assert logins == [200] * 5 + [429]
    assert later.status_code == 200


@pytest.mark.parametrize("module", ["examples.starlette_app", "examples.fastapi_app"])
async def test_example_asgi_app_counters_are_fresh_for_each_test(
    module: str, ratelimit_reset: object
) -> None:
    """The module-level app of the previous test starts this one with fresh counters."""
    app = importlib.import_module(module).app
    async with asgi_client(app) as client:
        first = await client.post("/auth/login", json=LOGIN)
    assert first.status_code == 200
    assert first.headers["ratelimit"].startswith('"login";r=4;')


async def test_example_starlette_app_with_limits_disabled(ratelimit_disabled: None) -> None:
    """With ``ratelimit_disabled``, twenty logins and reports pass with no rate-limit headers
    (the config's rules and the per-endpoint decorator alike)."""
    from examples.starlette_app import app

    async with asgi_client(app) as client:
        logins = [await client.post("/auth/login", json=LOGIN) for _ in range(20)]
        reports = [await client.get("/report") for _ in range(20)]
    for response in (*logins, *reports):
        assert response.status_code == 200
        assert "ratelimit" not in response.headers
        assert "ratelimit-policy" not in response.headers

"""``ratelimit check``, ``inspect`` and ``reset``: config files and counters in a backend."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ratelimit import Limit, Limiter
from ratelimit.asgi import RateLimitMiddleware
from tests.cli.conftest import ROOT, RunCli, first_line_error
from tests.support.redis_server import RedisServer
from tests.support.servers import uvicorn_server

GOOD = """\
backend = "memory://"
key = "ip"

[[rules]]
name = "login"
path = "/auth/login"
methods = ["POST"]
limit = "5/minute"

[[rules]]
name = "api"
path = "/api/**"
limits = [{ rate = "10/second", burst = 20 }, "1000/hour"]
algorithm = "token_bucket"
key = "header:x-api-key"

[[rules]]
path = "/healthz"
exempt = true
"""


def _write(tmp_path: Path, text: str, name: str = "ratelimit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_check_prints_the_rules(run_cli: RunCli, tmp_path: Path) -> None:
    """A valid config is reported OK with one table row per rule, in order."""
    path = _write(tmp_path, GOOD)
    result = run_cli("check", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{path}: OK, 3 rules; backend memory://")
    assert lines[1].split() == ["#", "name", "path", "methods", "limits", "key", "cost", "policies"]
    login, api, health = lines[3], lines[4], lines[5]
    assert login.split()[:4] == ["0", "login", "/auth/login", "POST"]
    assert "5/minute (fixed_window)" in login and "ip (default)" in login
    assert "10/second (token_bucket, burst 20); 1000/hour (token_bucket)" in api
    assert "header:x-api-key" in api
    assert health.split()[2:5] == ["/healthz", "*", "exempt"]


def test_check_shows_the_policies(run_cli: RunCli, tmp_path: Path) -> None:
    """Tiers, count, ban and allow/deny lists appear in the rule's policies cell."""
    text = (
        'deny = ["203.0.113.0/24"]\n[[rules]]\nname = "api"\npath = "/api/**"\n'
        'limit = "100/hour"\ntier = "header:x-plan"\ncount = "failures"\n'
        'ban = { after = 3, within = "1 hour", duration = "1 day" }\n'
        '[rules.tiers]\npro = "10/second"\ninternal = "exempt"\n'
        '[[rules]]\nname = "exports"\npath = "/export"\nalgorithm = "concurrency"\nlimit = 2\n'
    )
    result = run_cli("check", str(_write(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    assert "deny 203.0.113.0/24" in result.stdout.splitlines()[0]
    api = next(line for line in result.stdout.splitlines() if " api " in line)
    assert "tier pro: 10/second (fixed_window)" in api and "tier internal: exempt" in api
    assert "count failures" in api and "ban after 3 in 3600s: 86400s" in api
    assert "2 in flight (concurrency, lease 60s)" in result.stdout


def test_check_shows_charge_and_unit(run_cli: RunCli, tmp_path: Path) -> None:
    """A charge rule's charge spec and unit appear in its policies cell."""
    text = (
        '[[rules]]\nname = "tokens"\npath = "/v1/**"\nlimit = "20000/minute"\n'
        'algorithm = "token_bucket"\ncost = 500\ncharge = "response-header:X-Tokens"\n'
        'unit = "tokens"\n'
    )
    result = run_cli("check", str(_write(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if " tokens " in line)
    assert "charge response-header:x-tokens | unit tokens" in row and " 500 " in row


def test_check_accepts_the_example_config(run_cli: RunCli) -> None:
    """The config shipped in ``examples/`` is valid and every rule of it is listed."""
    from ratelimit.http.config import load_config

    example = ROOT / "examples" / "ratelimit.toml"
    result = run_cli("check", str(example))
    assert result.returncode == 0, result.stderr
    names = [rule.name for rule in load_config(example).rules]
    rows = result.stdout.splitlines()[3:]
    assert [row.split()[1] for row in rows] == names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[rules]]\npath = "/x"\nlimit = "10/fortnight"\n', "rules[0].limit"),
        ('[[rules]]\npath = "/x"\nlimit = "1/s"\n[[rules]]\npath = "/y"\nlimt = "1/s"\n', "limt"),
        ('backend = "memory://"\nkey = "ip"\nheaders = "fancy"\n', "headers"),
        ('[[rules]]\npath = "/x"\nlimit = "1/s"\nburst = 3\n', "burst"),
        ("rules = [\n", "invalid TOML"),
    ],
)
def test_check_rejects_bad_configs(
    run_cli: RunCli, tmp_path: Path, text: str, expected: str
) -> None:
    """An invalid config exits 1 with one line naming the file and the offending key."""
    path = _write(tmp_path, text, "bad.toml")
    line = first_line_error(run_cli("check", str(path)))
    assert str(path) in line
    assert expected in line


def test_inspect_unknown_rule_lists_the_rules(run_cli: RunCli, tmp_path: Path) -> None:
    """Asking for a rule the config does not have names the rules it does have."""
    path = _write(tmp_path, GOOD)
    line = first_line_error(run_cli("inspect", "1.2.3.4", "--config", str(path), "--rule", "nope"))
    assert "'nope'" in line and "'login'" in line and "'api'" in line


def test_inspect_memory_backend_warns_it_sees_nothing(run_cli: RunCli) -> None:
    """A memory:// backend cannot be inspected from outside its process: the CLI says so."""
    result = run_cli("inspect", "k", "--limit", "5/minute", "--backend", "memory://")
    assert result.returncode == 0, result.stderr
    assert "ratelimit: note: a memory:// backend" in result.stderr
    assert "a request now would be admitted" in result.stdout


# --- against a real Redis -------------------------------------------------------------


def _inspect(run_cli: RunCli, *args: str) -> dict[str, Any]:
    result = run_cli("inspect", *args, "--json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


async def _ok(request: Request) -> Response:
    return PlainTextResponse("ok\n")


@pytest.mark.redis
def test_inspect_and_reset_a_rule_the_middleware_counted(
    run_cli: RunCli, redis: RedisServer, tmp_path: Path
) -> None:
    """Requests counted by the middleware show in ``inspect --rule``; ``reset`` clears them
    and the client is admitted again."""
    redis.command("FLUSHALL")
    config = _write(
        tmp_path,
        f'backend = "{redis.url}"\n\n[[rules]]\nname = "login"\npath = "/login"\n'
        # A sliding log has no window edge that the test could straddle on Redis' real clock.
        'limit = "5/minute"\nalgorithm = "sliding_log"\n',
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await app.engine.backend.aclose()  # type: ignore[attr-defined]  # a RedisBackend

    app = RateLimitMiddleware(
        Starlette(routes=[Route("/login", _ok)], lifespan=lifespan), config=str(config)
    )
    who = ("127.0.0.1", "--config", str(config), "--rule", "login")
    with uvicorn_server(app) as url, httpx.Client(base_url=url) as client:
        assert [client.get("/login").status_code for _ in range(3)] == [200, 200, 200]
        state = _inspect(run_cli, *who)
        assert state["backend"] == redis.url
        assert state["key"].endswith("127.0.0.1")
        assert [(s["id"], s["remaining"], s["capacity"]) for s in state["limits"]] == [
            ("login", 2, 5)
        ]
        assert state["allowed"] is True
        assert [client.get("/login").status_code for _ in range(3)] == [200, 200, 429]
        text = run_cli("inspect", *who)
        assert text.returncode == 0, text.stderr
        assert "a request now would be rejected: retry in" in text.stdout
        assert _inspect(run_cli, *who)["allowed"] is False

        result = run_cli("reset", *who)
        assert result.returncode == 0, result.stderr
        assert "reset key" in result.stdout and "login" in result.stdout
        assert _inspect(run_cli, *who)["limits"][0]["remaining"] == 5
        # The server's rejection cache may repeat the 429 for up to 1 s after a reset made
        # elsewhere (documented): the client is admitted within that bound.
        deadline = time.monotonic() + 3.0
        while (status := client.get("/login").status_code) == 429:
            assert time.monotonic() < deadline, "still rejected long after the reset"
            time.sleep(0.05)
        assert status == 200


@pytest.mark.redis
def test_inspect_and_reset_a_limit_given_on_the_command_line(
    run_cli: RunCli, redis: RedisServer
) -> None:
    """``--limit`` with its algorithm and burst finds the counters a Limiter used for KEY."""
    redis.command("FLUSHALL")
    limit = Limit("10/minute", algorithm="token_bucket", burst=20)
    limiter = Limiter(redis.url)
    for _ in range(4):
        assert limiter.hit("client-7", limit).allowed
    args = ("client-7", "--limit", "10/minute", "--algorithm", "token_bucket", "--burst", "20")
    args += ("--backend", redis.url)
    state = _inspect(run_cli, *args)
    assert state["limits"][0]["remaining"] == 16
    assert state["limits"][0]["capacity"] == 20
    assert _inspect(run_cli, "client-8", *args[1:])["limits"][0]["remaining"] == 20
    assert run_cli("reset", *args).returncode == 0
    assert limiter.peek("client-7", limit).remaining == 20
    close = getattr(limiter.backend, "close", None)
    if close is not None:
        close()

"""``ratelimit top`` against Redis, fed by two gunicorn workers."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ratelimit.cli import main
from tests.support.servers import clear_of_a_minute_edge, server_process

APP = """
import os, time
from ratelimit.wsgi import RateLimitMiddleware

def inner(environ, start_response):
    time.sleep(0.02)  # keeps a worker busy, so that concurrent requests reach both
    start_response("200 OK", [("X-Pid", str(os.getpid()))])
    return [b"ok"]

app = RateLimitMiddleware(inner, config={
    "backend": os.environ["RATELIMIT_TEST_REDIS"],
    "timeout": 2.0,
    "metrics": {"prometheus": False, "status_path": "/_ratelimit"},
    "rules": [{"name": "api", "path": "/api/**", "key": "header:x-api-key", "limit": "3/minute"}],
})
"""


@pytest.mark.redis
@pytest.mark.slow
def test_top_across_two_workers(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rejections made by two gunicorn workers are merged in Redis; ``ratelimit top`` lists
    them per identity, most first, as a table and as JSON."""
    (tmp_path / "top_app.py").write_text(textwrap.dedent(APP))
    env = {
        "RATELIMIT_TEST_REDIS": redis_url,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd()]),
    }
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:{port}", "top_app:app"]
    sends = ["key-heavy"] * 20 + ["key-medium"] * 8 + ["key-light"] * 3
    with server_process(command, env=env) as url:

        def get(key: str) -> tuple[int, str]:
            request = urllib.request.Request(url + "/api/items", headers={"X-Api-Key": key})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, response.headers["X-Pid"]
            except urllib.error.HTTPError as error:
                return error.code, ""

        clear_of_a_minute_edge()  # the api rule: a fixed window of 3/minute
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(get, sends))
    assert len({pid for status, pid in results if status == 200}) == 2, "both workers served"
    assert sum(status == 429 for status, _ in results) == 17 + 5
    assert main(["top", "--backend", redis_url]) == 0
    table = capsys.readouterr().out
    Path(os.environ.get("RATELIMIT_TOP_OUT", tmp_path / "top.txt")).write_text(table)
    lines = table.splitlines()
    assert lines[0].startswith("most rejected over the last 15 min, every rule, all workers")
    assert lines[1].split() == ["rule", "identity", "rejections"]
    assert [line.split() for line in lines[2:] if not set(line) <= {"-", " "}] == [
        ["api", "header:x-api-key:key-heavy", "17"],
        ["api", "header:x-api-key:key-medium", "5"],
    ]
    assert main(["top", "--backend", redis_url, "--rule", "api", "--n", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["rule"], r["rejections"]) for r in rows] == [("api", 17)]
    assert "key-heavy" in rows[0]["identity"]


def test_top_needs_redis(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """The memory backend's counts live in the server process: a one-line error says where."""
    assert main(["top", "--backend", "memory://"]) == 1
    assert "status page" in capsys.readouterr().err
    config = tmp_path / "ratelimit.toml"
    config.write_text('backend = "memory://"\n[[rules]]\npath = "/x"\nlimit = "1/s"\n')
    assert main(["top", "--config", str(config)]) == 1
    assert "ratelimit top reads a Redis backend" in capsys.readouterr().err
    assert main(["top"]) == 1
    assert "give --backend URL" in capsys.readouterr().err


def test_top_when_redis_is_down(capsys: pytest.CaptureFixture[str]) -> None:
    """An unreachable Redis is a one-line error, not a traceback."""
    from tests.support.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    assert main(["top", "--backend", url, "--timeout", "0.5"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ratelimit: error: Redis unavailable (connection)"), err

"""DRF throttles under a real gunicorn server (the example project), memory backend."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.servers import server_process

ROOT = Path(__file__).resolve().parents[2]


def gunicorn(workers: int, worker_class: str = "gthread", threads: int = 8) -> list[str]:
    """The command serving the example DRF project with gunicorn."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--chdir",
        str(ROOT / "examples" / "drf_project"),
        "-w",
        str(workers),
        "-k",
        worker_class,
        "--threads",
        str(threads),
        "-b",
        "127.0.0.1:{port}",
        "project.wsgi",
    ]


def server_env(backend: str) -> dict[str, str]:
    """The server's environment: ``ratelimit`` imported from this tree, the given backend."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "RATELIMIT_BACKEND": backend}


def burst(url: str, n: int = 50) -> list[httpx.Response]:
    """``n`` GETs of ``url`` sent at once, from ``n`` threads released by one barrier."""
    barrier = threading.Barrier(n)

    def get(_: int) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            return client.get(url)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(get, range(n)))


def check_exactly_ten(responses: list[httpx.Response]) -> None:
    """The scoped ``10/minute`` throttle admitted exactly 10; everything has our headers."""
    admitted = [r for r in responses if r.status_code == 200]
    rejected = [r for r in responses if r.status_code != 200]
    assert len(admitted) == 10, [r.status_code for r in responses]
    assert {r.status_code for r in rejected} == {429}
    for response in responses:
        assert response.headers["ratelimit-policy"] == '"drf.burst";q=10;w=60'
        assert response.headers["ratelimit"].startswith('"drf.burst";r=')
    assert all(int(r.headers["retry-after"]) >= 1 for r in rejected)
    assert sorted(r.headers["ratelimit"].split(";")[1] for r in admitted) == [
        f"r={i}" for i in range(10)
    ]


@pytest.mark.slow
def test_memory_backend_admits_exactly_the_rate_under_threads() -> None:
    """One gthread worker, 8 threads, 50 concurrent requests to a 10/minute scope: 10 pass."""
    with server_process(gunicorn(1), env=server_env("memory://"), timeout=60) as url:
        responses = burst(url + "/api/burst")
        hello = httpx.get(url + "/api/hello", headers={"Authorization": "Token ada"})
    check_exactly_ten(responses)
    assert hello.status_code == 200 and hello.json() == {"hello": "ada"}
    assert hello.headers["ratelimit-policy"] == '"drf.user";q=1000;w=3600'

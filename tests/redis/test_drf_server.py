"""DRF throttles on Redis under gunicorn with several workers: one budget for all of them."""

from __future__ import annotations

import httpx
import pytest

from tests.http.test_drf_server import burst, check_exactly_ten, gunicorn, server_env
from tests.support.servers import server_process


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_redis_admits_exactly_the_rate_across_workers(redis_url: str, worker_class: str) -> None:
    """Four gunicorn workers, 50 concurrent requests to a 10/minute scope: exactly 10 pass
    (DRF's cache throttle reads then writes, so concurrent requests slip past it)."""
    command = gunicorn(4, worker_class, threads=4)
    with server_process(command, env=server_env(redis_url), timeout=60) as url:
        responses = burst(url + "/api/burst")
        again = httpx.get(url + "/api/burst")
    check_exactly_ten(responses)
    assert again.status_code == 429

"""``ratelimit demo``: the five algorithms under the same traffic, a table and a PNG chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from matplotlib.image import imread

from tests.cli.conftest import RunCli
from tests.cli.test_loadtest import PNG_SIGNATURE
from tests.support.redis_server import RedisServer

ALGORITHMS = ("fixed_window", "sliding_window", "sliding_log", "token_bucket", "leaky_bucket")

pytestmark = pytest.mark.slow


def test_demo_prints_the_table_and_writes_the_chart(run_cli: RunCli, tmp_path: Path) -> None:
    """A short demo prints one row per algorithm, shows progress, and writes a readable PNG
    with one panel per algorithm plus the table as text."""
    out = tmp_path / "out"
    result = run_cli("demo", "--duration", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["algorithm", "sent", "admitted", "rejected"]
    for name in ALGORITHMS:
        row = next(line for line in lines if line.startswith(name + " ")).split()
        sent, admitted, rejected = int(row[1]), int(row[2]), int(row[3])
        assert sent == 41  # the burst of 20 around the edge at 1 s, then 20.5/s on [2, 3)
        assert admitted + rejected == sent
        assert 10 <= admitted < sent
    assert "admitted/sent" in result.stderr  # the progress display
    png = out / "demo.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(png).shape[:2]
    assert width > 1000 and height > 5 * 150  # five panels stacked
    table = (out / "demo-table.txt").read_text()
    assert table.splitlines()[2].startswith("fixed_window")
    # The status page's URL while it runs, and what the middleware recorded beside the chart.
    assert re.search(r"status page: http://127\.0\.0\.1:\d+/_ratelimit", result.stderr)
    recorded = json.loads((out / "demo-metrics.json").read_text())
    for name in ALGORITHMS:
        row = next(line for line in lines if line.startswith(name + " ")).split()
        rule = next(r for r in recorded["rules"] if r["name"] == name)
        assert sum(rule["counts"]["15m"].values()) == int(row[1])
    exposition = (out / "demo-metrics.prom").read_text()
    assert 'ratelimit_requests_total{outcome="rejected",rule="sliding_log"}' in exposition


def test_demo_json_shows_the_algorithms_differ(run_cli: RunCli, tmp_path: Path) -> None:
    """The burst across a window edge passes a fixed window twice over, not a sliding log,
    and the leaky bucket delays the requests it admits."""
    result = run_cli("demo", "--duration", "3", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    algorithms = report["algorithms"]
    assert list(algorithms) == list(ALGORITHMS)
    for name, data in algorithms.items():
        assert data["admitted"] + data["rejected"] + data["errors"] == data["sent"], name
        assert data["errors"] == 0
    # 10 just before the edge and 10 just after: a fixed window admits (nearly) all 20 ...
    assert algorithms["fixed_window"]["peak_admitted"]["count"] >= 15
    # ... a sliding log never more than 10 in any second. The times are measured by the
    # client, a few ms off the server's: margins keep a busy machine from failing the test.
    assert algorithms["sliding_log"]["peak_admitted"]["count"] <= 12
    assert algorithms["fixed_window"]["admitted"] > algorithms["sliding_log"]["admitted"]
    # Shaping holds admitted requests (the burst queues up to 0.9 s); a slow machine only
    # makes that longer, so the bound cannot fail for lack of speed.
    assert algorithms["leaky_bucket"]["max_server_ms"] > 300
    assert (tmp_path / "demo.png").stat().st_size > 10_000


@pytest.mark.redis
def test_demo_runs_against_redis(run_cli: RunCli, redis: RedisServer, tmp_path: Path) -> None:
    """``--backend redis://...`` runs the same demo with the counters in Redis: the window
    edge (a whole second of Redis' clock) still lets the fixed window pass the burst twice."""
    # A timeout well above the 0.1 s default: a decision that times out on a loaded CI
    # machine would be admitted under on_error = "allow" and blur the comparison below.
    url = f"{redis.url}?timeout=2"
    result = run_cli("demo", "--duration", "3", "--out", str(tmp_path), "--json", "--backend", url)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == url
    algorithms = report["algorithms"]
    for name, data in algorithms.items():
        assert data["sent"] == 41, name
        assert data["admitted"] + data["rejected"] == data["sent"], name
    assert algorithms["fixed_window"]["peak_admitted"]["count"] >= 15
    assert algorithms["fixed_window"]["admitted"] > algorithms["sliding_log"]["admitted"]
    assert (tmp_path / "demo.png").read_bytes()[:8] == PNG_SIGNATURE

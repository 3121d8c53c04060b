"""``ratelimit loadtest`` against a real uvicorn server limited by the ASGI middleware."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.image import imread

from tests.cli.conftest import RunCli, first_line_error

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _loadtest(run_cli: RunCli, url: str, *args: str) -> dict[str, Any]:
    result = run_cli("loadtest", url, "--json", "--quiet", *args)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_counts_add_up_against_a_limited_route(run_cli: RunCli, limited_server: str) -> None:
    """Every scheduled request is accounted for once, and the 20/second limit shows in them."""
    report = _loadtest(run_cli, f"{limited_server}/limited", "--rate", "60", "--duration", "2")
    assert report["scheduled"] == 120
    assert report["sent"] + report["dropped"] == report["scheduled"]
    assert report["admitted"] + report["rejected"] + report["errors"] == report["sent"]
    assert report["status"].get("200", 0) == report["admitted"]
    assert report["status"].get("429", 0) == report["rejected"]
    # A fixed window of 20/second: 2 s of traffic cover at least 1 window and touch at most
    # 3 (4 if a busy machine made the generator send the last requests late).
    assert 20 <= report["admitted"] <= 80
    assert report["rejected"] >= 40
    assert sum(report["timeline"]["admitted"]) == report["admitted"]
    assert sum(report["timeline"]["rejected"]) == report["rejected"]
    headers = report["headers"]
    assert headers["retry_after"]["on_429"] == report["rejected"]
    assert headers["ratelimit"]["present"] == report["sent"]
    assert headers["ratelimit"]["remaining"]["min"] == 0
    assert 0 < headers["ratelimit"]["remaining"]["max"] < 20
    assert list(headers["ratelimit_policy"]) == ['"limited";q=20;w=1']
    assert report["policy_rate_per_s"] == 20


def test_text_report_and_chart(run_cli: RunCli, limited_server: str, tmp_path: Path) -> None:
    """The human report names the statuses and headers, and ``--plot`` writes a real PNG."""
    png = tmp_path / "load.png"
    result = run_cli(
        "loadtest",
        f"{limited_server}/limited",
        "--rate",
        "40",
        "--duration",
        "1.5",
        "--plot",
        str(png),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "scheduled 60" in out
    assert "429:" in out and "200:" in out
    assert "Retry-After on" in out
    assert '"limited";q=20;w=1' in out
    assert "latency ms" in out and "p99" in out
    assert "sent" in result.stderr  # the progress display
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    height, width = imread(png).shape[:2]
    assert width > 800 and height > 300


def test_open_loop_drops_instead_of_slowing_down(run_cli: RunCli, limited_server: str) -> None:
    """Against a 0.3 s endpoint with 3 slots, the arrivals keep their schedule: the excess is
    dropped and counted, not sent later."""
    report = _loadtest(
        run_cli, f"{limited_server}/slow", "--rate", "50", "--duration", "1", "--concurrency", "3"
    )
    assert report["scheduled"] == 50
    assert report["dropped"] > 0
    assert report["sent"] + report["dropped"] == 50
    assert report["status"] == {"200": report["sent"]}
    assert sum(report["timeline"]["dropped"]) == report["dropped"]


def test_headers_are_sent(run_cli: RunCli, limited_server: str) -> None:
    """``-H 'Name: value'`` goes with every request."""
    url = f"{limited_server}/needs-key"
    with_key = _loadtest(
        run_cli, url, "--rate", "20", "--duration", "0.5", "-H", "X-Api-Key: s3cret"
    )
    assert with_key["status"] == {"200": 10}
    without = _loadtest(run_cli, url, "--rate", "20", "--duration", "0.5")
    assert without["status"] == {"401": 10}
    assert without["errors"] == 10


def test_no_server_is_an_error(run_cli: RunCli) -> None:
    """When nothing answers, the report shows it and the command fails with one error line."""
    from tests.support.servers import free_port

    url = f"http://127.0.0.1:{free_port()}/"
    result = run_cli("loadtest", url, "--rate", "10", "--duration", "0.3", "--quiet")
    line = first_line_error(result)
    assert "no response" in line and "connection refused" in line
    assert "scheduled 3" in result.stdout

"""The locustfile runs headless against the example Starlette app, and the limits bite."""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import clear_of_a_minute_edge, server_process

ROOT = Path(__file__).resolve().parents[2]
LOCUSTFILE = ROOT / "examples" / "loadtest" / "locustfile.py"

pytestmark = pytest.mark.slow


def locust_command() -> list[str]:
    """``locust`` from this interpreter's environment (the test extra installs it)."""
    found = shutil.which("locust", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "locust"]


def test_locustfile_smoke_run(tmp_path: Path) -> None:
    """Five users for three seconds: requests flow, nothing fails, and the login flood
    gets 429s (counted as expected answers, not failures)."""
    # Not imported here: importing locust monkey-patches the test process with gevent.
    if importlib.util.find_spec("locust") is None:
        pytest.fail("locust is not installed: pip install -e '.[test]'")
    statuses_file = tmp_path / "statuses.json"
    with server_process(
        ["python", "-m", "uvicorn", "examples.starlette_app:app", "--port", "{port}"],
        cwd=str(ROOT),
    ) as url:
        clear_of_a_minute_edge(15.0)  # locust's start-up and its 3 s run, in one minute
        run = subprocess.run(
            [
                *locust_command(),
                "-f",
                str(LOCUSTFILE),
                "--headless",
                "-u",
                "5",
                "-r",
                "5",
                "-t",
                "3s",
                "--host",
                url,
                "--only-summary",
                "--csv",
                str(tmp_path / "run"),
                "--status-json",
                str(statuses_file),
                "AnonymousVisitor",
                "ApiClient",
                "LoginFlood",
            ],
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stdout + run.stderr
    with open(tmp_path / "run_stats.csv", newline="", encoding="utf-8") as stats_file:
        rows = {row["Name"]: row for row in csv.DictReader(stats_file)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 20
    assert int(total["Failure Count"]) == 0, run.stdout + run.stderr
    statuses = json.loads(statuses_file.read_text(encoding="utf-8"))
    login = statuses["POST /auth/login"]
    assert login.get("200", 0) <= 5  # the login rule: 5/minute per client
    assert login.get("429", 0) > 0
    assert "429" not in statuses.get("GET /healthz", {})  # the exempt rule

"""One real run of the LLM gateway example: both servers, locust, the chart and the table.

From the repository root, with the test extra installed (``pip install -e ".[test]"``)::

    python examples/llm_gateway/run.py                  # 90 s; docs/img/llm_gateway_tokens.png
    python examples/llm_gateway/run.py --seconds 20 --out /tmp/gateway

It starts the stub model server and the gateway with uvicorn on free ports of 127.0.0.1,
runs ``locustfile.py`` headless (five users, four API keys) for ``--seconds``, stops both
servers, draws the chart and prints the Markdown table of docs/llm-gateway.md. The CSV of the
run is kept in ``--out`` (``tokens.csv``), beside the locust summary (``locust.txt``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve(module: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``uvicorn module:app`` on a free port until the block ends; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", f"{module}:app", "--port", str(port)]
    command += ["--host", HOST, "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{module} exited with code {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{module} did not listen on port {port} within 30 s")
            time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=90, help="length of the locust run")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "llm_gateway")
    parser.add_argument(
        "--chart", type=Path, default=ROOT / "docs" / "img" / "llm_gateway_tokens.png"
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tokens_csv = args.out / "tokens.csv"
    with (
        serve("examples.llm_gateway.model_server") as model,
        serve("examples.llm_gateway.gateway", {"MODEL_SERVER_URL": model}) as gateway,
    ):
        locust = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(HERE / "locustfile.py"),
                "--headless",
                "-u",
                "5",
                "-r",
                "5",
                "-t",
                f"{args.seconds}s",
                "--host",
                gateway,
                "--only-summary",
                "--tokens-csv",
                str(tokens_csv),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    (args.out / "locust.txt").write_text(locust.stdout + locust.stderr, encoding="utf-8")
    if locust.returncode != 0:
        print(locust.stdout + locust.stderr, file=sys.stderr)
        return locust.returncode
    sys.path.insert(0, str(HERE))
    from chart import main as chart

    return chart([str(tokens_csv), "--out", str(args.chart)])


if __name__ == "__main__":
    raise SystemExit(main())

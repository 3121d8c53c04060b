"""Run ``ratelimit loadtest`` against every example app and keep the reports and charts.

From the repository root, with the test extra installed (``pip install -e ".[test]"``)::

    python examples/loadtest/run_all.py                      # writes docs/loadtest/
    python examples/loadtest/run_all.py --apps flask --rate 50 --duration 10 --out /tmp/lt

Each app (Starlette and FastAPI under uvicorn, Flask under waitress, Django under uvicorn
through its ASGI entry point) is started on a free port of 127.0.0.1 with the shared
``examples/ratelimit.toml``, given the same open-loop traffic on one URL, and stopped. For
each app ``NAME`` the report goes to ``OUT/NAME.txt`` and the chart to ``OUT/NAME.png``;
``OUT/commands.txt`` lists what ran. docs/loadtest.md shows the committed run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

#: How to serve each example app; ``{port}`` is replaced by a free port.
SERVERS: dict[str, list[str]] = {
    "starlette": ["-m", "uvicorn", "examples.starlette_app:app", "--port", "{port}"],
    "fastapi": ["-m", "uvicorn", "examples.fastapi_app:app", "--port", "{port}"],
    "flask": ["-m", "waitress", "--listen=127.0.0.1:{port}", "examples.flask_app:app"],
    "django": [
        "-m",
        "uvicorn",
        "--app-dir",
        "examples/django_project",
        "project.asgi:application",
        "--port",
        "{port}",
    ],
}


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def pick_port(preferred: int) -> int:
    """``preferred`` if nothing listens there (reports then show the usual URL), else any."""
    with socket.socket() as sock:
        try:
            sock.bind((HOST, preferred))
        except OSError:
            return free_port()
        return preferred


@contextlib.contextmanager
def serve(name: str) -> Iterator[str]:
    """Start the example app ``name`` in a subprocess; yield its base URL; stop it."""
    port = pick_port(8000)
    argv = [sys.executable, *(part.replace("{port}", str(port)) for part in SERVERS[name])]
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                error = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise SystemExit(f"{name}: the server exited with {proc.returncode}:\n{error}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: nothing listens on {HOST}:{port} after 20 s")
            time.sleep(0.05)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--apps", nargs="+", choices=sorted(SERVERS), default=list(SERVERS))
    parser.add_argument("--path", default="/api/items", help="the URL path to load")
    parser.add_argument("--rate", type=float, default=30, help="requests per second")
    parser.add_argument("--duration", type=float, default=5, help="seconds")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--expect",
        default="10/second",
        help="the limit drawn on the charts (the api rule's tightest rate)",
    )
    parser.add_argument(
        "--locust",
        type=float,
        default=10,
        metavar="SECONDS",
        help="then run examples/loadtest/locustfile.py this long against the Starlette app"
        " (0: skip)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "loadtest")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    commands = []
    for name in args.apps:
        with serve(name) as url:
            target = url + args.path
            command = [
                "ratelimit",
                "loadtest",
                target,
                "--rate",
                f"{args.rate:g}",
                "--duration",
                f"{args.duration:g}",
                "--concurrency",
                str(args.concurrency),
                "--expect",
                args.expect,
                "--plot",
                str(args.out / f"{name}.png"),
                "--quiet",
            ]
            print(f"== {name}: {shlex.join(command)}", flush=True)
            run = subprocess.run(
                [sys.executable, "-m", "ratelimit", *command[1:]],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            # The port changes from run to run: show the command as a user would type it.
            report = run.stdout.replace(url, "http://127.0.0.1:8000")
            print(report, end="", flush=True)
            if run.returncode != 0:
                print(run.stderr, file=sys.stderr)
                return run.returncode
            (args.out / f"{name}.txt").write_text(report, encoding="utf-8")
            server = shlex.join(part.replace("{port}", "8000") for part in SERVERS[name])
            shown = shlex.join(command).replace(url, "http://127.0.0.1:8000")
            shown = shown.replace(str(args.out) + os.sep, "")
            commands.append(f"{name}: python {server}\n    {shown}")
    if args.locust > 0:
        commands.append(run_locust(args.locust, args.out))
    (args.out / "commands.txt").write_text("\n".join(commands) + "\n", encoding="utf-8")
    return 0


def run_locust(seconds: float, out: Path) -> str:
    """Run the locustfile headless against the Starlette app; keep its summary in
    ``OUT/locust.txt``. Returns the command line, as a user would type it."""
    options = ["--headless", "-u", "10", "-r", "10", "-t", f"{seconds:g}s", "--only-summary"]
    with serve("starlette") as url:
        command = [
            "locust",
            "-f",
            "examples/loadtest/locustfile.py",
            "--host",
            url,
            *options,
            "--status-json",
            str(out / "locust-statuses.json"),
        ]
        print(f"== locust: {shlex.join(command)}", flush=True)
        run = subprocess.run(
            [sys.executable, "-m", "locust", *command[1:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    # locust prints its summary on stdout and its log lines (with timestamps) on stderr.
    summary = "".join(
        line
        for line in (run.stderr + run.stdout).splitlines(keepends=True)
        if not line.startswith("[") and line.strip()
    )
    print(summary, end="", flush=True)
    if run.returncode != 0:
        raise SystemExit(f"locust exited with {run.returncode}")
    (out / "locust.txt").write_text(summary, encoding="utf-8")
    shown = shlex.join([*command[:-1], "statuses.json"]).replace(url, "http://127.0.0.1:8000")
    return f"locust: python -m uvicorn examples.starlette_app:app --port 8000\n    {shown}"


if __name__ == "__main__":
    sys.exit(main())

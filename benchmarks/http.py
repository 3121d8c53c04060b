"""HTTP overhead benchmark: our middleware vs bare apps and the libraries users would pick.

Run from the repository root::

    python -m benchmarks.http            # 7 rounds of 3 s per variant and stack (~5 min)
    python -m benchmarks.http --quick    # 3 rounds of 1 s (~1 min)

(``python benchmarks/http.py`` works too.)

ASGI: a hello-world Starlette app under uvicorn (1 worker): bare, with
``ratelimit.asgi.RateLimitMiddleware`` (memory backend), with slowapi (memory). WSGI: a
hello-world Django app under gunicorn (1 gthread worker, 4 threads): bare, with
``ratelimit.contrib.django.RateLimitMiddleware`` (memory), with django-ratelimit (LocMemCache).
``wrk`` drives each server with keep-alive connections; requests per second are printed as
ratios to the bare app of the same stack. The "admit" variants use limits far above the load
(every request is admitted: this measures the overhead); the "reject" variants use 10/minute
(nearly every request is rejected with 429).

The machine this runs on may be shared and noisy, so: servers are pinned to CPU 0 and the
load generators to CPU 1 (when ``taskset`` exists); by default each variant is loaded at the
same time as the bare app (side by side, sharing CPU 0), so that whatever else runs slows both
alike (``--sequential`` loads one server at a time instead, in rotating order); medians over
the rounds are reported; and besides requests/s, the server's own CPU time per request is
read from ``/proc``. For a saturated single-worker server, requests/s = 1 / CPU per request,
so the CPU ratio is the throughput ratio the variant would have on an otherwise idle machine.

The same module provides the apps (``asgi_app`` and ``django_app`` factories), selected by the
``BENCH_VARIANT`` environment variable, so that the servers import them by name.
"""

from __future__ import annotations

import sys

# Run as a script, this file's directory would come first on sys.path and "http" would shadow
# the standard library's package: put the repository root there instead.
if __name__ == "__main__" and sys.path and sys.path[0].endswith("benchmarks"):
    sys.path[0] = sys.path[0][: -len("benchmarks")].rstrip("/\\") or "."

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HIGH = "1000000/second"
LOW = "10/minute"

VARIANTS = {
    "asgi": ["bare", "ours", "slowapi", "ours-reject", "slowapi-reject"],
    "wsgi": ["bare", "ours", "django-ratelimit", "ours-reject", "django-ratelimit-reject"],
}


# --------------------------------------------------------------------------- the apps


def asgi_app() -> Any:
    """The Starlette app for ``BENCH_VARIANT`` (uvicorn ``--factory``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    variant = os.environ.get("BENCH_VARIANT", "bare")
    rate = LOW if variant.endswith("-reject") else HIGH

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    app = Starlette(routes=[Route("/", hello)])
    if variant.startswith("ours"):
        from ratelimit.asgi import RateLimitMiddleware

        config = {"backend": "memory://", "rules": [{"name": "all", "path": "/**", "limit": rate}]}
        return RateLimitMiddleware(app, config=config)
    if variant.startswith("slowapi"):
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.middleware import SlowAPIMiddleware
        from slowapi.util import get_remote_address

        limiter = Limiter(
            key_func=get_remote_address, default_limits=[rate], storage_uri="memory://"
        )
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        app.add_middleware(SlowAPIMiddleware)
    return app


def django_app() -> Any:
    """The Django WSGI app for ``BENCH_VARIANT`` (gunicorn ``'benchmarks.http:django_app()'``)."""
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    variant = os.environ.get("BENCH_VARIANT", "bare")
    rate = LOW if variant.endswith("-reject") else HIGH

    def hello(request: HttpRequest) -> HttpResponse:
        return HttpResponse("Hello, world!", content_type="text/plain")

    view: Any = hello
    middleware: list[str] = []
    if variant.startswith("ours"):
        middleware = ["ratelimit.contrib.django.RateLimitMiddleware"]
    elif variant.startswith("django-ratelimit"):
        from django_ratelimit.decorators import ratelimit

        view = ratelimit(
            key="ip", rate=rate.replace("second", "s").replace("minute", "m"), block=True
        )(hello)
    module = sys.modules[__name__]
    module.urlpatterns = [path("", view)]  # type: ignore[attr-defined]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=middleware,
        INSTALLED_APPS=[],
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        RATELIMIT={"rules": [{"name": "all", "path": "/**", "limit": rate}]},
        USE_TZ=True,
    )
    django.setup()
    return get_wsgi_application()


# --------------------------------------------------------------------------- the driver


def _pin(cpu: str) -> list[str]:
    return ["taskset", "-c", cpu] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def _server_command(stack: str, port: int) -> list[str]:
    if stack == "asgi":
        return [
            *_pin("0"),
            sys.executable, "-m", "uvicorn", "--factory", "benchmarks.http:asgi_app",
            "--port", str(port), "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
    return [
        *_pin("0"),
        sys.executable, "-m", "gunicorn", "benchmarks.http:django_app()",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread",
        "--threads", "4", "--log-level", "warning",
    ]  # fmt: skip


def _wrk(url: str, seconds: float, connections: int) -> tuple[float, int, int]:
    """(requests/s, requests, non-2xx responses) from one wrk run."""
    out = subprocess.run(
        [*_pin("1"), "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, total, int(bad.group(1)) if bad else 0


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(root: int) -> float:
    """User + system CPU seconds of process ``root`` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = int(fields[11]) + int(fields[12])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0) for pid in tree) / _TICKS


@contextlib.contextmanager
def _server(stack: str, variant: str) -> Iterator[tuple[str, int]]:
    """One server for a variant, running until the block ends; yields its URL and pid."""
    sys.path.insert(0, str(ROOT))
    from tests.support.servers import free_port, stop_process, wait_for_port

    port = free_port()
    env = {**os.environ, "BENCH_VARIANT": variant, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        _server_command(stack, port),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 60, proc)
        yield f"http://127.0.0.1:{port}/", proc.pid
    finally:
        stop_process(proc)


Run = tuple[float, float, float, float, float]


def _measure(
    servers: dict[str, tuple[str, int]], names: list[str], seconds: float, connections: int
) -> dict[str, tuple[float, float, float]]:
    """Load the servers ``names`` at the same time (one wrk each): per server, (requests/s,
    share rejected, server CPU µs per request)."""
    before = {name: _cpu_seconds(servers[name][1]) for name in names}
    runs: dict[str, tuple[float, int, int]] = {}

    def load(name: str) -> None:
        runs[name] = _wrk(servers[name][0], seconds, connections)

    threads = [threading.Thread(target=load, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out = {}
    for name in names:
        rps, total, bad = runs[name]
        cpu_us = (_cpu_seconds(servers[name][1]) - before[name]) / max(total, 1) * 1e6
        out[name] = (rps, bad / total if total else 0.0, cpu_us)
    return out


def _run_stack(
    stack: str, rounds: int, seconds: float, connections: int, side_by_side: bool
) -> dict[str, list[Run]]:
    """Every variant of a stack, per round: (requests/s, share rejected, ratio to bare,
    server CPU µs per request, CPU ratio = bare's CPU per request / the variant's).

    All servers of the stack run at once (idle ones cost nothing). Side by side (default),
    each variant is loaded at the same time as the bare app, both servers sharing one CPU, so
    whatever else runs on the machine slows both alike and cancels in the ratio. Otherwise
    (``--sequential``) each round measures every variant back to back, in a rotating order,
    against the same round's bare run. The CPU figure (the server's own CPU time per request)
    is what throughput would be on an idle machine: a saturated single-worker server serves
    1 / (CPU per request) requests/s.
    """
    variants = VARIANTS[stack]
    results: dict[str, list[Run]] = {v: [] for v in variants}
    with contextlib.ExitStack() as stack_of_servers:
        servers = {v: stack_of_servers.enter_context(_server(stack, v)) for v in variants}
        for url, _ in servers.values():
            _wrk(url, 1, connections)  # warm-up
        for r in range(rounds):
            rows: list[tuple[str, tuple[float, float, float], tuple[float, float, float]]] = []
            if side_by_side:
                for variant in variants[1:]:
                    pair = _measure(servers, ["bare", variant], seconds, connections)
                    rows.append((variant, pair[variant], pair["bare"]))
                bare = rows[0][2]
                rows.insert(0, ("bare", bare, bare))
            else:
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                measured = {v: _measure(servers, [v], seconds, connections)[v] for v in order}
                rows = [(v, measured[v], measured["bare"]) for v in variants]
            for variant, (rps, rejected, cpu_us), (bare_rps, _, bare_cpu) in rows:
                run = (rps, rejected, rps / bare_rps, cpu_us, bare_cpu / cpu_us if cpu_us else 0.0)
                results[variant].append(run)
                print(
                    f"round {r + 1}/{rounds} {stack} {variant:24} {rps:8.0f} req/s "
                    f"ratio {run[2]:5.2f}  cpu {cpu_us:6.0f} us/req ratio {run[4]:5.2f} "
                    f"({rejected:.0%} rejected)",
                    file=sys.stderr,
                    flush=True,
                )
    return results


NAMES = {
    "asgi": "Starlette + uvicorn (ASGI)",
    "wsgi": "Django + gunicorn gthread (WSGI)",
}


def main(argv: list[str] | None = None) -> int:
    """Run every variant and print the table."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s per variant")
    parser.add_argument("--rounds", type=int, default=None, help="default 7 (quick: 3)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per run (3)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--stack", choices=["asgi", "wsgi", "both"], default="both")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="load one server at a time (default: each variant side by side with the bare app)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    rounds = args.rounds or (3 if args.quick else 7)
    seconds = args.duration or (1.0 if args.quick else 3.0)
    stacks = ["asgi", "wsgi"] if args.stack == "both" else [args.stack]
    results = {
        stack: _run_stack(stack, rounds, seconds, args.connections, not args.sequential)
        for stack in stacks
    }
    mode = "sequential runs" if args.sequential else "each variant side by side with bare"
    print(
        f"\n{rounds} rounds x {seconds:g} s per variant ({mode}), wrk -t1 "
        f"-c{args.connections}; medians over rounds. req/s ratio = variant / bare of the same "
        "round; CPU ratio = bare's server "
        "CPU per request / the variant's (the throughput ratio on an otherwise idle machine)\n"
    )
    print(
        f"| {'stack':32} | {'variant':24} | {'req/s':>7} | {'req/s ratio':>11} "
        f"| {'CPU us/req':>10} | {'CPU ratio':>9} | {'rejected':>8} |"
    )
    print(f"|{'-' * 34}|{'-' * 26}|{'-' * 9}|{'-' * 13}|{'-' * 12}|{'-' * 11}|{'-' * 10}|")
    for stack in stacks:
        for variant, runs in results[stack].items():
            rps, rejected, ratio, cpu, cpu_ratio = (
                statistics.median(run[i] for run in runs) for i in range(5)
            )
            print(
                f"| {NAMES[stack]:32} | {variant:24} | {rps:7.0f} | {ratio:11.2f} "
                f"| {cpu:10.0f} | {cpu_ratio:9.2f} | {rejected:8.0%} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Floods on production stacks: does the limit hold when the server is busy?

Run from the repository root (needs the ``bench`` extra, ``wrk`` and ``redis-server``)::

    python -m benchmarks.flood                       # both stacks, every algorithm (~4 min)
    python -m benchmarks.flood --stack uvicorn --seconds 5

For each stack — ``uvicorn``: ``gunicorn -w 4 -k uvicorn.workers.UvicornWorker`` (uvloop and
httptools); ``gthread``: ``gunicorn -w 4 -k gthread --threads 32`` (a WSGI app) — the server
runs the **default config** with a Redis backend on loopback (so ``timeout = 0.1``,
``on_error = "allow"``) and one route per algorithm limited to ``100/minute`` (the leaky
bucket in police mode: shaping would delay, not reject). One client identity (127.0.0.1), so
each route admits its limit in all, across the four workers. It reports:

* **burst**: 1,000 requests released at once on one route (every connection opened first,
  then every request written in one go): how many were admitted (2xx), rejected (429) or
  refused as unavailable (503), and the slowest answer;
* **flood**: ``wrk -t2 -c1000`` for ``--seconds`` on a fresh route: admitted, 429, 503, and the
  server CPU per request (utime + stime of the gunicorn tree, /proc);
* **paused Redis**: the Redis server stopped (``SIGSTOP``), 20 requests one after another on a
  fresh route: the slowest answer (every one must come within ``timeout`` + 50 ms);
* the circuit-breaker WARNING lines the workers logged during the burst and flood (a
  healthy Redis must log none) and during the pause (at most one per worker).

Fixed windows of a minute are aligned to the clock, so a run that straddles the turn of a
minute is rightly admitted twice; the benchmark waits, when needed, until the run fits
within one minute.

The module also provides the servers' apps (``asgi_app``, ``wsgi_app``) and the burst client
(:func:`burst`), used by ``tests/flood``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # python benchmarks/flood.py
    sys.path.insert(0, str(ROOT))

#: route name → (algorithm, extra options of the limit)
ALGORITHMS: dict[str, tuple[str, dict[str, Any]]] = {
    "fixed": ("fixed_window", {}),
    "sliding": ("sliding_window", {}),
    "log": ("sliding_log", {}),
    "token": ("token_bucket", {}),
    "leaky": ("leaky_bucket", {"mode": "police"}),
}
#: Route prefixes: one fresh counter per phase.
PHASES = ("burst", "flood", "paused", "extra")
RATE = "100/minute"
STATUS_LUA = Path(__file__).with_name("wrk_statuses.lua")


#: The response header the apps send with ``FLOOD_USAGE`` set: what each request really cost.
USAGE_HEADER = "x-usage"


def flood_config(
    redis_url: str, rate: str = RATE, share: int | None = None, reserve: int | None = None
) -> dict[str, Any]:
    """The default config plus a Redis backend and one rule per (phase, algorithm); with
    ``share`` (env ``FLOOD_SHARE``), every limit that can take a share takes one (not
    sliding_log, which refuses it); with ``reserve`` (env ``FLOOD_RESERVE``), every rule
    that can carry a debt reserves that cost and is charged what the response's
    ``x-usage`` header says (``charge``; sliding_log, which refuses it, is left out)."""
    rules: list[dict[str, Any]] = []
    for phase in PHASES:
        for name, (algorithm, options) in ALGORITHMS.items():
            limit = {"rate": rate, "algorithm": algorithm, **options}
            if share is not None and algorithm != "sliding_log":
                limit["share"] = share
            rule = {"name": f"{phase}-{name}", "path": f"/{phase}/{name}", "limits": [limit]}
            if reserve is not None:
                if algorithm == "sliding_log":
                    continue
                rule.update(cost=reserve, charge=f"response-header:{USAGE_HEADER}")
            rules.append(rule)
    return {"backend": redis_url, "rules": rules}


def _config_from_env() -> dict[str, Any]:
    share, reserve = os.environ.get("FLOOD_SHARE"), os.environ.get("FLOOD_RESERVE")
    return flood_config(
        os.environ["FLOOD_REDIS_URL"],
        os.environ.get("FLOOD_RATE", RATE),
        int(share) if share else None,
        int(reserve) if reserve else None,
    )


def _usage() -> list[tuple[str, str]]:
    """The ``x-usage`` header the apps send (``FLOOD_USAGE``), or none."""
    usage = os.environ.get("FLOOD_USAGE")
    return [(USAGE_HEADER, usage)] if usage else []


def asgi_app() -> Any:
    """A hello-world ASGI app behind the ASGI middleware (``FLOOD_REDIS_URL``)."""
    from ratelimit.asgi import RateLimitMiddleware

    async def hello(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        headers += [(k.encode(), v.encode()) for k, v in _usage()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    return RateLimitMiddleware(hello, config=_config_from_env())


def wsgi_app() -> Any:
    """A hello-world WSGI app behind the WSGI middleware (``FLOOD_REDIS_URL``)."""
    from ratelimit.wsgi import RateLimitMiddleware

    def hello(environ: Any, start_response: Any) -> list[bytes]:
        headers = [("Content-Type", "text/plain"), ("Content-Length", "2"), *_usage()]
        start_response("200 OK", headers)
        return [b"ok"]

    return RateLimitMiddleware(hello, config=_config_from_env())


def django_app() -> Any:
    """A hello-world Django app behind the Django middleware (``settings.RATELIMIT``)."""
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpRequest, HttpResponse
    from django.urls import re_path

    def hello(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok", content_type="text/plain")

    sys.modules[__name__].urlpatterns = [re_path(r"", hello)]  # type: ignore[attr-defined]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="flood",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=["ratelimit.contrib.django.RateLimitMiddleware"],
        INSTALLED_APPS=[],
        RATELIMIT=_config_from_env(),
        USE_TZ=True,
    )
    django.setup()
    return get_wsgi_application()


STACKS = ("uvicorn", "gthread")
#: Stacks the tests also try (not in the benchmark's table): waitress, one process of 32
#: threads; Django under gunicorn gthread.
EXTRA_STACKS = ("waitress", "django")


def server_command(stack: str, port: int, workers: int = 4) -> list[str]:
    """gunicorn with ``workers`` workers of the stack's kind, on ``port`` (``waitress``: one
    process, 32 threads)."""
    if stack == "waitress":
        return [
            sys.executable, "-m", "waitress", "--listen", f"127.0.0.1:{port}", "--threads",
            "32", "--backlog", "4096", "--connection-limit", "2000", "--call",
            "benchmarks.flood:wsgi_app",
        ]  # fmt: skip
    common = ["--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--log-level", "warning"]
    if stack == "uvicorn":
        app = ["benchmarks.flood:asgi_app()", "--worker-class", "uvicorn.workers.UvicornWorker"]
    elif stack == "gthread":
        app = ["benchmarks.flood:wsgi_app()", "--worker-class", "gthread", "--threads", "32"]
    elif stack == "django":
        app = ["benchmarks.flood:django_app()", "--worker-class", "gthread", "--threads", "32"]
    else:
        raise ValueError(f"unknown stack {stack!r} (one of {', '.join(STACKS)})")
    return [sys.executable, "-m", "gunicorn", *app, *common, "--backlog", "4096"]


@dataclass
class Server:
    """A running flood server: its URL, pid and the file its log goes to."""

    url: str
    pid: int
    log: Path

    def breaker_lines(self) -> list[str]:
        """The circuit-breaker WARNING lines logged so far."""
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if "circuit open" in line]

    def tail(self, lines: int = 20) -> str:
        """The last lines of the server's log (for a failure message)."""
        text = self.log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def flood_server(
    stack: str,
    redis_url: str,
    workers: int = 4,
    rate: str = RATE,
    share: int | None = None,
    charge: tuple[int, int] | None = None,
) -> Iterator[Server]:
    """A gunicorn flood server until the block ends (``share``: see :func:`flood_config`;
    ``charge``: (reservation, usage) — every rule reserves the one and is charged the
    other)."""
    from tests.support.servers import free_port, stop_process, wait_for_port

    port = free_port()
    env = {**os.environ, "FLOOD_REDIS_URL": redis_url, "FLOOD_RATE": rate, "PYTHONPATH": str(ROOT)}
    if share is not None:
        env["FLOOD_SHARE"] = str(share)
    if charge is not None:
        env["FLOOD_RESERVE"], env["FLOOD_USAGE"] = str(charge[0]), str(charge[1])
    env.pop("PYTHONWARNINGS", None)
    with tempfile.NamedTemporaryFile("w+b", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(
            server_command(stack, port, workers),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, 60, proc)
        server = Server(f"http://127.0.0.1:{port}", proc.pid, Path(log.name))
        _until_answering(server, workers)
        yield server
    finally:
        stop_process(proc)
        with contextlib.suppress(OSError):
            os.unlink(log.name)


def _until_answering(server: Server, workers: int, within: float = 60.0) -> None:
    """Wait until the server answers ``2 × workers`` requests on an unlimited path (the
    workers have booted: a burst then measures deciding, not importing)."""
    deadline = time.monotonic() + within
    answered = 0
    while answered < 2 * workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not answer within {within:g}s:\n{server.tail()}")
        got = sequential(server.url, "/", 1)
        answered += got.admitted
        if not got.admitted:
            time.sleep(0.1)


# --------------------------------------------------------------------------- the clients


@dataclass
class Result:
    """Responses by status, and the slowest answer in seconds."""

    statuses: Counter[int] = field(default_factory=Counter)
    slowest: float = 0.0
    errors: int = 0

    @property
    def admitted(self) -> int:
        """Responses with a 2xx status."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def line(self) -> str:
        """``admitted / 429 / 503 / other`` as text."""
        other = sum(self.statuses.values()) - self.admitted
        other -= self.statuses[429] + self.statuses[503]
        return (
            f"{self.admitted} admitted, {self.statuses[429]} × 429, {self.statuses[503]} × 503, "
            f"{other + self.errors} other"
        )


async def _burst(host: str, port: int, path: str, n: int, timeout: float) -> Result:
    result = Result()
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, n, 100):  # open in waves: a connect storm overflows the SYN queue
        waves = [asyncio.open_connection(host, port) for _ in range(min(100, n - start))]
        opened.extend(await asyncio.gather(*waves))

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        began = time.perf_counter()
        try:
            writer.write(request)
            async with asyncio.timeout(timeout / 2):
                line = await reader.readline()
                await reader.read()  # until the server closes
            result.statuses[int(line.split()[1])] += 1
        except (OSError, IndexError, ValueError, TimeoutError):
            result.errors += 1
        finally:
            result.slowest = max(result.slowest, time.perf_counter() - began)
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(one(r, w) for r, w in opened)), timeout)
    return result


def burst(url: str, path: str, n: int = 1000, timeout: float = 120.0) -> Result:
    """``n`` requests on ``path`` released at once, each on its own connection."""
    host, port = url.removeprefix("http://").split(":")
    return asyncio.run(_burst(host, int(port), path, n, timeout))


def sequential(url: str, path: str, n: int) -> Result:
    """``n`` requests on ``path`` one after another, each on its own connection."""
    host, port = url.removeprefix("http://").split(":")
    total = Result()
    for _ in range(n):
        one = asyncio.run(_burst(host, int(port), path, 1, 30.0))
        total.statuses.update(one.statuses)
        total.errors += one.errors
        total.slowest = max(total.slowest, one.slowest)
    return total


def _wrk(url: str, seconds: float, connections: int, threads: int) -> Any:
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--timeout", "10s",
        "-s", str(STATUS_LUA), url,
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _statuses(proc: Any, seconds: float) -> Result:
    out, err = proc.communicate(timeout=seconds + 120)
    for line in out.splitlines():
        if line.startswith("STATUSES "):
            ok, limited, unavailable, other = map(int, line.split()[1:])
            return Result(Counter({200: ok, 429: limited, 503: unavailable, 0: other}))
    raise RuntimeError(f"wrk failed: {out[-500:]} {err[-500:]}")


def wrk_flood(url: str, path: str, seconds: float, connections: int = 1000) -> Result:
    """``wrk -t2 -c<connections>`` on ``path`` for ``seconds``: responses by status."""
    return _statuses(_wrk(url + path, seconds, connections, 2), seconds)


def wrk_floods(url: str, paths: list[str], seconds: float, connections: int) -> list[Result]:
    """One ``wrk -t1 -c<connections>`` per path, all at once, for ``seconds``."""
    procs = [_wrk(url + path, seconds, connections, 1) for path in paths]
    return [_statuses(proc, seconds) for proc in procs]


def clear_of_a_minute_edge(needed: float, period: float = 60.0) -> None:
    """Wait until ``needed`` seconds fit before the next edge of a fixed window of
    ``period`` seconds (aligned to the clock)."""
    left = period - time.time() % period
    if left < needed:
        time.sleep(left + 0.05)


# --------------------------------------------------------------------------- the report


def run_stack(stack: str, redis: Any, seconds: float, log: Any) -> list[str]:
    """Every measurement on one stack; the rows of its table."""
    from benchmarks.http import cpu_seconds

    rows = []
    with flood_server(stack, redis.url) as server:
        for name in ALGORITHMS:
            clear_of_a_minute_edge(20.0)
            got = burst(server.url, f"/burst/{name}")
            log(f"{stack} burst {name}: {got.line()}, slowest {got.slowest:.2f}s")
            clear_of_a_minute_edge(seconds + 10)
            before = cpu_seconds(server.pid)
            flood = wrk_flood(server.url, f"/flood/{name}", seconds)
            cpu = cpu_seconds(server.pid) - before
            total = sum(flood.statuses.values())
            cpu_us = cpu / max(total, 1) * 1e6
            log(f"{stack} flood {name}: {flood.line()}, {cpu_us:.0f} µs CPU per request")
            rows.append(
                f"| {stack} | {name} | {got.admitted} ({got.statuses[503]}) | {got.slowest:.2f} | "
                f"{flood.admitted} of {total} ({flood.statuses[503]}) | {cpu_us:.0f} |"
            )
        lines = len(server.breaker_lines())
        rows.append(f"| {stack} | breaker WARNING lines, healthy Redis | {lines} | | | |")
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            paused = sequential(server.url, "/paused/fixed", 20)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        after = len(server.breaker_lines()) - lines
        log(f"{stack} paused: {paused.line()}, slowest {paused.slowest:.3f}s, {after} WARNING")
        rows.append(
            f"| {stack} | Redis paused: 20 requests | {paused.line()} | {paused.slowest:.3f} | "
            f"{after} WARNING lines | |"
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the floods and print a Markdown table."""
    from tests.support.redis_server import redis_server

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=STACKS, action="append")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk flood duration")
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    rows = [
        "| stack | route | burst of 1,000: admitted (503) | slowest s | "
        f"wrk -c1000 {args.seconds:g}s: admitted of total (503) | server CPU µs/request |",
        "|---|---|---|---|---|---|",
    ]
    for stack in args.stack or STACKS:
        with redis_server() as redis:
            rows.extend(run_stack(stack, redis, args.seconds, log))
    print(f"\nLimit {RATE} per route, default config (timeout 0.1 s, on_error allow).\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

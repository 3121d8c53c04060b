"""HTTP overhead on production stacks: server CPU per request, ours vs bare and the peers.

Run from the repository root (needs the ``bench`` extra, ``wrk`` and ``redis-server``)::

    python -m benchmarks.http                    # every stack, 5 rounds (~17 min)
    python -m benchmarks.http --quick            # 1 round, few requests: a smoke test
    python -m benchmarks.http --stack uvicorn --variants ours-memory,floor --rounds 3

(``python benchmarks/http.py`` works too.)

Stacks (one hello-world app each, one worker process):

* ``uvicorn``: Starlette under ``uvicorn --http httptools --loop uvloop --no-access-log``
  (what ``uvicorn[standard]`` runs in production);
* ``django`` / ``flask``: under ``gunicorn --worker-class gthread --workers 1 --threads 4``
  (no access log);
* ``uvicorn-h11``: Starlette under ``uvicorn --http h11 --loop asyncio`` (the pure-Python
  parser and event loop of a plain ``pip install uvicorn``): a secondary table.

Variants: ``bare``; ``floor``, a pure wrapper (ASGI or WSGI) that appends two constant
headers, the least any header-sending middleware can cost; ``floor-redis``, the floor plus
one raw ``EVALSHA`` per request of a script that does only what a decision must on Redis
(``TIME``, ``GET``, ``SET PX``), with redis-py (asyncio for ASGI): the least any Redis-backed
limiter can cost without batching; ours on the memory and on the Redis
backend (``1000000/second``: every request admitted, so this is the overhead); ours on Redis
with every request rejected (``1/hour``, one client: after the first request every answer is
a 429, which the rejection cache answers without a round trip); ours on memory with
``[metrics] prometheus = true`` (what recording every outcome costs); and the peers, each on its
memory and its Redis storage: slowapi (Starlette, its pure-ASGI middleware, headers on),
django-ratelimit (Django's locmem and ``RedisCache``), flask-limiter (headers on). Redis is a
``redis-server`` the benchmark starts on a free port and stops (its own CPU is not counted:
it is a shared service).

The table also shows the commands Redis processed per request (those run inside our Lua
script included: ours is one ``EVALSHA`` running ``TIME``, ``GET`` and ``SET``, so 4), a check
that the Redis variants really reach Redis (a failing backend would be answered fast, and
look cheap).

Method: the server runs pinned to CPU 1 (``taskset -c 1``), the load generator (``wrk``, one
thread, ``--connections`` keep-alive connections, a Lua script that stops after exactly
``--requests`` responses) and Redis on CPU 0. The headline is the **server CPU time per
request**: utime + stime from ``/proc/<pid>/stat`` of the server process and its workers,
before and after a run of a fixed number of requests, divided by that number. It does not
depend on what else the machine runs (the load others put on the CPUs changes wall time, not
the CPU a request needs), and for a saturated single-worker server requests/s = 1 / (CPU per
request), so **CPU ratio = bare's CPU per request / the variant's** is the throughput ratio
on an otherwise idle machine: 1.00 is as cheap as bare, 0.85 means the variant costs 1/0.85 =
1.18× bare's CPU per request. Every variant is measured side by side with bare: in each round,
for every variant, one run of bare and one of the variant back to back (the order alternating
between rounds), the ratio taken within the pair; the table shows medians over the rounds.
On a busy machine, ``--together SECONDS`` loads each pair at the same time instead (both
servers sharing the server CPU, one wrk each, for that long), so that whatever else runs
weighs on both alike. ``BENCH_THREADS`` sets gunicorn's ``--threads`` (default 4).

The same module provides the apps (``starlette_app``, ``django_app``, ``flask_app``), built
for the variant named by ``BENCH_VARIANT`` (``BENCH_REDIS_URL`` for the Redis ones), so the
servers import them by name.
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
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HIGH = "1000000/second"  # never bites: every request is admitted (and counted)
REJECT = "1/hour"  # one client: every request after the first is rejected
SERVER_CPU = "1"
CLIENT_CPU = "0"
#: Two constant headers like ours (``RateLimit-Policy`` and ``RateLimit``), for the floor.
FLOOR_HEADERS = [
    (b"ratelimit-policy", b'"all";q=1000000;w=1'),
    (b"ratelimit", b'"all";r=999999;t=1'),
]

PEERS = {
    "uvicorn": "slowapi",
    "uvicorn-h11": "slowapi",
    "django": "django-ratelimit",
    "flask": "flask-limiter",
}
STACKS = ["uvicorn", "django", "flask", "uvicorn-h11"]
NAMES = {
    "uvicorn": "uvicorn httptools+uvloop, Starlette",
    "django": "gunicorn gthread, Django",
    "flask": "gunicorn gthread, Flask",
    "uvicorn-h11": "uvicorn h11+asyncio, Starlette",
}
#: Requests per run, by stack: enough for ≥ 1 s of server CPU (/proc counts 10 ms ticks).
REQUESTS = {"uvicorn": 40_000, "django": 10_000, "flask": 10_000, "uvicorn-h11": 10_000}


def variants_of(stack: str) -> list[str]:
    """The variants of a stack, bare first."""
    peer = PEERS[stack]
    return [
        "bare",
        "floor",
        "floor-redis",
        "ours-memory",
        "ours-memory-prometheus",
        "ours-redis",
        "ours-redis-share",
        "ours-redis-reject",
        f"{peer}-memory",
        f"{peer}-redis",
    ]


# --------------------------------------------------------------------------- the apps


def _variant() -> tuple[str, str, str]:
    """(variant, its rate, its storage URL) from the environment.

    ``BENCH_PATCH=module:function`` calls that function first (to measure a patched copy of
    our code in the server process, see ``benchmarks/overhead.py``).
    """
    patch = os.environ.get("BENCH_PATCH")
    if patch:
        import importlib

        module, _, function = patch.partition(":")
        getattr(importlib.import_module(module), function)()
    variant = os.environ.get("BENCH_VARIANT", "bare")
    rate = REJECT if variant.endswith("-reject") else HIGH
    storage = os.environ["BENCH_REDIS_URL"] if "-redis" in variant else "memory://"
    return variant, rate, storage


def _our_config(rate: str, storage: str) -> dict[str, Any]:
    config: dict[str, Any] = {
        "backend": storage,
        "rules": [{"name": "all", "path": "/**", "limit": rate}],
    }
    if os.environ.get("BENCH_VARIANT", "").endswith("-share"):
        # up to BENCH_SHARE (64) units per Redis call (SPEC §5 share)
        config["rules"][0]["share"] = int(os.environ.get("BENCH_SHARE", "64"))
    if os.environ.get("BENCH_VARIANT", "").endswith("-prometheus"):
        config["metrics"] = {"prometheus": True}  # what recording every outcome costs
    return config


def floor_asgi(app: Any) -> Any:
    """The floor: a pure ASGI wrapper that appends two constant headers to every response."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), *FLOOR_HEADERS]
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapper


def floor_wsgi(app: Any) -> Any:
    """The floor for WSGI: appends two constant headers in ``start_response``."""
    extra = [(k.decode(), v.decode()) for k, v in FLOOR_HEADERS]

    def wrapper(environ: Any, start_response: Any) -> Any:
        def start_with_headers(status: str, headers: Any, exc_info: Any = None) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        return app(environ, start_with_headers)

    return wrapper


#: What a decision must do on Redis, and no more: read the clock, read and write one key.
FLOOR_SCRIPT = (
    "local t = redis.call('TIME') local v = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], t[1], 'PX', 60000) return v"
)
FLOOR_KEY = "bench:floor:{127.0.0.1}"


def floor_redis_asgi(app: Any, url: str) -> Any:
    """The Redis floor: one raw ``EVALSHA`` of :data:`FLOOR_SCRIPT` per request (redis-py's
    asyncio client, same timeout as ours), then the floor's two headers."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url, socket_timeout=0.1, socket_connect_timeout=0.1)
    script = client.register_script(FLOOR_SCRIPT)
    inner = floor_asgi(app)

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await script(keys=[FLOOR_KEY])
        await inner(scope, receive, send)

    return wrapper


def floor_redis_wsgi(app: Any, url: str) -> Any:
    """The Redis floor for WSGI: one raw blocking ``EVALSHA`` per request, then the floor."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=0.1, socket_connect_timeout=0.1)
    script = client.register_script(FLOOR_SCRIPT)
    inner = floor_wsgi(app)

    def wrapper(environ: Any, start_response: Any) -> Any:
        script(keys=[FLOOR_KEY])
        return inner(environ, start_response)

    return wrapper


def starlette_app() -> Any:
    """The Starlette app for ``BENCH_VARIANT`` (``uvicorn --factory``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    variant, rate, storage = _variant()

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    app = Starlette(routes=[Route("/", hello)])
    if variant == "floor":
        return floor_asgi(app)
    if variant == "floor-redis":
        return floor_redis_asgi(app, storage)
    if variant.startswith("ours"):
        from ratelimit.asgi import RateLimitMiddleware

        return RateLimitMiddleware(app, config=_our_config(rate, storage))
    if variant.startswith("slowapi"):
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.middleware import SlowAPIASGIMiddleware
        from slowapi.util import get_remote_address

        limiter = Limiter(
            key_func=get_remote_address,
            default_limits=[rate],
            storage_uri=storage,
            headers_enabled=True,
        )
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        app.add_middleware(SlowAPIASGIMiddleware)
    return app


def django_app() -> Any:
    """The Django WSGI app for ``BENCH_VARIANT`` (gunicorn ``'benchmarks.http:django_app()'``)."""
    import django
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    variant, rate, storage = _variant()

    def hello(request: HttpRequest) -> HttpResponse:
        return HttpResponse("Hello, world!", content_type="text/plain")

    view: Any = hello
    middleware: list[str] = []
    cache: dict[str, Any] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if variant.startswith("ours"):
        middleware = ["ratelimit.contrib.django.RateLimitMiddleware"]
    elif variant.startswith("django-ratelimit"):
        from django_ratelimit.decorators import ratelimit

        if storage != "memory://":
            cache = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": storage}
        django_rate = rate.replace("/second", "/s").replace("/hour", "/h")
        view = ratelimit(key="ip", rate=django_rate, block=True)(hello)
    module = sys.modules[__name__]
    module.urlpatterns = [path("", view)]  # type: ignore[attr-defined]
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=middleware,
        INSTALLED_APPS=[],
        CACHES={"default": cache},
        RATELIMIT=_our_config(rate, storage),
        USE_TZ=True,
    )
    django.setup()
    app = get_wsgi_application()
    if variant == "floor-redis":
        return floor_redis_wsgi(app, storage)
    return floor_wsgi(app) if variant == "floor" else app


def flask_app() -> Any:
    """The Flask app for ``BENCH_VARIANT`` (gunicorn ``'benchmarks.http:flask_app()'``)."""
    from flask import Flask

    variant, rate, storage = _variant()
    app = Flask(__name__)

    @app.get("/")
    def hello() -> tuple[str, int, dict[str, str]]:
        return "Hello, world!", 200, {"content-type": "text/plain"}

    if variant == "floor":
        app.wsgi_app = floor_wsgi(app.wsgi_app)  # type: ignore[method-assign]
    elif variant == "floor-redis":
        app.wsgi_app = floor_redis_wsgi(app.wsgi_app, storage)  # type: ignore[method-assign]
    elif variant.startswith("ours"):
        from ratelimit.contrib.flask import RateLimit

        app.config["RATELIMIT"] = _our_config(rate, storage)
        RateLimit(app)
    elif variant.startswith("flask-limiter"):
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address

        Limiter(
            get_remote_address,
            app=app,
            default_limits=[rate],
            storage_uri=storage,
            headers_enabled=True,
        )
    return app


# --------------------------------------------------------------------------- servers


def pinned(cpu: str) -> list[str]:
    """``taskset -c <cpu>`` when there are CPUs to pin to."""
    return ["taskset", "-c", cpu] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def server_command(stack: str, port: int, factory: str | None = None) -> list[str]:
    """The command line of a stack's server, pinned to the server CPU (``factory``: another
    uvicorn app factory than :func:`starlette_app`)."""
    if stack.startswith("uvicorn"):
        http, loop = ("h11", "asyncio") if stack == "uvicorn-h11" else ("httptools", "uvloop")
        return [
            *pinned(SERVER_CPU),
            sys.executable, "-m", "uvicorn",
            "--factory", factory or "benchmarks.http:starlette_app",
            "--host", "127.0.0.1", "--port", str(port), "--http", http, "--loop", loop,
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
    return [
        *pinned(SERVER_CPU),
        sys.executable, "-m", "gunicorn", f"benchmarks.http:{stack}_app()",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread",
        "--threads", os.environ.get("BENCH_THREADS", "4"), "--log-level", "warning",
    ]  # fmt: skip


@contextlib.contextmanager
def server(
    stack: str,
    variant: str,
    redis_url: str = "",
    extra_env: dict[str, str] | None = None,
    factory: str | None = None,
) -> Iterator[tuple[str, int]]:
    """One server for a variant, running until the block ends; yields its URL and pid."""
    from tests.support.servers import free_port, stop_process, wait_for_port

    port = free_port()
    env = {
        **os.environ,
        "BENCH_VARIANT": variant,
        "BENCH_REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        server_command(stack, port, factory),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if os.environ.get("BENCH_QUIET_SERVER") else None,
    )
    try:
        wait_for_port(port, 60, proc)
        yield f"http://127.0.0.1:{port}/", proc.pid
    finally:
        stop_process(proc)


@contextlib.contextmanager
def redis_for_benchmark() -> Iterator[str]:
    """A ``redis-server`` on a free port, pinned with the load generator; yields its URL."""
    from tests.support.redis_server import redis_server

    global _redis_client
    import redis as redis_py

    with redis_server() as redis:
        if redis.process is not None and pinned(CLIENT_CPU):
            subprocess.run(
                ["taskset", "-pc", CLIENT_CPU, str(redis.process.pid)],
                check=True,
                capture_output=True,
            )
        _redis_client = redis_py.Redis.from_url(redis.url)
        try:
            yield redis.url
        finally:
            _redis_client.close()
            _redis_client = None


# --------------------------------------------------------------------------- measuring

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

#: A wrk script that stops after exactly N responses (``wrk ... -- N``), printing them and
#: how many were not 2xx.
COUNT_LUA = Path(__file__).with_name("wrk_count.lua")


def _process_tree(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid]
        tree.update(children)
        frontier.extend(children)
    return tree


#: Read run times in nanoseconds (``schedstat``) rather than clock ticks (``--ticks``).
PRECISE = True


def cpu_seconds(root: int, precise: bool | None = None) -> float:
    """CPU seconds (user + system, every thread) of process ``root`` and its descendants.

    ``utime + stime`` of ``/proc/<pid>/stat`` is the process's run time counted in clock ticks
    (10 ms); ``precise`` reads the same run time in nanoseconds, summed over the threads
    (``/proc/<pid>/task/<tid>/schedstat``, first field), so that short runs are not rounded.
    """
    total = 0.0
    precise = PRECISE if precise is None else precise
    for pid in _process_tree(root):
        try:
            if precise:
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                        total += int(handle.read().split()[0]) / 1e9
            else:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / _TICKS
        except OSError:
            continue
    return total


@dataclass
class Sample:
    """One run: requests/s (wall), server CPU µs per request, share of non-2xx responses,
    commands Redis processed per request (a check that the Redis variants reach Redis)."""

    rps: float
    cpu_us: float
    rejected: float
    redis: float = 0.0
    #: ``INFO commandstats`` of the run: command → (calls, usec).
    stats: dict[str, tuple[int, int]] | None = None
    #: Responses of the run.
    requests: int = 0


#: The benchmark's Redis while :func:`redis_for_benchmark` runs.
_redis_client: Any = None


def redis_commands() -> int:
    """Commands the benchmark's Redis has processed so far (0 without one)."""
    if _redis_client is None:
        return 0
    return int(_redis_client.info("stats")["total_commands_processed"])


def redis_stats(reset: bool = False) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` (command → (calls, usec)) of the benchmark's Redis, then
    ``CONFIG RESETSTAT`` when ``reset``; empty without one."""
    if _redis_client is None:
        return {}
    stats = {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in _redis_client.info("commandstats").items()
    }
    if reset:
        _redis_client.config_resetstat()
    return stats


def sent_shares(url: str, pid: int, connections: int) -> dict[str, float]:
    """The share of each command's calls a server's clients send (the rest are run by
    scripts), from MONITOR during a short run (as ``benchmarks/redis.py`` does): a script's
    ``usec`` already holds the commands it runs, which commandstats also lists."""
    if _redis_client is None:
        return {}
    sent: dict[str, int] = {}
    nested: dict[str, int] = {}
    with _redis_client.monitor() as monitor:
        load(url, 300, connections)
        _redis_client.echo("__end__")
        while True:
            entry = monitor.next_command()
            name = entry["command"].split(" ", 1)[0].lower()
            if name == "echo" and entry["command"].endswith("__end__"):
                break
            into = nested if entry["client_type"] == "lua" else sent
            into[name] = into.get(name, 0) + 1
    return {name: n / (n + nested.get(name, 0)) for name, n in sent.items()}


def redis_usec(sample: Sample, shares: dict[str, float]) -> float:
    """Redis server µs per request: the commandstats ``usec`` of the commands clients sent
    (scripts' own commands are inside their ``usec``), over the requests."""
    if not sample.stats or not shares or not sample.rps:
        return 0.0
    usec = sum(u * shares[name] for name, (_, u) in sample.stats.items() if name in shares)
    return usec / sample.requests if sample.requests else 0.0


def start_load(url: str, connections: int, requests: int = 0, seconds: float = 0) -> Any:
    """Start wrk on ``url``: for exactly ``requests`` responses, or for ``seconds``."""
    duration = round(seconds) if seconds else max(60, requests // 200)
    command = [
        *pinned(CLIENT_CPU),
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", str(COUNT_LUA), url,
        *(["--", str(requests)] if requests else []),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_load(proc: Any, url: str) -> tuple[int, int]:
    """Wait for a wrk started by :func:`start_load`: (responses, non-2xx)."""
    out, err = proc.communicate(timeout=900)
    for line in out.splitlines():
        if line.startswith("DONE "):
            done, bad = map(int, line.split()[1:])
            return done, bad
    raise RuntimeError(f"wrk failed on {url}: {out[-300:]} {err[-300:]}")


def load(url: str, requests: int, connections: int) -> tuple[int, int, float]:
    """``requests`` responses from ``url`` with wrk: (responses, non-2xx, wall seconds)."""
    start = time.perf_counter()
    done, bad = finish_load(start_load(url, connections, requests), url)
    return done, bad, time.perf_counter() - start


def measure(url: str, pid: int, requests: int, connections: int) -> Sample:
    """One run of ``requests`` requests against a server, with its CPU time from /proc."""
    redis_stats(reset=True)
    before, commands = cpu_seconds(pid), redis_commands()
    done, bad, wall = load(url, requests, connections)
    time.sleep(0.05)  # let the server finish what was in flight when wrk left
    cpu = cpu_seconds(pid) - before
    redis = (redis_commands() - commands - 1) / done
    return Sample(done / wall, cpu / done * 1e6, bad / done, redis, redis_stats(), done)


def measure_together(
    servers: list[tuple[str, int]], seconds: float, connections: int
) -> list[Sample]:
    """Load several servers at the same time for ``seconds`` (one wrk each)."""
    redis_stats(reset=True)
    before = [cpu_seconds(pid) for _, pid in servers]
    commands = redis_commands()
    start = time.perf_counter()
    procs = [start_load(url, connections, seconds=seconds) for url, _ in servers]
    counts = [finish_load(proc, url) for proc, (url, _) in zip(procs, servers, strict=True)]
    wall = time.perf_counter() - start
    time.sleep(0.05)
    samples = []
    # Only one server of a pair (never bare) talks to Redis: the count is the variant's.
    redis = redis_commands() - commands - 1
    stats = redis_stats()
    for (_, pid), cpu0, (done, bad) in zip(servers, before, counts, strict=True):
        cpu = cpu_seconds(pid) - cpu0
        n = max(done, 1)
        samples.append(Sample(done / wall, cpu / n * 1e6, bad / n, redis / n, stats, n))
    return samples


@dataclass
class Row:
    """A variant's medians over the rounds."""

    variant: str
    rps: float
    cpu_us: float
    cpu_ratio: float
    rejected: float
    ratios: list[float]
    redis: float = 0.0
    #: Redis server µs per request (commandstats ``usec`` of the commands sent).
    redis_us: float = 0.0


def run_stack(
    stack: str,
    variants: list[str],
    rounds: int,
    requests: int,
    connections: int,
    redis_url: str,
    log: Callable[[str], None],
    extra_env: dict[str, dict[str, str]] | None = None,
    factory: str | None = None,
    together: float = 0.0,
) -> list[Row]:
    """Every variant of ``stack`` side by side with bare, ``rounds`` times; the medians.

    All servers of the stack run at once (an idle server costs nothing). In every round each
    variant is measured right next to a run of bare (bare first in even rounds, second in odd
    ones), and the CPU ratio is taken within that pair. With ``together`` (seconds), the pair
    is instead loaded at the same time for that long, both servers sharing the server CPU, so
    that whatever else the machine runs weighs on both alike.
    """
    others = [v for v in variants if v != "bare"]
    samples: dict[str, list[Sample]] = {v: [] for v in ["bare", *others]}
    ratios: dict[str, list[float]] = {v: [] for v in others}
    with contextlib.ExitStack() as stack_of_servers:
        servers = {
            v: stack_of_servers.enter_context(
                server(stack, v, redis_url, (extra_env or {}).get(v), factory)
            )
            for v in samples
        }
        for url, pid in servers.values():
            measure(url, pid, min(requests, 2000), connections)  # warm-up
        shares = {v: sent_shares(*servers[v], connections) for v in samples if "redis" in v}
        for r in range(rounds):
            for v in others[r % len(others) :] + others[: r % len(others)] if others else []:
                order = ["bare", v] if r % 2 == 0 else [v, "bare"]
                if together:
                    both = measure_together([servers[n] for n in order], together, connections)
                    pair = dict(zip(order, both, strict=True))
                else:
                    pair = {n: measure(*servers[n], requests, connections) for n in order}
                samples["bare"].append(pair["bare"])
                samples[v].append(pair[v])
                ratio = pair["bare"].cpu_us / pair[v].cpu_us
                ratios[v].append(ratio)
                log(
                    f"round {r + 1}/{rounds} {stack:12} {v:24} "
                    f"cpu {pair[v].cpu_us:7.1f} us/req (bare {pair['bare'].cpu_us:6.1f}) "
                    f"ratio {ratio:5.2f}  {pair[v].rps:7.0f} req/s  "
                    f"{pair[v].rejected:.0%} rejected, {pair[v].redis:.2f} Redis cmds/req"
                )
            if not others:
                samples["bare"].append(measure(*servers["bare"], requests, connections))
    rows = []
    for v, runs in samples.items():
        row_ratios = ratios.get(v, [1.0])
        rows.append(
            Row(
                v,
                statistics.median(s.rps for s in runs),
                statistics.median(s.cpu_us for s in runs),
                statistics.median(row_ratios),
                statistics.median(s.rejected for s in runs),
                row_ratios,
                statistics.median(s.redis for s in runs) if v != "bare" else 0.0,
                statistics.median(redis_usec(s, shares.get(v, {})) for s in runs),
            )
        )
    return rows


TARGETS = {
    ("uvicorn", "ours-memory"): 0.85,
    ("uvicorn", "ours-redis"): 0.75,
    ("uvicorn", "ours-redis-reject"): 0.90,
    ("django", "ours-memory"): 0.90,
    ("django", "ours-redis"): 0.80,
    ("django", "ours-redis-reject"): 0.90,
    ("flask", "ours-memory"): 0.90,
    ("flask", "ours-redis"): 0.80,
    ("flask", "ours-redis-reject"): 0.90,
}


def table(stack: str, rows: list[Row]) -> str:
    """A Markdown table of one stack."""
    lines = [
        f"{NAMES[stack]}",
        "",
        "| variant | CPU µs/req | CPU ratio to bare | range over rounds | req/s (wall) "
        "| rejected | Redis cmds/req | Redis µs/req | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        target = TARGETS.get((stack, row.variant))
        verdict = ""
        if target is not None:
            verdict = f"≥ {target:.2f} {'met' if row.cpu_ratio >= target else 'MISSED'}"
        spread = f"{min(row.ratios):.2f}–{max(row.ratios):.2f}" if row.variant != "bare" else ""
        lines.append(
            f"| {row.variant} | {row.cpu_us:.1f} | {row.cpu_ratio:.2f} | {spread} "
            f"| {row.rps:,.0f} | {row.rejected:.0%} | {row.redis:.2f} | {row.redis_us:.2f} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """One line about the machine and the versions that matter."""
    from importlib.metadata import PackageNotFoundError, version

    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    parts = [
        f"{os.cpu_count()} CPUs ({model})",
        f"Linux {platform.release()}",
        f"Python {platform.python_version()}",
    ]
    for dist in ("uvicorn", "httptools", "uvloop", "gunicorn", "starlette", "django", "flask"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{dist} {version(dist)}")
    redis = shutil.which("redis-server")
    if redis:
        out = subprocess.run([redis, "--version"], capture_output=True, text=True).stdout
        parts.append(out.split()[2].replace("v=", "redis-server ") if out else "redis-server")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the stacks and print one table per stack."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, 2,000 requests per run")
    parser.add_argument("--rounds", type=int, default=None, help="default 5 (quick: 1)")
    parser.add_argument(
        "--requests", type=int, default=None, help=f"requests per run (default {REQUESTS})"
    )
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--together",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="load each pair at the same time for SECONDS (a busy machine) instead of back to back",
    )
    parser.add_argument(
        "--stack", default="all", help=f"comma-separated, of {', '.join(STACKS)} (default all)"
    )
    parser.add_argument("--variants", default="", help="comma-separated (default: all)")
    parser.add_argument(
        "--ticks", action="store_true", help="CPU from /proc/<pid>/stat ticks, not schedstat ns"
    )
    args = parser.parse_args(argv)
    global PRECISE
    PRECISE = not args.ticks and os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat")
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            print(f"{tool} is needed: apt-get install {tool}", file=sys.stderr)
            return 2
    sys.path.insert(0, str(ROOT))
    rounds = args.rounds or (1 if args.quick else 5)
    stacks = STACKS if args.stack == "all" else args.stack.split(",")
    wanted = [v for v in args.variants.split(",") if v]

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results: dict[str, list[Row]] = {}
    with redis_for_benchmark() as redis_url:
        for stack in stacks:
            variants = variants_of(stack)
            if wanted:
                variants = ["bare", *(v for v in variants if v in wanted and v != "bare")]
            requests = args.requests or (2000 if args.quick else REQUESTS[stack])
            results[stack] = run_stack(
                stack,
                variants,
                rounds,
                requests,
                args.connections,
                redis_url,
                log,
                together=args.together,
            )
    print(
        f"\n{machine()}\n\nserver on CPU {SERVER_CPU}, wrk -t1 -c{args.connections} and "
        f"redis-server on CPU {CLIENT_CPU}; {rounds} rounds, each variant side by side with "
        "bare; medians. CPU ratio to bare = bare's server CPU per request / the variant's "
        f"(server run time from /proc, {'ns' if PRECISE else 'ticks'}; 1.00 = as cheap as bare)."
    )
    for stack, rows in results.items():
        requests = args.requests or (2000 if args.quick else REQUESTS[stack])
        print(f"\n{table(stack, rows)}\n\n({requests:,} requests per run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

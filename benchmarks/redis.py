"""Redis backend benchmark: ours vs a raw EVALSHA loop and the ``limits`` package, one run.

Run from the repository root::

    python -m benchmarks.redis            # 3 interleaved rounds of 3 s per throughput variant
    python -m benchmarks.redis --quick    # 1 round of 1 s, fewer keys, short HTTP runs

(``python benchmarks/redis.py`` works too.) The script starts its own ``redis-server`` on a
free port (``tests/support/redis_server.py``), measures, and stops it. Every variant talks to
that same server over TCP on 127.0.0.1, one after the other, rounds interleaved so that noise
from the (shared, noisy) machine spreads over all of them; the median round is reported.

* **sync**: ``Limiter.hit`` in a loop, as a ratio to a raw ``EVALSHA`` loop that sends the
  very same script, keys and arguments with the same redis-py client (target ≥ 0.9);
  ``limits`` (``FixedWindowRateLimiter`` + ``RedisStorage``) for reference.
* **asyncio, 64 tasks**: 64 concurrent tasks each calling ``await Limiter.ahit`` in a loop
  (auto-pipelined), as a ratio to ``limits.aio`` doing the same (target ≥ 5×); for reference,
  redis-py pipelines of 64 raw ``EVALSHA`` of our script, one after the other (the ceiling
  for this script on this machine).
* **memory per tracked key**: N client keys hit once; ``used_memory`` delta / N (everything:
  key, value, expiry entry, hash-table slots) and the mean ``MEMORY USAGE`` of the keys
  (what Redis attributes to the key itself), ours vs ``limits`` (target ≤ 90 bytes).
* **middleware**: uvicorn + Starlette hello-world driven by ``wrk`` (64 connections): bare,
  with ``ratelimit.asgi.RateLimitMiddleware`` on the Redis backend, and slowapi on the same
  Redis, as ratios to bare (target ≥ 0.75); our middleware on the memory backend for reference
  (what the middleware itself costs, without Redis).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.path and sys.path[0].endswith("benchmarks"):
    sys.path[0] = sys.path[0][: -len("benchmarks")].rstrip("/\\") or "."

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HIGH = "1000000/second"  # never bites: every call is admitted (and writes its state)
TASKS = 64


# --------------------------------------------------------------------------- throughput


def _sync_variants(url: str) -> dict[str, Callable[[float], float]]:
    """name -> run(seconds) -> calls per second."""
    import limits
    import limits.storage
    import limits.strategies
    import redis

    from ratelimit import Limit, Limiter, RedisBackend
    from ratelimit.backends.redis_script import SCRIPT_SHA

    client = redis.Redis.from_url(url)
    backend = RedisBackend(client)
    limiter = Limiter(backend)
    limit = Limit(HIGH, algorithm="token_bucket")
    limiter.hit("bench", limit)  # loads the script
    specs, keys, args = backend._request("bench", [limit], 1, True)
    del specs
    item = limits.parse(HIGH)
    lib = limits.strategies.FixedWindowRateLimiter(limits.storage.RedisStorage(url))

    def raw(seconds: float) -> float:
        evalsha = client.evalsha
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(50):
                evalsha(SCRIPT_SHA, 1, *keys, *args)
            n += 50
        return n / (time.perf_counter() - start)

    def ours(seconds: float) -> float:
        hit = limiter.hit
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(50):
                hit("bench", limit)
            n += 50
        return n / (time.perf_counter() - start)

    def other(seconds: float) -> float:
        n = 0
        start = time.perf_counter()
        deadline = start + seconds
        while time.perf_counter() < deadline:
            for _ in range(50):
                lib.hit(item, "bench")
            n += 50
        return n / (time.perf_counter() - start)

    return {"raw EVALSHA loop": raw, "ratelimit Limiter.hit": ours, "limits (sync)": other}


def _async_variants(url: str) -> dict[str, Callable[[float], float]]:
    import limits
    import limits.aio.storage
    import limits.aio.strategies

    from ratelimit import Limit, Limiter, RedisBackend

    limit = Limit(HIGH, algorithm="token_bucket")
    item = limits.parse(HIGH)
    async_url = url.replace("redis://", "async+redis://", 1)

    async def tasks(call: Callable[[int], Any], seconds: float) -> float:
        counts = [0] * TASKS
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(i: int) -> None:
            while time.perf_counter() < deadline:
                await call(i)
                counts[i] += 1

        await asyncio.gather(*(worker(i) for i in range(TASKS)))
        return sum(counts) / (time.perf_counter() - start)

    def ours(seconds: float) -> float:
        async def run() -> float:
            backend = RedisBackend.from_url(url, max_connections=TASKS)
            limiter = Limiter(backend)
            await asyncio.gather(*(limiter.ahit(f"client-{i}", limit) for i in range(TASKS)))
            try:
                return await tasks(lambda i: limiter.ahit(f"client-{i}", limit), seconds)
            finally:
                await backend.aclose()

        return asyncio.run(run())

    def other(seconds: float) -> float:
        async def run() -> float:
            storage = limits.aio.storage.RedisStorage(async_url, implementation="redispy")
            lib = limits.aio.strategies.FixedWindowRateLimiter(storage)
            await asyncio.gather(*(lib.hit(item, f"client-{i}") for i in range(TASKS)))
            return await tasks(lambda i: lib.hit(item, f"client-{i}"), seconds)

        return asyncio.run(run())

    def raw(seconds: float) -> float:
        import redis.asyncio

        from ratelimit.backends.redis_script import SCRIPT_SHA

        async def run() -> float:
            client = redis.asyncio.Redis.from_url(url)
            backend = RedisBackend(async_client=client)
            calls = [backend._request(f"client-{i}", [limit], 1, True) for i in range(TASKS)]
            await backend.adecide("warm", [limit], 1)
            n = 0
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline:
                pipe = client.pipeline(transaction=False)
                for _, keys, args in calls:
                    pipe.evalsha(SCRIPT_SHA, 1, *keys, *args)
                await pipe.execute()
                n += TASKS
            rate = n / (time.perf_counter() - start)
            await client.aclose()
            return rate

        return asyncio.run(run())

    return {
        "ratelimit ahit, 64 tasks": ours,
        "limits.aio, 64 tasks": other,
        "raw pipelined EVALSHA, 64 per pipeline": raw,
    }


def _rounds(
    variants: dict[str, Callable[[float], float]], rounds: int, seconds: float
) -> dict[str, list[float]]:
    """Calls/s of every variant in each of ``rounds`` interleaved short rounds.

    Short interleaved rounds put each pair of variants under nearly the same machine load;
    ratios are then taken round by round and their median reported.
    """
    results: dict[str, list[float]] = {name: [] for name in variants}
    for run in variants.values():
        run(min(0.3, seconds))  # warm-up
    for _ in range(rounds):
        for name, run in variants.items():
            results[name].append(run(seconds))
    return results


def _ratio(results: dict[str, list[float]], name: str, base: str) -> float:
    """The median over rounds of ``name``'s rate divided by ``base``'s in the same round."""
    pairs = zip(results[name], results[base], strict=True)
    return statistics.median(a / b for a, b in pairs)


# --------------------------------------------------------------------------- memory


def _memory(url: str, n: int) -> list[tuple[str, float, float]]:
    """(variant, used_memory delta per key, mean MEMORY USAGE per key) for n client keys."""
    import limits
    import limits.storage
    import limits.strategies
    import redis

    from ratelimit import Limit, Limiter, RedisBackend

    client = redis.Redis.from_url(url)
    clients = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    storage = limits.storage.RedisStorage(url)
    item = limits.parse("100/hour")  # long TTLs: nothing expires while we measure
    limiter = Limiter(RedisBackend(client))

    def ours(algorithm: str, rate: str, **kw: Any) -> Callable[[], None]:
        limit = Limit(rate, algorithm=algorithm, **kw)
        return lambda: [limiter.hit(c, limit) for c in clients] and None

    def theirs(strategy: Any) -> Callable[[], None]:
        lib = strategy(storage)
        return lambda: [lib.hit(item, c) for c in clients] and None

    variants = [
        ("ratelimit fixed_window", ours("fixed_window", "100/hour")),
        ("ratelimit sliding_window", ours("sliding_window", "100/hour")),
        ("ratelimit token_bucket burst 200", ours("token_bucket", "100/hour", burst=200)),
        ("ratelimit leaky_bucket", ours("leaky_bucket", "100/hour")),
        ("ratelimit sliding_log (1 entry)", ours("sliding_log", "100/hour")),
        ("limits FixedWindow", theirs(limits.strategies.FixedWindowRateLimiter)),
        ("limits SlidingWindowCounter", theirs(limits.strategies.SlidingWindowCounterRateLimiter)),
        ("limits MovingWindow (1 entry)", theirs(limits.strategies.MovingWindowRateLimiter)),
    ]
    out = []
    variants[0][1]()  # warm-up: the allocator and the dict reach a steady state
    for name, fill in variants:
        client.flushall()
        client.execute_command("MEMORY", "PURGE")
        before = int(client.info("memory")["used_memory"])
        fill()
        after = int(client.info("memory")["used_memory"])
        keys = [k for _, k in zip(range(500), client.scan_iter(count=1000), strict=False)]
        usage = statistics.mean(client.memory_usage(k, samples=0) for k in keys)
        out.append((name, (after - before) / n, usage * client.dbsize() / n))
    client.flushall()
    client.close()
    return out


# --------------------------------------------------------------------------- middleware


def asgi_app() -> Any:
    """The Starlette app for ``BENCH_VARIANT`` and ``BENCH_REDIS_URL`` (uvicorn ``--factory``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    variant = os.environ.get("BENCH_VARIANT", "bare")
    url = os.environ["BENCH_REDIS_URL"]

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    app = Starlette(routes=[Route("/", hello)])
    if variant.startswith("ratelimit"):
        from ratelimit.asgi import RateLimitMiddleware

        backend = "memory://" if variant == "ratelimit-memory" else url
        config = {"backend": backend, "rules": [{"name": "all", "path": "/**", "limit": HIGH}]}
        return RateLimitMiddleware(app, config=config)
    if variant == "slowapi":
        from slowapi import Limiter, _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded
        from slowapi.middleware import SlowAPIMiddleware
        from slowapi.util import get_remote_address

        limiter = Limiter(key_func=get_remote_address, default_limits=[HIGH], storage_uri=url)
        app.state.limiter = limiter
        app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]
        app.add_middleware(SlowAPIMiddleware)
    return app


def _wrk(url: str, seconds: float, connections: int) -> tuple[float, int]:
    """(requests/s, non-2xx responses) from one wrk run."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, int(bad.group(1)) if bad else 0


def _http(redis_url: str, variant: str, seconds: float, connections: int) -> tuple[float, int]:
    from tests.support.servers import free_port, stop_process, wait_for_port

    port = free_port()
    env = {
        **os.environ,
        "BENCH_VARIANT": variant,
        "BENCH_REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable, "-m", "uvicorn", "--factory", "benchmarks.redis:asgi_app",
        "--port", str(port), "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, 30, proc)
        url = f"http://127.0.0.1:{port}/"
        _wrk(url, 1, connections)  # warm-up
        return _wrk(url, seconds, connections)
    finally:
        stop_process(proc)
        if proc.stderr is not None:
            proc.stderr.close()


# --------------------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    """Run everything against one fresh redis-server and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--rounds", type=int, help="interleaved throughput rounds")
    parser.add_argument("--duration", type=float, help="seconds per variant per round")
    parser.add_argument("--keys", type=int, help="client keys for the memory measurement")
    parser.add_argument("--no-http", action="store_true", help="skip the middleware part")
    args = parser.parse_args(argv)
    rounds = args.rounds or (4 if args.quick else 15)
    seconds = args.duration or (0.25 if args.quick else 0.5)
    http_rounds, http_seconds = (1, 2.0) if args.quick else (3, 3.0)
    keys = args.keys or (5_000 if args.quick else 50_000)

    sys.path.insert(0, str(ROOT))
    from tests.support.redis_server import HAVE_REDIS, SKIP_REASON, redis_server

    if not HAVE_REDIS:
        print(SKIP_REASON, file=sys.stderr)
        return 2
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    print(
        f"redis-server {version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f}. Throughput: {rounds} interleaved rounds of "
        f"{seconds:g} s per variant, ratios taken round by round, medians reported. "
        "The machine is shared and noisy: read the ratios, not the absolute numbers."
    )
    with redis_server() as server:
        url = server.url
        memory = _memory(url, keys)  # first, on a fresh server
        sync = _rounds(_sync_variants(url), rounds, seconds)
        aio = _rounds(_async_variants(url), rounds, seconds)
        http: dict[str, list[float]] = {}
        if not args.no_http and shutil.which("wrk"):
            for _ in range(http_rounds):
                for variant in ("bare", "ratelimit", "slowapi", "ratelimit-memory"):
                    rps, bad = _http(url, variant, http_seconds, 64)
                    if bad:
                        print(f"warning: {variant}: {bad} non-2xx responses", file=sys.stderr)
                    http.setdefault(variant, []).append(rps)

    print("\n| measurement | result | ratio | target |")
    print("|---|---:|---:|---|")
    for name, rates in sync.items():
        ratio = _ratio(sync, name, "raw EVALSHA loop")
        target = "≥ 0.9 of raw" if name.startswith("ratelimit") else ""
        median = statistics.median(rates)
        print(f"| sync: {name} | {median:,.0f} calls/s | {ratio:.2f} of raw | {target} |")
    for name, rates in aio.items():
        ratio = _ratio(aio, name, "limits.aio, 64 tasks")
        target = "≥ 5× limits.aio" if name.startswith("ratelimit") else ""
        if name.startswith("raw"):
            target = "reference: the same script, no limiter"
        median = statistics.median(rates)
        print(f"| asyncio: {name} | {median:,.0f} calls/s | {ratio:.1f}× limits.aio | {target} |")
    for name, delta, usage in memory:
        target = "≤ 90 B" if name.startswith("ratelimit") else ""
        print(
            f"| memory: {name} | {usage:.0f} B (MEMORY USAGE) | {delta:.0f} B (used_memory Δ) "
            f"| {target} |"
        )
    if http:
        for variant, values in http.items():
            ratio = _ratio(http, variant, "bare")
            target = "≥ 0.75 of bare" if variant == "ratelimit" else ""
            store = "memory" if variant == "ratelimit-memory" else "Redis"
            name = variant.removesuffix("-memory")
            print(
                f"| uvicorn+Starlette: {name} ({store}) | {statistics.median(values):,.0f} req/s "
                f"| {ratio:.2f} of bare | {target} |"
            )
    print(
        f"\nmemory: {keys:,} client keys, one hit each of a 100/hour limit; bytes per tracked "
        "client key. MEMORY USAGE = what Redis attributes to the key (key, value, dict entry); "
        "used_memory Δ adds the expiry entry and hash-table slots."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

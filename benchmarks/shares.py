"""What a share costs inside the process: where the µs of ``share = N`` go.

Run from the repository root (needs the ``bench`` extra and ``redis-server``)::

    python -m benchmarks.shares                  # the table below, ~1 min
    python -m benchmarks.shares --requests 20000 --rounds 3

The production-stack figures are ``benchmarks/http.py``'s (``ours-redis-share``); this one
takes the HTTP server and ``wrk`` out, so that a few µs per request can be told apart on a
noisy machine. ``C`` coroutines on one uvloop event loop each send requests one after the
other straight into the Starlette app of ``benchmarks/http.py`` (the same middleware and
config, ``BENCH_VARIANT`` / ``BENCH_SHARE``), against a real ``redis-server``; each
configuration runs in a fresh process pinned to the server CPU (Redis on the other), and the
table shows the process CPU time per request (median of rounds), with, for the shares, how
many requests one grant served and how many requests waited for a grant in flight.

It also measures the client library's floor: one ``EVALSHA`` at a time on redis-py's
asyncio client, CPU per call — what any design that asks Redis once per ``N`` requests pays
at least, ``floor / N`` per request, before anything of ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.http import CLIENT_CPU, SERVER_CPU, pinned

#: (variant, share, concurrency) measured by default.
CASES = [
    ("ours-memory", None, 16),
    ("ours-redis", None, 16),
    ("ours-redis-share", 100_000, 16),
    ("ours-redis-share", 64, 16),
    ("ours-redis-share", 16, 16),
    ("ours-redis-share", 16, 1),
    ("ours-memory", None, 1),
]


async def _drive(app: Any, concurrency: int, requests: int) -> int:
    """``requests`` requests through ``app``, ``concurrency`` at a time; returns how many."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"bench")], "server": ("127.0.0.1", 80),
        "client": ("10.0.0.1", 1000),
    }  # fmt: skip
    done = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise AssertionError(f"status {message['status']}")

    async def connection() -> None:
        nonlocal done
        while done < requests:
            done += 1
            await app(dict(scope), receive, send)

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return done


async def _lifespan(app: Any, event: str) -> None:
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": f"lifespan.{event}"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}},
                                     queue.get, send))  # fmt: skip
    while not sent:
        await asyncio.sleep(0.01)
    task.cancel()


async def _one(concurrency: int, requests: int) -> dict[str, float]:
    """One configuration (from the environment): CPU µs per request after a warm-up."""
    from benchmarks.http import starlette_app

    app = starlette_app()
    await _lifespan(app, "startup")
    await _drive(app, concurrency, requests // 4)  # warm: connections, scripts, shares
    book = _book(app)
    asked, waited = (book.asked, book.coalesced) if book else (0, 0)
    start = time.process_time()
    done = await _drive(app, concurrency, requests)
    cpu = time.process_time() - start
    out = {"us": 1e6 * cpu / done}
    if book is not None:
        grants = book.asked - asked
        out["per_grant"] = done / grants if grants else float("inf")
        out["waited"] = (book.coalesced - waited) / done
    return out


def _book(app: Any) -> Any:
    """The ShareBook of the middleware's Redis backend, if any."""
    engine = getattr(app, "engine", None)
    backend = getattr(engine, "backend", None)
    return getattr(backend, "shares", None)


async def _floor(calls: int) -> float:
    """CPU µs per ``EVALSHA`` on redis-py's asyncio client, one call at a time."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    sha = await client.script_load("return redis.call('TIME')")
    for _ in range(calls // 4):
        await client.evalsha(sha, 0)
    start = time.process_time()
    for _ in range(calls):
        await client.evalsha(sha, 0)
    cpu = time.process_time() - start
    await client.aclose()
    return 1e6 * cpu / calls


def _child(args: argparse.Namespace) -> None:
    import uvloop

    if args.floor:
        print(json.dumps({"us": uvloop.run(_floor(args.requests))}))
    else:
        print(json.dumps(uvloop.run(_one(args.concurrency, args.requests))))


def _run(env: dict[str, str], *argv: str) -> dict[str, float]:
    command = [*pinned(SERVER_CPU), sys.executable, "-m", "benchmarks.shares", "--child", *argv]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=16, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    from benchmarks.http import redis_for_benchmark

    with redis_for_benchmark() as url:
        base = {**os.environ, "BENCH_REDIS_URL": url, "PYTHONPATH": os.getcwd()}
        rows: list[tuple[str, list[dict[str, float]]]] = []
        for variant, share, concurrency in CASES:
            env = {**base, "BENCH_VARIANT": variant}
            if share is not None:
                env["BENCH_SHARE"] = str(share)
            argv = ["--concurrency", str(concurrency), "--requests", str(args.requests)]
            runs = [_run(env, *argv) for _ in range(args.rounds)]
            label = f"{variant}{f' share={share}' if share else ''}, C={concurrency}"
            rows.append((label, runs))
            print(label, [round(r["us"], 1) for r in runs], file=sys.stderr)
        floor = [_run(base, "--floor", "--requests", "10000")["us"] for _ in range(args.rounds)]
    print(f"Redis on CPU {CLIENT_CPU}, this process on CPU {SERVER_CPU}; "
          f"{args.requests:,} requests per run, medians of {args.rounds} rounds\n")  # fmt: skip
    print("| configuration | CPU µs/req | requests per grant | requests that waited |")
    print("|---|---:|---:|---:|")
    for label, runs in rows:
        us = statistics.median(r["us"] for r in runs)
        per = statistics.median(r.get("per_grant", 0.0) for r in runs)
        waited = statistics.median(r.get("waited", 0.0) for r in runs)
        share_cols = f"{per:,.1f} | {waited:.0%}" if "share" in label else " | "
        print(f"| {label} | {us:.1f} | {share_cols} |")
    print(f"\nredis-py floor, one EVALSHA at a time (asyncio): {statistics.median(floor):.1f} "
          "µs of CPU per call")  # fmt: skip


if __name__ == "__main__":
    main()

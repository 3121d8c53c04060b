"""Where the middleware's time goes inside a real server: isolating experiments and profiles.

Run from the repository root (needs the ``bench`` extra and ``wrk``)::

    python -m benchmarks.overhead inprocess          # direct ASGI call loop, GC counts
    python -m benchmarks.overhead server             # experiments under uvicorn (~5 min)
    python -m benchmarks.overhead server --only ours,ours-gc-freeze --rounds 3
    python -m benchmarks.overhead pyspy ours         # py-spy profile of the worker under load
    python -m benchmarks.overhead timings            # perf_counter timers inside the server
    python -m benchmarks.overhead gcstats            # collector runs per request, in the server
    python -m benchmarks.overhead compare bare.json ours.json --bare-us 35 --ratio 0.66

``inprocess`` drives the Starlette hello-world app of ``benchmarks/http.py`` directly (one
coroutine per request, run to completion without an event loop, a scope shaped like
uvicorn's httptools scope): µs per request of bare, the floor and ours (memory), and per
request the garbage collections and GC-tracked objects left behind.

``server`` runs the same app under ``uvicorn --http httptools --loop uvloop`` with one
change per variant (the :data:`EXPERIMENTS`), each side by side with bare like
``benchmarks/http.py`` (server CPU per request from /proc, CPU ratio to bare, medians of
rounds); by default each pair is loaded at the same time for 2 s (``--together``), both
servers on the server CPU, which keeps the ratios steady on a busy machine (an A/A pair,
``bare-again``, shows how far apart two equal servers measure). Each experiment removes or
replaces one suspect: the garbage collector (frozen after start-up, or off), the
``scope["ratelimit.engine"]`` write, the ``send`` wrapper and the headers, the async driver
(``engine.run`` called instead of ``await engine.arun``), the memory backend's lock, the
whole engine (a precomputed outcome), logging; others add known work (a second decision, a
standard-library workload) or try the least decision path (a patch measured, not shipped).

``timings`` puts ``perf_counter`` timers inside the server around the app call, around
``engine.arun`` and around the application inside our wrapper (medians per request).

``gcstats`` counts the collector's runs (``gc.callbacks``) per request inside the server.
``compare`` turns two py-spy profiles into per-request self time, ours minus bare.

``pyspy`` records a py-spy profile (speedscope JSON, ``--native``) of the server under load
and prints the share of samples per frame of interest (``--top`` also prints the hottest
functions).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.path and sys.path[0].endswith("benchmarks"):
    sys.path[0] = sys.path[0][: -len("benchmarks")].rstrip("/\\") or "."

import argparse
import contextlib
import gc
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import http as bench

ROOT = Path(__file__).resolve().parent.parent

#: name -> what it changes (applied by :func:`experiment_app` in the server process).
EXPERIMENTS = {
    "bare": "the Starlette app alone",
    "bare-again": "the same as bare, in another process (how far apart equals measure)",
    "floor": "a pure ASGI wrapper appending two constant headers",
    "ours": "RateLimitMiddleware, memory backend, 1000000/second",
    "bare-gc-freeze": "bare, gc.freeze() after start-up",
    "ours-gc-freeze": "ours, gc.freeze() after start-up",
    "ours-gc-off": "ours, gc.disable() (the most the collector can cost)",
    "ours-no-scope-key": 'ours without the scope["ratelimit.engine"] write',
    "ours-headers-none": 'ours with headers = "none" (no send wrapper, no header rendering)',
    "ours-sync-run": "ours calling engine.run (no coroutines awaited for the decision)",
    "ours-no-lock": "ours, the memory backend's lock replaced by a no-op",
    "ours-stub-engine": "ours' adapter with a precomputed outcome (no engine, no backend)",
    "ours-no-logging": "ours with logging.disable() (no logging call can cost)",
    "ours-decide-twice": "ours, deciding every request twice (what a warm second pass costs)",
    "bare-work": "bare plus a fixed pure-Python workload (stdlib code, not ours) per request",
    "ours-minimal": "ours' adapter around the least decision: key, limiter_hit, render",
    "ours-redis": "ours on the Redis backend (for pyspy; not in the server table)",
    "ours-redis-no-timeout": "ours on Redis, asyncio.timeout a no-op (what the bound costs)",
    "ours-redis-reject": "ours on Redis, every request rejected (1/hour, one client)",
    "bare-timed": "bare, the app call timed (perf_counter)",
    "floor-timed": "floor, the wrapper and the app inside it timed",
    "ours-timed": "ours, the middleware, engine.arun and the app inside it timed",
    "floor-work-timed": "floor-timed after the bare-work workload (code run before the app)",
}


# --------------------------------------------------------------------------- the variants


class _NoLock:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def __enter__(self) -> bool:
        return True

    def __exit__(self, *exc: object) -> None:
        pass


def build(name: str) -> Any:
    """The ASGI app of experiment ``name`` (also used in process by ``inprocess``)."""
    import logging

    if name.startswith(("ours-redis-reject", "ours-redis")):
        # These need BENCH_REDIS_URL.
        os.environ["BENCH_VARIANT"] = (
            "ours-redis-reject" if name.startswith("ours-redis-reject") else "ours-redis"
        )
    elif name.startswith(("bare", "floor")):
        os.environ["BENCH_VARIANT"] = name.split("-")[0]
    else:
        os.environ["BENCH_VARIANT"] = "ours-memory"
    app = bench.starlette_app()
    if name == "ours-headers-none":
        from ratelimit.asgi import RateLimitMiddleware

        config = bench._our_config(bench.HIGH, "memory://")
        app = RateLimitMiddleware(app.app, config={**config, "headers": "none"})
    if name == "ours-no-scope-key":
        app = _without_scope_key(app)
    if name == "ours-sync-run":
        engine = app.engine

        async def arun(plan: Any, request: Any) -> Any:
            return engine.run(plan, request)

        engine.arun = arun
    if name == "ours-no-lock":
        backend = app.engine.backend
        backend._lock = _NoLock()
        backend.limiter_hit = backend._bind_hit()
    if name == "ours-stub-engine":
        app = _stub_engine(app)
    if name == "ours-no-logging":
        logging.disable(logging.CRITICAL)
    if name == "ours-decide-twice":
        engine = app.engine
        decide = engine.arun

        async def twice(plan: Any, request: Any) -> Any:
            await decide(plan, request)
            return await decide(plan, request)

        engine.arun = twice
    if name == "bare-work":
        app = _with_work(app)
    if name == "ours-minimal":
        _patch_minimal(app.engine)
    if name == "ours-redis-no-timeout":
        _patch_no_timeout()
    return app


def _patch_no_timeout() -> None:
    """``asyncio.timeout`` made a no-op (what the per-decision timeout costs on Redis)."""
    import asyncio

    asyncio.timeout = lambda delay: contextlib.nullcontext()  # type: ignore[assignment]


def _patch_minimal(engine: Any) -> None:
    """``engine.arun`` reduced to the least work that gives the same answer for this config
    (one rule, one limit, memory backend, admitted): a lower bound, not a proposal."""
    from ratelimit.http.engine import Outcome
    from ratelimit.http.headers import render

    hit = engine.backend.limiter_hit
    labels, mode = engine.verdicts.labels, engine.headers_mode

    async def arun(plan: Any, request: Any) -> Any:
        group = plan.groups[0]
        decision = hit(group.key(request), group.limits[0])
        return Outcome(None, render(mode, decision, plan.policies, labels), 0.0, decision)

    engine.arun = arun


def work() -> None:
    """A fixed pure-Python workload from the standard library (several functions and
    objects, like a middleware's decision; not our code)."""
    import ipaddress
    from fractions import Fraction

    ipaddress.ip_address("127.0.0.1")
    Fraction(3, 7) + 1


def _with_work(app: Any) -> Any:
    async def call(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            work()
        await app(scope, receive, send)

    return call


def _without_scope_key(middleware: Any) -> Any:
    """``RateLimitMiddleware.__call__`` minus the scope write (same code otherwise)."""
    from ratelimit import asgi

    engine, inner = middleware.engine, middleware.app

    async def call(scope: Any, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await inner(scope, receive, send)
            return
        plan = engine.plan(scope["method"] if kind == "http" else "GET", asgi.route_path(scope))
        if plan is None:
            await inner(scope, receive, send)
            return
        outcome = await engine.arun(plan, asgi.request_info(scope))
        if outcome.reply is not None:
            await asgi.send_reply(send, outcome.reply)
            return
        start = "http.response.start" if kind == "http" else "websocket.accept"
        await inner(scope, receive, asgi._adding_headers(send, start, outcome.headers))

    return call


def _stub_engine(middleware: Any) -> Any:
    """The middleware with ``engine.arun`` answering one precomputed outcome."""
    engine = middleware.engine
    scope = _scope()
    plan = engine.plan("GET", "/")
    outcome = engine.run(plan, __import__("ratelimit.asgi").asgi.request_info(scope))

    async def arun(plan: Any, request: Any) -> Any:
        return outcome

    engine.arun = arun
    return middleware


def _timed(name: str, app: Any, out: str) -> Any:
    """``app`` with perf_counter timers around it, around ``engine.arun`` (ours) and around
    the application inside the wrapper (ours, floor); the samples go to ``out`` at exit."""
    import array

    clock = time.perf_counter
    samples: dict[str, array.array[float]] = {"total": array.array("d")}
    wrapped = app
    if name.startswith("ours"):
        engine = app.engine
        decide = engine.arun
        samples["arun"] = array.array("d")

        async def arun(plan: Any, request: Any) -> Any:
            start = clock()
            outcome = await decide(plan, request)
            samples["arun"].append(clock() - start)
            return outcome

        engine.arun = arun
    if not name.startswith("bare"):
        samples["inner"] = array.array("d")
        holder = app if name.startswith("ours") else None
        inner = holder.app if holder is not None else app.__closure__[0].cell_contents

        async def timed_inner(scope: Any, receive: Any, send: Any) -> None:
            start = clock()
            await inner(scope, receive, send)
            samples["inner"].append(clock() - start)

        if holder is not None:
            holder.app = timed_inner
        else:
            wrapped = bench.floor_asgi(timed_inner)
            if "-work" in name:  # the same work as bare-work, before the floor and the app
                wrapped = _with_work(wrapped)

    def dump() -> None:
        with open(out, "w") as handle:
            json.dump({k: list(v) for k, v in samples.items()}, handle)

    async def timed(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            # uvicorn re-raises SIGTERM after shutting down (no atexit): dump at shutdown.
            async def receive_then_dump() -> Any:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    dump()
                return message

            await wrapped(scope, receive_then_dump, send)
            return
        if scope["type"] != "http":
            await wrapped(scope, receive, send)
            return
        start = clock()
        await wrapped(scope, receive, send)
        samples["total"].append(clock() - start)

    return timed


def patch_django_unlogged_429() -> None:
    """A patch for the Django stack (``BENCH_PATCH=benchmarks.overhead:patch_django_...``):
    our 429 responses marked as logged, so that Django's ``log_response`` does not write a
    ``django.request`` warning for every rejected request."""
    from ratelimit.contrib import django as ours

    make = ours.to_response

    def to_response(reply: Any) -> Any:
        response = make(reply)
        response._has_been_logged = True
        return response

    ours.to_response = to_response


def patch_flask_without_misplaced_hook() -> None:
    """A patch for the Flask stack: ``RateLimit.init_app`` without its ``before_request``
    hook (``_misplaced_limits``, which runs on every request to catch ``@limit`` written
    above ``@app.route``), to measure what the hook costs."""
    from ratelimit.contrib import flask as ours

    init = ours.RateLimit.init_app

    def init_app(self: Any, app: Any) -> None:
        app.before_request = lambda function: function  # shadows the method for the call
        try:
            init(self, app)
        finally:
            del app.before_request

    ours.RateLimit.init_app = init_app  # type: ignore[method-assign]


def _counting_gc(app: Any, out: str) -> Any:
    """``app`` counting requests, and the collector's runs by generation and their time (a
    ``gc.callbacks`` hook); written to ``out`` at shutdown."""
    counts = {"requests": 0, "gen0": 0, "gen1": 0, "gen2": 0, "seconds": 0.0}
    started = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            counts[f"gen{info['generation']}"] += 1
            counts["seconds"] += time.perf_counter() - started[0]

    gc.callbacks.append(watch)

    async def call(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":

            async def receive_then_dump() -> Any:
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    Path(out).write_text(json.dumps(counts))
                return message

            await app(scope, receive_then_dump, send)
            return
        if scope["type"] == "http":
            counts["requests"] += 1
        await app(scope, receive, send)

    return call


def experiment_app() -> Any:
    """The app of ``BENCH_EXPERIMENT`` (``uvicorn --factory benchmarks.overhead:...``)."""
    name = os.environ.get("BENCH_EXPERIMENT", "bare")
    if os.environ.get("BENCH_GCSTATS"):
        return _counting_gc(build(name), os.environ["BENCH_GCSTATS"])
    timed = name.endswith("-timed")
    app = build(name.removesuffix("-timed").replace("-work", "") if timed else name)
    if timed:
        return _timed(name, app, os.environ["BENCH_TIMINGS"])
    if name.endswith("-gc-freeze"):
        # After start-up: everything imported and built so far leaves the collector's view.
        gc.collect()
        gc.freeze()
    if name == "ours-gc-off":
        gc.disable()
    return app


# --------------------------------------------------------------------------- in process


def _scope() -> dict[str, Any]:
    """A scope shaped like uvicorn's httptools one for ``GET /``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "state": {},
        "method": "GET",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
    }


class Disturb:
    """What runs between two requests in process, outside the timed work, to leave the CPU's
    caches and predictors as a server leaves them: ``syscall`` (a Unix socket round trip),
    ``tcp`` (a request and a response over loopback TCP), ``evict:<KiB>`` (touch that much
    memory, one byte per 64-byte line), ``python:<n>`` (n requests through another bare app),
    joined by ``+``, or nothing."""

    def __init__(self, spec: str) -> None:
        import socket

        self.pair: tuple[Any, Any] | None = None
        if "tcp" in spec:  # a loopback TCP connection: the kernel's network stack each time
            with socket.create_server(("127.0.0.1", 0)) as listener:
                client = socket.create_connection(listener.getsockname())
                self.pair = (client, listener.accept()[0])
        elif "syscall" in spec:
            self.pair = socket.socketpair()
        kib = next((int(p[6:]) for p in spec.split("+") if p.startswith("evict:")), 0)
        self.buffer = bytearray(kib * 1024) if kib else None
        #: ``python:<n>``: other Python code, n requests through another bare app instance
        #: (what uvicorn and Starlette run between two passes through ours).
        self.others = next((int(p[7:]) for p in spec.split("+") if p.startswith("python:")), 0)
        self.other_app = build("bare") if self.others else None

    def __call__(self) -> None:
        if self.pair is not None:
            client, server = self.pair
            client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n")
            server.recv(4096)
            server.send(b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\nHello, world!")
            client.recv(4096)
        if self.buffer is not None:
            buffer = self.buffer
            buffer[::64] = bytes(len(buffer) // 64 + (len(buffer) % 64 > 0))
        for _ in range(self.others):
            coro = self.other_app(_scope(), _receive, _send)
            with contextlib.suppress(StopIteration):
                coro.send(None)


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    pass


def per_request(app: Any, requests: int, disturb: Disturb | None = None) -> dict[str, float]:
    """Run ``requests`` requests through ``app`` directly: µs each, GC work per request.

    With ``disturb``, it runs between requests and its own time is not counted.
    """

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        pass

    def one() -> None:
        coro = app(_scope(), receive, send)
        try:
            coro.send(None)
        except StopIteration:
            return
        raise RuntimeError("the app suspended: not a run-to-completion request")

    for _ in range(500):
        one()
    collections: Counter[int] = Counter()
    gc_time = [0.0, 0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_time[1] = time.perf_counter()
        else:
            collections[info["generation"]] += 1
            gc_time[0] += time.perf_counter() - gc_time[1]

    calls = [0, 0]  # Python, C function calls (sys.setprofile), over 100 requests

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls[0] += 1
        elif event == "c_call":
            calls[1] += 1

    sys.setprofile(profile)
    try:
        for _ in range(100):
            one()
    finally:
        sys.setprofile(None)
    gc.collect()
    gc.callbacks.append(watch)
    tracked_before = len(gc.get_objects())
    clock = time.perf_counter
    try:
        if disturb is None:
            start = time.process_time()
            for _ in range(requests):
                one()
            elapsed = time.process_time() - start
        else:
            elapsed = 0.0
            for _ in range(requests):
                disturb()
                start = clock()
                one()
                elapsed += clock() - start
    finally:
        gc.callbacks.remove(watch)
    tracked_after = len(gc.get_objects())
    return {
        "us": elapsed / requests * 1e6,
        "gen0_per_1k": collections[0] / requests * 1000,
        "gen1_per_1k": collections[1] / requests * 1000,
        "gen2_per_1k": collections[2] / requests * 1000,
        "gc_us": gc_time[0] / requests * 1e6,
        "tracked_left": (tracked_after - tracked_before) / requests,
        "py_calls": calls[0] / 100,
        "c_calls": calls[1] / 100,
    }


def inprocess(names: list[str], requests: int, rounds: int, disturb: str = "") -> None:
    """Print the direct-call cost of each variant: many short rounds, every variant once per
    round in a rotating order, the difference to bare taken within the round; medians (and
    the fastest round, the least disturbed by the rest of the machine)."""
    apps = {name: build(name) for name in names}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    between = Disturb(disturb) if disturb else None
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            runs[name].append(per_request(apps[name], requests, between))
    print(
        f"in process{f', between requests: {disturb}' if disturb else ''}, {rounds} rounds "
        f"of {requests:,} requests (medians); + vs bare within the round; Python and C "
        "function calls per request; GC collections per 1,000 requests, µs in the collector "
        "per request, tracked objects left per request"
    )
    print(
        f"{'variant':<22}{'µs/req':>8}{'fastest':>8}{'+ vs bare':>10}{'py calls':>9}"
        f"{'C calls':>8}{'gen0/1k':>8}{'gen1/1k':>8}{'gen2/1k':>8}{'gc µs':>6}{'left':>6}"
    )
    bare = runs[names[0]]
    for name in names:
        med = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
        extra = statistics.median(
            mine["us"] - base["us"] for mine, base in zip(runs[name], bare, strict=True)
        )
        fastest = min(r["us"] for r in runs[name])
        print(
            f"{name:<22}{med['us']:>8.2f}{fastest:>8.2f}{extra:>+10.2f}{med['py_calls']:>9.0f}"
            f"{med['c_calls']:>8.0f}{med['gen0_per_1k']:>8.2f}{med['gen1_per_1k']:>8.2f}"
            f"{med['gen2_per_1k']:>8.2f}{med['gc_us']:>6.2f}{med['tracked_left']:>6.2f}"
        )


# --------------------------------------------------------------------------- in the server

FACTORY = "benchmarks.overhead:experiment_app"


def server(names: list[str], rounds: int, requests: int, connections: int, together: float) -> None:
    """Every experiment under uvicorn httptools+uvloop, side by side with bare."""
    extra = {name: {"BENCH_EXPERIMENT": name} for name in names}
    with bench.redis_for_benchmark() as redis_url:
        rows = bench.run_stack(
            "uvicorn",
            names,
            rounds,
            requests,
            connections,
            redis_url,
            lambda line: print(line, file=sys.stderr, flush=True),
            extra_env=extra,
            factory=FACTORY,
            together=together,
        )
    bare = next(row for row in rows if row.variant == "bare")
    print(
        f"\nuvicorn httptools+uvloop, {requests:,} requests per run, {rounds} rounds, each "
        "experiment side by side with bare; medians\n"
    )
    print("| experiment | what changes | CPU µs/req | + µs vs bare | CPU ratio to bare |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        extra_us = bare.cpu_us / row.cpu_ratio - bare.cpu_us if row.cpu_ratio else 0.0
        print(
            f"| {row.variant} | {EXPERIMENTS[row.variant]} | {row.cpu_us:.1f} "
            f"| {extra_us:+.1f} | {row.cpu_ratio:.2f} |"
        )


def timings(requests: int, connections: int, rounds: int, names: list[str]) -> None:
    """Time the parts of a request inside the server (perf_counter, medians per request).

    ``names``: ``bare-timed``, ``floor-timed``, ``floor-work-timed``, or any ``ours*``
    experiment (whose app is the middleware) with ``-timed`` appended."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: f"{tmp}/{name}.json" for name in names}
        with contextlib.ExitStack() as stack:
            servers = {
                name: stack.enter_context(
                    bench.server(
                        "uvicorn",
                        name,
                        "",
                        {"BENCH_EXPERIMENT": name, "BENCH_TIMINGS": paths[name]},
                        factory=FACTORY,
                    )
                )
                for name in names
            }
            for _ in range(rounds):
                for name in names:
                    bench.load(servers[name][0], requests, connections)
        results = {name: json.loads(Path(paths[name]).read_text()) for name in names}
    print(
        f"inside uvicorn httptools+uvloop, {rounds} x {requests:,} requests per server: "
        "µs per request, median (mean)"
    )
    print(f"{'server':<24}{'part':<44}{'median':>8}{'mean':>8}")
    parts = {
        "total": "the whole app call (what uvicorn awaits)",
        "arun": "  engine.arun (the decision)",
        "inner": "  the Starlette app inside the wrapper",
    }
    for name in names:
        for part, values in results[name].items():
            values = values[2000:]  # the first requests warm up
            print(
                f"{name:<24}{parts[part]:<44}{statistics.median(values) * 1e6:>8.2f}"
                f"{statistics.fmean(values) * 1e6:>8.2f}"
            )


def gcstats(names: list[str], requests: int, connections: int) -> None:
    """Collections per 1,000 requests and µs in the collector per request, in the server."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: f"{tmp}/{name}.json" for name in names}
        for name in names:
            env = {"BENCH_EXPERIMENT": name, "BENCH_GCSTATS": paths[name]}
            with bench.server("uvicorn", name, "", env, FACTORY) as (url, _):
                bench.load(url, requests, connections)
        print(
            f"garbage collection inside uvicorn httptools+uvloop, {requests:,} requests per "
            "server (gc.callbacks)"
        )
        print(f"{'server':<16}{'gen0/1k':>9}{'gen1/1k':>9}{'gen2/1k':>9}{'gc µs/req':>11}")
        for name in names:
            c = json.loads(Path(paths[name]).read_text())
            n = max(c["requests"], 1)
            print(
                f"{name:<16}{c['gen0'] / n * 1000:>9.2f}{c['gen1'] / n * 1000:>9.2f}"
                f"{c['gen2'] / n * 1000:>9.2f}{c['seconds'] / n * 1e6:>11.3f}"
            )


# --------------------------------------------------------------------------- py-spy

#: Frames whose inclusive share of the samples is printed: label -> (function, file suffix).
FRAMES = {
    "uvicorn run_asgi (the request)": ("run_asgi", "uvicorn/protocols/http/httptools_impl.py"),
    "RateLimitMiddleware.__call__": ("RateLimitMiddleware.__call__", "ratelimit/asgi.py"),
    "  engine.plan": ("Engine.plan", "ratelimit/http/engine.py"),
    "  engine.arun (the decision)": ("Engine.arun", "ratelimit/http/engine.py"),
    "    memory backend": ("", "ratelimit/backends/memory.py"),
    "    headers.render": ("render", "ratelimit/http/headers.py"),
    "  send_with_headers": ("send_with_headers", "ratelimit/asgi.py"),
    "Starlette app": ("Starlette.__call__", "starlette/applications.py"),
    "uvicorn send": ("RequestResponseCycle.send", "uvicorn/protocols/http/httptools_impl.py"),
    "ours (Django)": ("RateLimitMiddleware.__call__", "ratelimit/contrib/django/__init__.py"),
    "ours (WSGI)": ("RateLimitMiddleware.__call__", "ratelimit/wsgi.py"),
    "  engine.run": ("Engine.run", "ratelimit/http/engine.py"),
    "    Redis backend": ("", "ratelimit/backends/redis.py"),
    "    redis-py": ("", "redis/connection.py"),
    "garbage collector": ("gc_collect_main", ""),
}


def pyspy(
    name: str, seconds: float, rate: int, top: int, out: Path, stack: str = "uvicorn"
) -> None:
    """Record the server under load with py-spy and summarise the profile.

    ``stack`` ``uvicorn``: ``name`` is an experiment; another stack of ``benchmarks/http.py``
    (``django``, ``flask``): ``name`` is one of its variants (Redis started for it).
    """
    if shutil.which("py-spy") is None:
        sys.exit("py-spy is needed: pip install py-spy")
    with contextlib.ExitStack() as resources:
        redis_url = resources.enter_context(bench.redis_for_benchmark())
        if stack == "uvicorn":
            env = {"BENCH_EXPERIMENT": name}
            target = bench.server("uvicorn", "bare", redis_url, env, FACTORY)
        else:
            target = bench.server(stack, name, redis_url)
        url, pid = resources.enter_context(target)
        bench.load(url, 2000, 16)
        record = subprocess.Popen(
            [
                *bench.pinned(bench.CLIENT_CPU),
                "py-spy", "record", "--subprocesses", "-r", str(rate),
                "-d", str(round(seconds)), "-f", "speedscope", "-o", str(out), "-p", str(pid),
                # Pausing the process to sample would trip the Redis timeout (0.1 s) and
                # open the circuit: Redis variants are sampled without pausing (and so
                # without native frames).
                *(["--nonblocking"] if "redis" in name else ["--native"]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        stop = threading.Event()

        def keep_loading() -> None:
            while not stop.is_set():
                bench.load(url, 5000, 16)

        loader = threading.Thread(target=keep_loading, daemon=True)
        time.sleep(0.5)
        loader.start()
        _, err = record.communicate(timeout=seconds + 120)
        stop.set()
        loader.join(timeout=60)
        if record.returncode != 0:
            sys.exit(f"py-spy failed: {err[-1000:]}")
    summarise(out, top)


def summarise(path: Path, top: int) -> None:
    """Inclusive share of samples per frame of interest, the share whose innermost Python
    frame is ours (by function), and the hottest frames by self time."""
    data = json.loads(path.read_text())
    frames = [(f["name"], f.get("file", ""), f.get("line", 0)) for f in data["shared"]["frames"]]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            names = [frames[i] for i in stack]
            if names:
                name, file, line = names[-1]
                own[f"{name} ({file}:{line})"] += weight
            for label, (func, suffix) in FRAMES.items():
                if any(n.endswith(func) and f.endswith(suffix) for n, f, _ in names):
                    inclusive[label] += weight
            python = [(n, f) for n, f, _ in names if f.endswith(".py")]
            if python and "/ratelimit/" in python[-1][1]:
                ours[python[-1][0]] += weight
    print(f"{path}: {sum(p['endValue'] for p in data['profiles']):.0f} s sampled")
    print("inclusive share of samples:")
    for label in FRAMES:
        print(f"  {label:<34}{inclusive[label] / total:>7.1%}")
    print(f"innermost Python frame in ratelimit/: {sum(ours.values()) / total:.1%}, by function:")
    for name, weight in ours.most_common(12):
        print(f"  {weight / total:>6.1%}  {name}")
    if top:
        print("hottest frames (self time, native included):")
        for name, weight in own.most_common(top):
            print(f"  {weight / total:>6.1%}  {name}")


def _self_shares(path: Path) -> dict[str, float]:
    data = json.loads(path.read_text())
    frames = data["shared"]["frames"]
    own: Counter[str] = Counter()
    total = 0.0
    for profile in data["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            total += weight
            frame = frames[stack[-1]]
            own[f"{frame['name']} ({frame.get('file', '').rsplit('/', 1)[-1]})"] += weight
    return {name: weight / total for name, weight in own.items()}


def compare(bare: Path, ours: Path, bare_us: float, ratio: float, top: int) -> None:
    """Per-request self time of each function, ours minus bare, in µs: each profile's share
    of samples times its CPU per request (bare's ``bare_us``, ours' ``bare_us / ratio``)."""
    base, mine = _self_shares(bare), _self_shares(ours)
    ours_us = bare_us / ratio
    diff = {
        name: mine.get(name, 0.0) * ours_us - base.get(name, 0.0) * bare_us
        for name in base.keys() | mine.keys()
    }
    print(
        f"self time per request, ours - bare (bare {bare_us:.1f} µs, ours {ours_us:.1f} µs "
        f"= bare / {ratio:.2f}): {ours_us - bare_us:+.1f} µs in all"
    )
    ours_total = sum(v for k, v in diff.items() if _is_ours(k))
    elsewhere = ours_us - bare_us - ours_total
    print(f"  in our functions: {ours_total:+.1f} µs; elsewhere: {elsewhere:+.1f} µs")
    for name, extra in sorted(diff.items(), key=lambda item: -item[1])[:top]:
        print(f"  {extra:+6.2f}  {name}{'  (ours)' if _is_ours(name) else ''}")


_OUR_FILES = (
    "asgi.py", "engine.py", "memory.py", "headers.py", "fixed_window.py", "keys.py",
    "rules.py", "decision.py", "limits.py", "limiter.py", "rejections.py",
)  # fmt: skip


def _is_ours(name: str) -> bool:
    return name.rsplit("(", 1)[-1].rstrip(")") in _OUR_FILES


def main(argv: list[str] | None = None) -> int:
    """Run one of the three tools."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="tool", required=True)
    p_in = sub.add_parser("inprocess")
    p_in.add_argument("--requests", type=int, default=5_000)
    p_in.add_argument("--rounds", type=int, default=30)
    p_in.add_argument("--only", default="bare,floor,ours,ours-headers-none,ours-stub-engine")
    p_in.add_argument("--disturb", default="", help="syscall, tcp, evict:<KiB>, joined by +")
    p_srv = sub.add_parser("server")
    p_srv.add_argument("--requests", type=int, default=40_000)
    p_srv.add_argument("--rounds", type=int, default=3)
    p_srv.add_argument("--connections", type=int, default=16)
    p_srv.add_argument(
        "--only",
        default=",".join(n for n in EXPERIMENTS if not n.endswith("-timed") and "-redis" not in n),
    )
    p_srv.add_argument(
        "--together",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="load each pair at once for SECONDS (default 2; 0: back to back, --requests each)",
    )
    p_spy = sub.add_parser("pyspy")
    p_spy.add_argument("experiment", help="an experiment, or a variant with --stack")
    p_spy.add_argument("--stack", default="uvicorn", choices=["uvicorn", "django", "flask"])
    p_spy.add_argument("--seconds", type=float, default=10)
    p_spy.add_argument("--rate", type=int, default=500)
    p_spy.add_argument("--top", type=int, default=25)
    p_spy.add_argument("--out", type=Path, default=None)
    p_time = sub.add_parser("timings")
    p_time.add_argument("--requests", type=int, default=20_000)
    p_time.add_argument("--rounds", type=int, default=3)
    p_time.add_argument("--connections", type=int, default=16)
    p_time.add_argument(
        "--only",
        default="bare-timed,floor-timed,floor-work-timed,ours-timed,ours-stub-engine-timed",
    )
    p_cmp = sub.add_parser("compare", help="per-request self time, ours minus bare")
    p_cmp.add_argument("bare", type=Path)
    p_cmp.add_argument("ours", type=Path)
    p_cmp.add_argument("--bare-us", type=float, required=True, help="bare's CPU µs/request")
    p_cmp.add_argument("--ratio", type=float, required=True, help="ours' CPU ratio to bare")
    p_cmp.add_argument("--top", type=int, default=30)
    p_gc = sub.add_parser("gcstats", help="collector runs per request inside the server")
    p_gc.add_argument("--requests", type=int, default=40_000)
    p_gc.add_argument("--connections", type=int, default=16)
    p_gc.add_argument("--only", default="bare,floor,ours")
    p_sum = sub.add_parser("summarise")
    p_sum.add_argument("profile", type=Path)
    p_sum.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.tool == "inprocess":
        names = args.only.split(",")
        inprocess(names, args.requests, args.rounds, args.disturb)
    elif args.tool == "server":
        names = ["bare", *(n for n in args.only.split(",") if n != "bare")]
        server(names, args.rounds, args.requests, args.connections, args.together)
    elif args.tool == "timings":
        timings(args.requests, args.connections, args.rounds, args.only.split(","))
    elif args.tool == "pyspy":
        out = args.out or Path(f"profile-{args.stack}-{args.experiment}.speedscope.json")
        pyspy(args.experiment, args.seconds, args.rate, args.top, out, args.stack)
    elif args.tool == "gcstats":
        gcstats(args.only.split(","), args.requests, args.connections)
    elif args.tool == "compare":
        compare(args.bare, args.ours, args.bare_us, args.ratio, args.top)
    else:
        summarise(args.profile, args.top)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

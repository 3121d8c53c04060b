"""Redis backend benchmark: what a decision costs the Redis server, ours and the peers.

Run from the repository root::

    python -m benchmarks.redis                    # server CPU per decision, 3 rounds
    python -m benchmarks.redis --only ratelimit --single --rounds 5
    python -m benchmarks.redis --throughput       # the client-side runs (calls/s, middleware)

(``python benchmarks/redis.py`` works too.) The script starts its own ``redis-server`` on a
free port (``tests/support/redis_server.py``), measures, and stops it.

**Server CPU per decision** (the default; issue 10). For every algorithm, with one limit
and with three limits in one call, 1,000 client keys × 20 decisions (keys round-robin, rate
100/minute, so every decision is admitted and writes), one decision per round trip from a
sync client, on an emptied server:

* Redis server µs per decision from ``INFO commandstats`` after ``CONFIG RESETSTAT``: the
  ``usec`` of the commands the clients sent, divided by the decisions. A script's
  (``EVALSHA``) time already includes the commands it runs (``TIME``, ``GET``, ``SET``...,
  which commandstats also lists on their own lines): adding those again would count them
  twice, so a MONITOR pass before each run tells sent commands from script-run ones;
* the ``redis-server`` process CPU (user + system, ``/proc/<pid>/stat``) per decision as a
  cross-check: it also holds the network I/O of each round trip (reading, parsing, writing
  replies), which commandstats leaves out;
* ``MEMORY USAGE`` of every key midway through the run (a sliding log then holds 10
  entries), summed and divided by the clients: bytes per client, every key it costs;
* side by side: ``limits`` (its Redis storage: fixed window, sliding window counter, moving
  window for the log), throttled-py (fixed window, sliding window, token bucket, leaking
  bucket) and PyrateLimiter (``RedisBucket`` with ``FixedWindow`` and ``SlidingWindowLog``,
  ``StateBucket`` + ``RedisStateStore`` with ``TokenBucket``), each through its public API.
  Three limits: ours and PyrateLimiter decide them in one script call; ``limits`` and
  throttled-py make one call per limit (and are not atomic across them).

Also: ours through the asyncio API (64 tasks, auto-pipelined: batches of calls per round
trip, as a busy server sees them), and a **floor** reference: a script running only what a
decision must (``TIME``, ``GET``, ``SET PX``), no arithmetic. Rounds are interleaved so
that machine noise spreads over all variants; medians reported. Note that commandstats
``usec`` is wall time: on a loaded machine a preempted Redis inflates it, which the
process CPU from /proc does not.

**Scaling out** (``--no-cluster`` skips it): 10,000 client keys × 2 decisions, ours, on a
single server, on a 1-master Cluster (Cluster mode alone), on a 3-master Cluster (slots
split evenly), and on that Cluster with only clients of its first shard (so that this shard
carries the single server's load), sync and asyncio: per node, the share of the decisions
and the same two per-decision figures.

**Throughput** (``--throughput``; issue 4):

* **sync**: ``Limiter.hit`` in a loop, as a ratio to a raw ``EVALSHA`` loop that sends the
  very same script, keys and arguments with the same redis-py client (target ≥ 0.9);
  ``limits``, throttled-py and pyrate-limiter for reference.
* **asyncio, 64 tasks**: 64 concurrent tasks each calling ``await Limiter.ahit`` in a loop
  (auto-pipelined), as a ratio to the **floor** (issue 17; target ≥ 0.8): :class:`BarePipeline`,
  a 20-line auto-pipeline over redis-py's public ``pipeline(transaction=False)`` running our
  script with the arguments our backend sends, and nothing else; and as a ratio to
  ``limits.aio`` (target ≥ 5×). For reference: redis-py pipelines of 64 raw ``EVALSHA`` of
  our script one after the other, throttled-py and pyrate-limiter on ``redis.asyncio``.
  Every variant also reports this process's CPU µs per decision (less noisy than the rates on
  a shared machine), and the header says whether redis-py parses with hiredis.
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
import json
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


# --------------------------------------------------------------------------- server CPU

#: The rate every variant enforces; 20 decisions per key in a run all pass it.
RATE = "100/minute"
#: Three limits in one call: all pass in a run, so every limit of every decision writes.
RATES3 = ("100/minute", "1000/hour", "10000/day")
ALGORITHMS = ("fixed_window", "sliding_window", "sliding_log", "token_bucket", "leaky_bucket")
#: Our asyncio path as a library column.
ASYNC = "ratelimit asyncio"
FLOOR_NOTE = "reference: a script doing only TIME, GET, SET PX; no arithmetic"
#: The least a script decision costs: the same commands ours runs, and nothing else.
FLOOR_SCRIPT = (
    "local t = redis.call('TIME') local v = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], '1', 'PX', 60000) return 0"
)
#: MONITOR's name for the commands a script runs (not sent by a client).
_SCRIPT_CLIENT = "lua"


class Variant:
    """One library × algorithm × number of limits: ``build(url)`` returns ``decide(key)``
    (with ``tasks > 1``: an ``async`` one, run from that many asyncio tasks)."""

    def __init__(
        self,
        library: str,
        algorithm: str,
        limits: int,
        build: Callable[[str], Any],
        note: str = "",
        tasks: int = 1,
    ) -> None:
        self.library = library
        self.algorithm = algorithm
        self.limits = limits
        self.build = build
        self.note = note
        self.tasks = tasks

    @property
    def name(self) -> str:
        return f"{self.library} {self.algorithm} ×{self.limits}"


def _ours(algorithm: str, rates: tuple[str, ...]) -> Callable[[str], Any]:
    def build(url: str) -> Any:
        from ratelimit import Limit, Limiter, RedisBackend

        options: dict[str, Any] = {"mode": "police"} if algorithm == "leaky_bucket" else {}
        limits = [Limit(r, algorithm=algorithm, **options) for r in rates]
        hit = Limiter(RedisBackend.from_url(url, timeout=5.0)).hit
        return lambda key: hit(key, *limits)

    return build


def _ours_async(algorithm: str, rates: tuple[str, ...]) -> Callable[[str], Any]:
    def build(url: str) -> Any:
        from ratelimit import Limit, Limiter, RedisBackend

        options: dict[str, Any] = {"mode": "police"} if algorithm == "leaky_bucket" else {}
        limits = [Limit(r, algorithm=algorithm, **options) for r in rates]
        backend = RedisBackend.from_url(url, timeout=5.0, max_connections=TASKS)
        ahit = Limiter(backend).ahit

        async def decide(key: str) -> Any:
            return await ahit(key, *limits)

        return decide

    return build


def _limits(strategy: str, rates: tuple[str, ...]) -> Callable[[str], Any]:
    def build(url: str) -> Any:
        import limits
        import limits.storage
        import limits.strategies

        lib = getattr(limits.strategies, strategy)(limits.storage.RedisStorage(url))
        items = [limits.parse(r) for r in rates]
        if len(items) == 1:
            item = items[0]
            return lambda key: lib.hit(item, key)
        return lambda key: [lib.hit(item, key) for item in items]  # one call per limit

    return build


def _throttled(using: str, rates: tuple[str, ...]) -> Callable[[str], Any]:
    def build(url: str) -> Any:
        import throttled

        store = throttled.RedisStore(server=url)
        per = {"minute": throttled.per_min, "hour": throttled.per_hour, "day": throttled.per_day}
        limiters = []
        for text in rates:
            count, unit = text.split("/")
            limiters.append(
                throttled.Throttled(using=using, quota=per[unit](int(count)), store=store)
            )
        if len(limiters) == 1:
            limit = limiters[0].limit
            return lambda key: limit(key)
        return lambda key: [t.limit(key) for t in limiters]  # one call per limit

    return build


def _pyrate(kind: str, rates: tuple[str, ...]) -> Callable[[str], Any]:
    def build(url: str) -> Any:
        import pyrate_limiter as pl
        import redis

        client = redis.Redis.from_url(url)
        units = {"minute": pl.Duration.MINUTE, "hour": pl.Duration.HOUR, "day": pl.Duration.DAY}
        parsed = [pl.Rate(int(c), units[u]) for c, u in (r.split("/") for r in rates)]
        buckets: dict[str, Any] = {}

        def bucket(key: str) -> Any:  # what a BucketFactory does: one bucket per client key
            if kind == "token_bucket":
                store = pl.RedisStateStore(client, f"pyrate:{key}")
                return pl.StateBucket(parsed, pl.TokenBucket(), store)
            algorithm = pl.FixedWindow() if kind == "fixed_window" else pl.SlidingWindowLog()
            return pl.RedisBucket.init(parsed, client, f"pyrate:{key}", algorithm)

        def decide(key: str) -> Any:
            b = buckets.get(key)
            if b is None:
                b = buckets[key] = bucket(key)
            return b.put(pl.RateItem(key, time.time_ns() // 1_000_000))

        return decide

    return build


def cpu_variants() -> list[Variant]:
    """Every variant of the server-CPU table, ours first, peers where they have the algorithm."""
    out = []
    for n, rates in ((1, (RATE,)), (3, RATES3)):
        out += [Variant("ratelimit", a, n, _ours(a, rates)) for a in ALGORITHMS]
        out += [
            Variant(ASYNC, a, n, _ours_async(a, rates), "auto-pipelined", tasks=TASKS)
            for a in ALGORITHMS
        ]
        if n == 1:
            out.append(Variant("floor", "fixed_window", 1, _floor, FLOOR_NOTE))
        separate = "one call per limit" if n > 1 else ""
        for algorithm, strategy in (
            ("fixed_window", "FixedWindowRateLimiter"),
            ("sliding_window", "SlidingWindowCounterRateLimiter"),
            ("sliding_log", "MovingWindowRateLimiter"),
        ):
            out.append(Variant("limits", algorithm, n, _limits(strategy, rates), separate))
        for algorithm, using in (
            ("fixed_window", "fixed_window"),
            ("sliding_window", "sliding_window"),
            ("token_bucket", "token_bucket"),
            ("leaky_bucket", "leaking_bucket"),
        ):
            out.append(Variant("throttled-py", algorithm, n, _throttled(using, rates), separate))
        for algorithm in ("fixed_window", "sliding_log", "token_bucket"):
            out.append(Variant("pyrate-limiter", algorithm, n, _pyrate(algorithm, rates)))
    return out


def _floor(url: str) -> Any:
    import redis

    client = redis.Redis.from_url(url)
    sha = client.script_load(FLOOR_SCRIPT)
    evalsha = client.evalsha
    return lambda key: evalsha(sha, 1, key, "1")


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) the process has used, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _classify(client: Any, decide: Callable[[str], Any], keys: list[str]) -> dict[str, float]:
    """The share of each command's calls that clients send (the rest a script runs).

    A script command's ``usec`` already includes the commands the script calls, so only the
    commands sent by a client are added up: MONITOR tells them apart (``lua`` client).
    """
    sent: dict[str, int] = {}
    nested: dict[str, int] = {}
    with client.monitor() as monitor:
        for key in keys:
            decide(key)
        client.echo("__end__")
        while True:
            entry = monitor.next_command()
            name = entry["command"].split(" ", 1)[0].lower()
            if name == "echo" and entry["command"].endswith("__end__"):
                break
            into = nested if entry["client_type"] == _SCRIPT_CLIENT else sent
            into[name] = into.get(name, 0) + 1
    return {name: n / (n + nested.get(name, 0)) for name, n in sent.items()}


def _commandstats(client: Any) -> dict[str, tuple[int, int]]:
    """command (lower case, subcommands joined by ``|``) -> (calls, usec)."""
    return {
        name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for name, v in client.info("commandstats").items()
    }


class CpuResult:
    """One variant's run: server µs per decision (commandstats, /proc) and bytes per client."""

    def __init__(
        self, usec: float, proc_usec: float, round_trips: float, inner: float, memory: float
    ) -> None:
        self.usec = usec  # commandstats: Σ usec of the commands clients sent / decisions
        self.proc_usec = proc_usec  # redis-server user + system CPU / decisions
        self.round_trips = round_trips  # commands clients sent per decision
        self.inner = inner  # commands scripts ran per decision
        self.memory = memory  # Σ MEMORY USAGE of all keys / clients, midway through the run


def run_cpu(server: Any, variant: Variant, clients: int, per_key: int) -> CpuResult:
    """``clients × per_key`` decisions (keys round-robin) on an emptied server."""
    import redis

    client = redis.Redis.from_url(server.url)
    pid = server.process.pid
    keys = [f"10.0.{i >> 8}.{i & 255}" for i in range(clients)]
    client.flushall()
    decide = variant.build(server.url)
    if variant.tasks > 1:
        run = asyncio.new_event_loop().run_until_complete  # one loop: one client, kept warm

        def sync(key: str) -> Any:
            return run(decide(key))

        async def burst(keys: list[str]) -> None:
            async def worker(mine: list[str]) -> None:
                for key in mine:
                    await decide(key)

            tasks = variant.tasks
            await asyncio.gather(*(worker(keys[i::tasks]) for i in range(tasks)))

        def one_round() -> None:
            run(burst(keys))
    else:
        sync = decide

        def one_round() -> None:
            for key in keys:
                decide(key)

    share = _classify(client, sync, ["warm-up"] * 3)  # loads the scripts too
    client.flushall()
    client.config_resetstat()
    cpu = _proc_cpu(pid)
    memory = 0.0
    for rnd in range(per_key):
        one_round()
        if rnd == per_key // 2 - 1:  # midway: a sliding log holds per_key / 2 entries
            before = _proc_cpu(pid)
            memory = _memory_of_all_keys(client) / clients
            cpu += _proc_cpu(pid) - before  # not part of the decisions
    cpu = _proc_cpu(pid) - cpu
    stats = _commandstats(client)
    decisions = clients * per_key
    sent = sum(usec * share[name] for name, (_, usec) in stats.items() if name in share)
    trips = sum(calls * share[name] for name, (calls, _) in stats.items() if name in share)
    inner = sum(
        calls * (1 - share.get(name, 0.0))
        for name, (calls, _) in stats.items()
        if not name.startswith(("info", "config", "memory", "scan"))
    )
    client.close()
    return CpuResult(
        sent / decisions, cpu * 1e6 / decisions, trips / decisions, inner / decisions, memory
    )


def _memory_of_all_keys(client: Any) -> float:
    """Σ MEMORY USAGE (SAMPLES 0: every element) over every key of the database."""
    pipe = client.pipeline(transaction=False)
    for key in client.scan_iter(count=1000):
        pipe.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
    return float(sum(pipe.execute()))


def cpu_table(
    server: Any, variants: list[Variant], rounds: int, clients: int, per_key: int
) -> dict[str, list[CpuResult]]:
    """Every variant ``rounds`` times, rounds interleaved (noise spreads over all of them)."""
    results: dict[str, list[CpuResult]] = {v.name: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            results[variant.name].append(run_cpu(server, variant, clients, per_key))
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


async def _async_decisions(url: str, limit: Any, keys: list[str], per_key: int, tasks: int) -> None:
    """``per_key`` decisions per key from ``tasks`` asyncio tasks (auto-pipelined)."""
    from ratelimit import Limiter, RedisBackend

    backend = RedisBackend.from_url(url, timeout=5.0, max_connections=tasks)
    ahit = Limiter(backend).ahit

    async def worker(mine: list[str]) -> None:
        for _ in range(per_key):
            for key in mine:
                await ahit(key, limit)

    await asyncio.gather(*(worker(keys[i::tasks]) for i in range(tasks)))
    await backend.aclose()


def run_cluster(
    nodes: list[Any],
    url: str,
    algorithm: str,
    clients: int,
    per_key: int,
    tasks: int = 1,
    first_shard_only: bool = False,
) -> list[tuple[float, float, float]]:
    """Our decisions on ``url`` (one server or a Cluster of ``nodes``), from one sync client
    (``tasks == 1``) or that many asyncio tasks: per node, (share of the decisions, server
    µs per decision from commandstats, redis-server CPU µs per decision from /proc)."""
    import redis
    from redis.crc import key_slot

    from ratelimit import Limit, Limiter, RedisBackend

    limit = Limit(RATE, algorithm=algorithm)
    naming = RedisBackend(redis.Redis())  # only builds key names
    keys = []
    i = 0
    while len(keys) < clients:
        key = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        i += 1
        # the first master holds slots 0-5460 (tests/support/redis_server.py splits evenly)
        if not first_shard_only or key_slot(naming.key_for(key, limit)) < 16384 // 3:
            keys.append(key)
    direct = [redis.Redis(port=node.port) for node in nodes]
    for client in direct:
        client.flushall()
    backend = RedisBackend.from_url(url, timeout=5.0)
    hit = Limiter(backend).hit
    for key in keys[:200]:  # the script reaches every node (NOSCRIPT, then EVAL)
        hit(key, limit)
    for client in direct:
        client.flushall()
        client.config_resetstat()
    cpu = [_proc_cpu(node.process.pid) for node in nodes]
    if tasks == 1:
        for _ in range(per_key):
            for key in keys:
                hit(key, limit)
    else:
        asyncio.run(_async_decisions(url, limit, keys, per_key, tasks))
    cpu = [_proc_cpu(node.process.pid) - c for node, c in zip(nodes, cpu, strict=True)]
    stats = [_commandstats(client) for client in direct]
    backend.close()
    for client in direct:
        client.close()
    total = clients * per_key
    out = []
    for stat, seconds in zip(stats, cpu, strict=True):
        calls, usec = stat.get("evalsha", (0, 0))
        out.append((calls / total, usec / max(calls, 1), seconds * 1e6 / max(calls, 1)))
    return out


def cluster_table(rounds: int, clients: int, per_key: int) -> dict[str, list[list[Any]]]:
    """Single server vs a 3-master Cluster, same decisions: per node, rounds of results."""
    from tests.support.redis_server import redis_cluster, redis_server

    results: dict[str, list[list[Any]]] = {}

    def url(cluster: Any) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in cluster.nodes)

    with redis_server() as single, redis_cluster(1) as one, redis_cluster(3) as three:
        setups = (
            ("single server", [single], single.url, False),
            ("1-master Cluster", one.nodes, url(one), False),
            ("3-master Cluster", three.nodes, url(three), False),
            ("3-master Cluster, first shard's clients only", three.nodes, url(three), True),
        )
        for _ in range(rounds):
            for algorithm in ("fixed_window", "token_bucket"):
                for tasks in (1, TASKS):
                    for name, nodes, target, first in setups:
                        rows = run_cluster(nodes, target, algorithm, clients, per_key, tasks, first)
                        mode = "sync" if tasks == 1 else f"asyncio, {tasks} tasks"
                        results.setdefault(f"{algorithm}|{name}|{mode}", []).append(rows)
                        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return results


def _print_cluster(results: dict[str, list[list[Any]]], clients: int, per_key: int) -> None:
    print(
        f"\nScaling out: {clients:,} client keys × {per_key} decisions (rate {RATE}), ours, "
        "on one server, a 1-master Cluster (Cluster mode alone) and a 3-master Cluster (slots "
        "split evenly); per node: share of the decisions, server µs per decision "
        "(commandstats), redis-server CPU µs per decision (/proc). Median of the rounds. "
        "asyncio: the auto-pipeline sends up to 32 calls per pipeline, which a Cluster "
        "client splits by node (about 11 per node with three)."
    )
    print(
        "\n| algorithm | clients | set-up | node | share of decisions | server µs "
        "| CPU µs (/proc) |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for label, runs in results.items():
        algorithm, name, mode = label.split("|")
        for i in range(len(runs[0])):
            share = statistics.median(run[i][0] for run in runs)
            if not share:
                continue  # a shard given no clients (the equal-load comparison)
            usec = statistics.median(run[i][1] for run in runs)
            proc = statistics.median(run[i][2] for run in runs)
            print(
                f"| {algorithm} | {mode} | {name} | {i + 1} | {share:.1%} | {usec:.2f} "
                f"| {proc:.1f} |"
            )


# --------------------------------------------------------------------------- throughput


#: (decisions per second, this process's CPU µs per decision) of one timed run.
Rate = tuple[float, float]
RAW = "raw EVALSHA loop"
FLOOR = "floor: bare auto-pipeline, our script"
LIMITS_AIO = "limits.aio (fixed window)"


def _ours_calls(url: str, limit: Any, keys: list[str]) -> tuple[Any, list[tuple[Any, ...]]]:
    """A sync client, and the ``EVALSHA`` arguments our backend sends for each of ``keys``
    (the same script, keys and arguments as a decision: the raw loops and the floor run them)."""
    import redis

    from ratelimit import Limiter, RedisBackend
    from ratelimit.backends.redis_script import SCRIPT_SHA

    client = redis.Redis.from_url(url)
    backend = RedisBackend(client)
    Limiter(backend).hit("warm-up", limit)  # loads the script
    calls = []
    for key in keys:
        _, script_keys, args = backend._request(key, [limit], 1, True)
        calls.append((SCRIPT_SHA, len(script_keys), *script_keys, *args))
    return client, calls


def _loop(call: Callable[[], Any], seconds: float) -> Rate:
    """(calls per second, this process's CPU µs per call) of ``call()`` in a loop."""
    n = 0
    cpu = time.process_time()
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            call()
        n += 50
    return n / (time.perf_counter() - start), (time.process_time() - cpu) * 1e6 / n


def _sync_variants(url: str) -> dict[str, Callable[[float], Rate]]:
    """name -> run(seconds) -> decisions per second, one at a time from one sync client."""
    import limits
    import limits.storage
    import limits.strategies
    import throttled

    from ratelimit import Limit, Limiter, RedisBackend

    limit = Limit(HIGH, algorithm="token_bucket")
    client, ((*evalsha_args,),) = _ours_calls(url, limit, ["bench"])
    hit = Limiter(RedisBackend(client)).hit
    evalsha = client.evalsha
    lib = limits.strategies.FixedWindowRateLimiter(limits.storage.RedisStorage(url))
    item = limits.parse(HIGH)
    per_second = throttled.rate_limiter.per_sec(1_000_000)
    throttle = throttled.Throttled(
        using="token_bucket", quota=per_second, store=throttled.RedisStore(server=url)
    )
    pyrate = _pyrate("token_bucket", ("1000000/day",))(url)
    return {
        RAW: lambda s: _loop(lambda: evalsha(*evalsha_args), s),
        "ratelimit Limiter.hit": lambda s: _loop(lambda: hit("bench", limit), s),
        "limits (fixed window)": lambda s: _loop(lambda: lib.hit(item, "bench"), s),
        "throttled-py (token bucket)": lambda s: _loop(lambda: throttle.limit("bench"), s),
        "pyrate-limiter (token bucket)": lambda s: _loop(lambda: pyrate("bench"), s),
    }


class BarePipeline:
    """The floor of an asyncio decision: the calls made during one event-loop iteration sent
    together as redis-py pipelines of up to 32 (as ours are), and nothing else — no deadline,
    no circuit breaker, no reply decoding, no key or argument building."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pending: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self.tasks: set[asyncio.Task[None]] = set()

    def call(self, *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending.append((args, future))
        if len(self.pending) == 1:
            loop.call_soon(self.flush)
        return future

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), 32):
            task = asyncio.ensure_future(self.send(pending[start : start + 32]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command("EVALSHA", *args)
        replies = await pipe.execute(raise_on_error=False)
        for (_, future), reply in zip(batch, replies, strict=True):
            future.set_result(reply)


def _async_variants(url: str) -> dict[str, Callable[[float], Rate]]:
    """name -> run(seconds) -> decisions per second from TASKS concurrent asyncio tasks."""
    import limits
    import limits.aio.storage
    import limits.aio.strategies
    import pyrate_limiter as pl
    import redis.asyncio
    import throttled.asyncio

    from ratelimit import Limit, Limiter, RedisBackend

    limit = Limit(HIGH, algorithm="token_bucket")
    item = limits.parse(HIGH)
    names = [f"client-{i}" for i in range(TASKS)]
    sync_client, calls = _ours_calls(url, limit, names)
    sync_client.close()

    async def tasks(call: Callable[[int], Any], seconds: float) -> Rate:
        await asyncio.gather(*(call(i) for i in range(TASKS)))  # connections, script, keys
        counts = [0] * TASKS
        cpu = time.process_time()
        start = time.perf_counter()
        deadline = start + seconds

        async def worker(i: int) -> None:
            while time.perf_counter() < deadline:
                await call(i)
                counts[i] += 1

        await asyncio.gather(*(worker(i) for i in range(TASKS)))
        n = sum(counts)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) * 1e6 / n

    def ours(seconds: float) -> Rate:
        async def run() -> Rate:
            backend = RedisBackend.from_url(url, max_connections=TASKS)
            ahit = Limiter(backend).ahit
            try:
                return await tasks(lambda i: ahit(names[i], limit), seconds)
            finally:
                await backend.aclose()

        return asyncio.run(run())

    def floor(seconds: float) -> Rate:
        async def run() -> Rate:
            client = redis.asyncio.Redis.from_url(url, max_connections=TASKS)
            bare = BarePipeline(client)
            try:
                return await tasks(lambda i: bare.call(*calls[i]), seconds)
            finally:
                await client.aclose()

        return asyncio.run(run())

    def raw(seconds: float) -> Rate:
        async def run() -> Rate:
            client = redis.asyncio.Redis.from_url(url)
            n = 0
            cpu = time.process_time()
            start = time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline:
                pipe = client.pipeline(transaction=False)
                for args in calls:
                    pipe.evalsha(*args)
                await pipe.execute()
                n += TASKS
            rate = n / (time.perf_counter() - start), (time.process_time() - cpu) * 1e6 / n
            await client.aclose()
            return rate

        return asyncio.run(run())

    def limits_aio(seconds: float) -> Rate:
        async def run() -> Rate:
            async_url = url.replace("redis://", "async+redis://", 1)
            storage = limits.aio.storage.RedisStorage(async_url, implementation="redispy")
            lib = limits.aio.strategies.FixedWindowRateLimiter(storage)
            return await tasks(lambda i: lib.hit(item, names[i]), seconds)

        return asyncio.run(run())

    def throttled_aio(seconds: float) -> Rate:
        async def run() -> Rate:
            throttle = throttled.asyncio.Throttled(
                using="token_bucket",
                quota=throttled.rate_limiter.per_sec(1_000_000),
                store=throttled.asyncio.RedisStore(server=url),
            )
            return await tasks(lambda i: throttle.limit(names[i]), seconds)

        return asyncio.run(run())

    def pyrate_aio(seconds: float) -> Rate:
        async def run() -> Rate:
            client = redis.asyncio.Redis.from_url(url, max_connections=TASKS)
            rates = [pl.Rate(1_000_000, pl.Duration.DAY)]
            buckets = [
                await pl.RedisBucket.init(rates, client, f"pyrate:{name}", pl.FixedWindow())
                for name in names
            ]

            async def put(i: int) -> Any:
                return await buckets[i].put(pl.RateItem(names[i], time.time_ns() // 1_000_000))

            try:
                return await tasks(put, seconds)
            finally:
                await client.aclose()

        return asyncio.run(run())

    return {
        "ratelimit ahit": ours,
        FLOOR: floor,
        "raw pipelines of 64 EVALSHA, our script": raw,
        LIMITS_AIO: limits_aio,
        "throttled-py asyncio (token bucket)": throttled_aio,
        "pyrate-limiter asyncio (fixed window)": pyrate_aio,
    }


def _rounds(
    variants: dict[str, Callable[[float], Rate]], rounds: int, seconds: float
) -> dict[str, list[Rate]]:
    """(calls/s, CPU µs per call) of every variant in each of ``rounds`` interleaved rounds.

    Short interleaved rounds put each pair of variants under nearly the same machine load;
    ratios are then taken round by round and their median reported.
    """
    results: dict[str, list[Rate]] = {name: [] for name in variants}
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

#: Server µs per decision (commandstats), one limit, Redis 7.0 (issue 10).
TARGETS = {
    "fixed_window": 5.0,
    "sliding_window": 5.0,
    "token_bucket": 6.0,
    "leaky_bucket": 6.0,
    "sliding_log": 8.0,
}
LIBRARIES = ("ratelimit", ASYNC, "limits", "throttled-py", "pyrate-limiter")


def _print_cpu(results: dict[str, list[CpuResult]], variants: list[Variant]) -> None:
    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in results[name])

    print(
        "\nRedis server time per decision: µs from INFO commandstats (the commands clients "
        "sent; a script's time includes the commands it runs), and in brackets the "
        "redis-server process CPU from /proc (network I/O included). Median of the rounds."
    )
    print("\n| algorithm | limits | " + " | ".join(LIBRARIES) + " | target (ours, 1 limit) |")
    print("|---|---:|" + "---:|" * len(LIBRARIES) + "---|")
    by = {(v.library, v.algorithm, v.limits): v for v in variants}
    for n in (1, 3):
        for algorithm in ALGORITHMS:
            cells = []
            for library in LIBRARIES:
                v = by.get((library, algorithm, n))
                if v is None:
                    cells.append("–")
                    continue
                cells.append(f"{med(v.name, 'usec'):.1f} ({med(v.name, 'proc_usec'):.0f})")
            target = f"≤ {TARGETS[algorithm]:g} µs" if n == 1 else ""
            print(f"| {algorithm} | {n} | " + " | ".join(cells) + f" | {target} |")
    print(
        "\n| variant | server µs (commandstats) | rounds | redis-server CPU µs (/proc) "
        "| commands sent | commands in scripts | bytes per client (MEMORY USAGE) | notes |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for v in variants:
        rs = results[v.name]
        spread = "–".join(f"{x:.1f}" for x in (min(r.usec for r in rs), max(r.usec for r in rs)))
        print(
            f"| {v.name} | {med(v.name, 'usec'):.2f} | {spread} | {med(v.name, 'proc_usec'):.1f} "
            f"| {med(v.name, 'round_trips'):.2f} | {med(v.name, 'inner'):.2f} "
            f"| {med(v.name, 'memory'):.0f} | {v.note} |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the measurements against one fresh redis-server and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per variant")
    parser.add_argument("--clients", type=int, default=1000, help="client keys")
    parser.add_argument("--per-key", type=int, default=20, help="decisions per client key")
    parser.add_argument(
        "--only", action="append", help="libraries to run (ratelimit, limits, ...); repeatable"
    )
    parser.add_argument("--algorithm", action="append", help="algorithms to run; repeatable")
    parser.add_argument("--single", action="store_true", help="one limit only (not three)")
    parser.add_argument("--no-cluster", action="store_true", help="skip the Cluster part")
    parser.add_argument("--json", type=Path, help="also write the medians to this JSON file")
    parser.add_argument(
        "--cluster-clients", type=int, default=10_000, help="client keys, Cluster part"
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="the client-side runs instead: sync and asyncio calls/s, memory, middleware",
    )
    parser.add_argument("--quick", action="store_true", help="--throughput: a short smoke run")
    parser.add_argument("--keys", type=int, help="--throughput: client keys for memory")
    parser.add_argument("--no-http", action="store_true", help="--throughput: skip middleware")
    parser.add_argument(
        "--no-memory", action="store_true", help="--throughput: skip memory per key"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from tests.support.redis_server import HAVE_REDIS, SKIP_REASON, redis_server

    if not HAVE_REDIS:
        print(SKIP_REASON, file=sys.stderr)
        return 2
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: redis-server {version}, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}."
    )
    if args.throughput:
        return _throughput_main(args, redis_server)
    variants = [
        v
        for v in cpu_variants()
        if (not args.only or v.library in args.only)
        and (not args.algorithm or v.algorithm in args.algorithm)
        and (not args.single or v.limits == 1)
    ]
    print(
        f"{args.clients:,} client keys × {args.per_key} decisions each (round-robin), "
        f"rate {RATE} (three limits: {', '.join(RATES3)}), every decision admitted; "
        f"{args.rounds} interleaved rounds; sync clients, one decision per round trip."
    )
    with redis_server() as server:
        results = cpu_table(server, variants, args.rounds, args.clients, args.per_key)
    _print_cpu(results, variants)
    spread: dict[str, list[list[Any]]] = {}
    if not args.no_cluster:
        per_key = max(1, args.clients * args.per_key // args.cluster_clients)
        spread = cluster_table(args.rounds, args.cluster_clients, per_key)
        _print_cluster(spread, args.cluster_clients, per_key)
    load = os.getloadavg()
    print(f"\nload average after the run: {' '.join(f'{x:.2f}' for x in load)}")
    if args.json:
        fields = ("usec", "proc_usec", "round_trips", "inner", "memory")
        data = {
            "redis": version,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load": load,
            "variants": {
                name: {f: statistics.median(getattr(r, f) for r in rs) for f in fields}
                | {"min_usec": min(r.usec for r in rs)}
                for name, rs in results.items()
            },
            "cluster": {
                label: [
                    [statistics.median(run[i][j] for run in runs) for j in range(3)]
                    for i in range(len(runs[0]))
                ]
                for label, runs in spread.items()
            },
        }
        args.json.write_text(json.dumps(data, indent=1))
    return 0


def _throughput_main(args: argparse.Namespace, redis_server: Any) -> int:
    """The client-side measurements (issue 4): calls/s, memory per key, middleware."""
    rounds = 4 if args.quick else 15
    seconds = 0.25 if args.quick else 0.5
    http_rounds, http_seconds = (1, 2.0) if args.quick else (3, 3.0)
    keys = args.keys or (5_000 if args.quick else 50_000)
    import redis
    import redis.utils

    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure-Python parser, no hiredis"
    print(
        f"Throughput: {rounds} interleaved rounds of {seconds:g} s per variant, ratios taken "
        "round by round, medians reported. The machine is shared and noisy: read the ratios. "
        f"redis-py {redis.__version__} ({parser})."
    )
    with redis_server() as server:
        url = server.url
        memory = [] if args.no_memory else _memory(url, keys)  # first, on a fresh server
        sync_runs = _rounds(_sync_variants(url), rounds, seconds)
        aio_runs = _rounds(_async_variants(url), rounds, seconds)
        http: dict[str, list[float]] = {}
        if not args.no_http and shutil.which("wrk"):
            for _ in range(http_rounds):
                for variant in ("bare", "ratelimit", "slowapi", "ratelimit-memory"):
                    rps, bad = _http(url, variant, http_seconds, 64)
                    if bad:
                        print(f"warning: {variant}: {bad} non-2xx responses", file=sys.stderr)
                    http.setdefault(variant, []).append(rps)

    sync = {name: [rate for rate, _ in runs] for name, runs in sync_runs.items()}
    aio = {name: [rate for rate, _ in runs] for name, runs in aio_runs.items()}
    cpu = {name: statistics.median(c for _, c in runs) for name, runs in sync_runs.items()}
    cpu |= {name: statistics.median(c for _, c in runs) for name, runs in aio_runs.items()}
    print(
        "\n| sync, one decision per round trip | decisions/s | client CPU µs per decision "
        "| ÷ raw EVALSHA loop | target |\n|---|---:|---:|---:|---|"
    )
    for name, rates in sync.items():
        target = "≥ 0.9" if name.startswith("ratelimit") else ""
        print(
            f"| {name} | {statistics.median(rates):,.0f} | {cpu[name]:.1f} "
            f"| {_ratio(sync, name, RAW):.2f} | {target} |"
        )
    print(
        f"\n| asyncio, {TASKS} tasks | decisions/s | client CPU µs per decision | ÷ floor "
        "| ÷ limits.aio | target |\n|---|---:|---:|---:|---:|---|"
    )
    for name, rates in aio.items():
        target = "≥ 0.8 of the floor, ≥ 5× limits.aio" if name.startswith("ratelimit") else ""
        if name.startswith("raw"):
            target = "the ceiling: no tasks, no futures"
        print(
            f"| {name} | {statistics.median(rates):,.0f} | {cpu[name]:.1f} "
            f"| {_ratio(aio, name, FLOOR):.2f} | {_ratio(aio, name, LIMITS_AIO):.1f}× "
            f"| {target} |"
        )
    if memory:
        print("\n| memory per tracked key | MEMORY USAGE | used_memory Δ | target |")
        print("|---|---:|---:|---|")
    for name, delta, usage in memory:
        target = "≤ 90 B" if name.startswith("ratelimit") else ""
        print(f"| {name} | {usage:.0f} B | {delta:.0f} B | {target} |")
    if http:
        print("\n| uvicorn+Starlette, wrk 64 connections | req/s | ÷ bare | target |")
        print("|---|---:|---:|---|")
        for variant, values in http.items():
            ratio = _ratio(http, variant, "bare")
            target = "≥ 0.75 of bare" if variant == "ratelimit" else ""
            store = "memory" if variant == "ratelimit-memory" else "Redis"
            name = variant.removesuffix("-memory")
            print(
                f"| {name} ({store}) | {statistics.median(values):,.0f} | {ratio:.2f} | {target} |"
            )
    if memory:
        print(
            f"\nmemory: {keys:,} client keys, one hit each of a 100/hour limit; bytes per tracked "
            "client key. MEMORY USAGE = what Redis attributes to the key (key, value, dict entry); "
            "used_memory Δ adds the expiry entry and hash-table slots."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Memory backend: decisions per second and bytes per tracked key, ours vs the peers.

Run: ``python benchmarks/memory.py`` (``--quick`` for a short smoke run). Needs the bench
extra: ``pip install -e ".[bench]"``. Every library runs in this one process, on the same
keys, interleaved round by round, so the ratios compare like with like on this machine.

Peers, per algorithm (the implementation a user would pick for the same job, on its in-memory
storage): ``limits`` (fixed window, sliding window counter, moving window = sliding log),
throttled-py (fixed window, sliding window, token bucket, leaking bucket), pyrate-limiter
(fixed window and sliding window log on its ``InMemoryBucket``, token bucket and GCRA — the
leaky bucket as a meter — on its ``StateBucket``, one bucket per client key through a small
``BucketFactory``, which is how it limits per client; its background leaker is not started,
in its favour). Target (issue 9): ours ≥ 3× the fastest peer of each algorithm.

Each timed round sends ``--hits`` decisions spread over ``--keys`` client keys with a limit
that admits most of them (100/minute): the cost of a decision, not of a rejection. In every
round each library runs once, in a rotating order; each ratio is taken within its round and
the medians over ``--rounds`` rounds are printed. ``limits``' ``hit`` returns a bool; a
middleware that sends RateLimit headers also needs remaining and reset, which ``limits`` gives
through a second call (``get_window_stats``): the "limits +stats" rows measure that pair,
while our single ``hit`` returns all of it in its ``Decision`` (throttled-py's ``limit``
returns its state too; pyrate-limiter's ``try_acquire`` only a bool). Time is this process's
CPU time (``time.process_time``): the loops are single-threaded and CPU-bound, so on a quiet
machine it equals wall time, and on a busy one other processes' load does not count against
either library. Bytes per key: tracemalloc growth while 10,000 fresh keys each take one hit
(keys made beforehand, so only storage counts).
"""

from __future__ import annotations

import sys

# Run as a script, this file's directory comes first on sys.path, and benchmarks/redis.py
# would shadow the redis package (which the peers import): put the repository root there.
if __name__ == "__main__" and sys.path and sys.path[0].endswith("benchmarks"):
    sys.path[0] = sys.path[0][: -len("benchmarks")].rstrip("/\\") or "."

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

import limits
import limits.storage
import limits.strategies
import pyrate_limiter
import throttled

from ratelimit import Limit, Limiter, MemoryBackend

RATE = "100/minute"
Decide = Callable[[str], Any]
Factory = Callable[[], Decide]


def ours(algorithm: str) -> Decide:
    limiter = Limiter(MemoryBackend())
    limit = Limit(RATE, algorithm=algorithm)
    hit = limiter.hit

    def decide(key: str) -> bool:
        return hit(key, limit).allowed

    return decide


def limits_hit(strategy: type[limits.strategies.RateLimiter]) -> Decide:
    limiter = strategy(limits.storage.MemoryStorage())
    item = limits.parse(RATE)
    hit = limiter.hit

    def decide(key: str) -> bool:
        return hit(item, key)

    return decide


def limits_with_stats(strategy: type[limits.strategies.RateLimiter]) -> Decide:
    """limits' hit, then get_window_stats: remaining and reset, for RateLimit headers."""
    limiter = strategy(limits.storage.MemoryStorage())
    item = limits.parse(RATE)
    hit = limiter.hit
    stats = limiter.get_window_stats

    def decide(key: str) -> bool:
        allowed = hit(item, key)
        stats(item, key)
        return allowed

    return decide


def throttled_py(using: str) -> Decide:
    """throttled-py's ``Throttled.limit`` (returns its state: remaining, reset, retry)."""
    throttle = throttled.Throttled(
        using=using, quota=throttled.rate_limiter.per_min(100), store=throttled.MemoryStore()
    )
    limit = throttle.limit

    def decide(key: str) -> bool:
        return not limit(key).limited

    return decide


class _PerKey(pyrate_limiter.BucketFactory):
    """pyrate-limiter's way to limit per client: a bucket per item name."""

    def __init__(self, make: Callable[[], pyrate_limiter.AbstractBucket]) -> None:
        self.make = make
        self.buckets: dict[str, pyrate_limiter.AbstractBucket] = {}
        self.clock = make()

    def wrap_item(self, name: str, weight: int = 1) -> pyrate_limiter.RateItem:
        return pyrate_limiter.RateItem(name, self.clock.now(), weight=weight)

    def get(self, item: pyrate_limiter.RateItem) -> pyrate_limiter.AbstractBucket:
        bucket = self.buckets.get(item.name)
        if bucket is None:
            bucket = self.buckets[item.name] = self.make()
        return bucket


def pyrate(algorithm: str) -> Decide:
    """pyrate-limiter's ``Limiter.try_acquire`` (non-blocking), a bucket per client key."""
    p = pyrate_limiter
    rates = [p.Rate(100, p.Duration.MINUTE)]
    makers: dict[str, Callable[[], p.AbstractBucket]] = {
        "FixedWindow": lambda: p.InMemoryBucket(rates, algorithm=p.FixedWindow()),
        "SlidingWindowLog": lambda: p.InMemoryBucket(rates, algorithm=p.SlidingWindowLog()),
        "TokenBucket": lambda: p.StateBucket(rates, algorithm=p.TokenBucket()),
        "GCRA": lambda: p.StateBucket(rates, algorithm=p.GCRA()),
    }
    limiter = p.Limiter(_PerKey(makers[algorithm]))
    acquire = limiter.try_acquire

    def decide(key: str) -> bool:
        return bool(acquire(key, blocking=False))

    return decide


S = limits.strategies
#: algorithm -> [(peer label, factory)]
PEERS: dict[str, list[tuple[str, Factory]]] = {
    "fixed_window": [
        ("limits", lambda: limits_hit(S.FixedWindowRateLimiter)),
        ("limits +stats", lambda: limits_with_stats(S.FixedWindowRateLimiter)),
        ("throttled-py", lambda: throttled_py("fixed_window")),
        ("pyrate-limiter", lambda: pyrate("FixedWindow")),
    ],
    "sliding_window": [
        ("limits", lambda: limits_hit(S.SlidingWindowCounterRateLimiter)),
        ("limits +stats", lambda: limits_with_stats(S.SlidingWindowCounterRateLimiter)),
        ("throttled-py", lambda: throttled_py("sliding_window")),
    ],
    "sliding_log": [
        ("limits", lambda: limits_hit(S.MovingWindowRateLimiter)),
        ("limits +stats", lambda: limits_with_stats(S.MovingWindowRateLimiter)),
        ("pyrate-limiter", lambda: pyrate("SlidingWindowLog")),
    ],
    "token_bucket": [
        ("throttled-py", lambda: throttled_py("token_bucket")),
        ("pyrate-limiter", lambda: pyrate("TokenBucket")),
    ],
    "leaky_bucket": [
        ("throttled-py", lambda: throttled_py("leaking_bucket")),
        ("pyrate-limiter GCRA", lambda: pyrate("GCRA")),
    ],
}


def hits_per_second(make: Callable[[], Callable[[str], bool]], keys: list[str], hits: int) -> float:
    decide = make()
    sequence = [keys[i % len(keys)] for i in range(hits)]
    gc.collect()
    start = time.process_time()
    for key in sequence:
        decide(key)
    return hits / (time.process_time() - start)


def bytes_per_key(make: Callable[[], Callable[[str], bool]], count: int = 10_000) -> float:
    decide = make()
    keys = [f"198.51.{i >> 8}.{i & 255}" for i in range(count)]
    decide("warm-up")
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for key in keys:
            decide(key)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    return sum(s.size_diff for s in after.compare_to(before, "filename")) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hits", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.hits, args.rounds = 20_000, 1
    keys = [f"203.0.{i >> 8}.{i & 255}" for i in range(args.keys)]
    versions = ", ".join(
        f"{name} {version(name)}" for name in ("limits", "throttled-py", "pyrate-limiter")
    )
    print(
        f"memory backends, {RATE}, {args.hits:,} hits over {args.keys:,} keys, "
        f"medians of {args.rounds} interleaved rounds; {versions}"
    )
    header = f"{'algorithm':<16}{'library':<22}{'hits/s':>12}{'ours ÷ it':>11}{'B/key':>8}"
    print(header)
    print("-" * len(header))
    verdicts = []
    for algorithm, peers in PEERS.items():
        entries: list[tuple[str, Factory]] = [("ours", lambda a=algorithm: ours(a)), *peers]
        runs: dict[str, list[float]] = {label: [] for label, _ in entries}
        for r in range(args.rounds):
            # Every library once per round, in a rotating order; ratios within the round.
            turn = entries[r % len(entries) :] + entries[: r % len(entries)]
            for label, make in turn:
                runs[label].append(hits_per_second(make, keys, args.hits))
        fastest = ("", 0.0)
        for label, make in entries:
            hits = statistics.median(runs[label])
            ratio = ""
            if label != "ours":
                ours_over = statistics.median(
                    o / t for o, t in zip(runs["ours"], runs[label], strict=True)
                )
                ratio = f"{ours_over:.2f}x"
                if "+stats" not in label and hits > fastest[1]:
                    fastest = (label, hits)
            size = bytes_per_key(make)
            print(f"{algorithm:<16}{label:<22}{hits:>12,.0f}{ratio:>11}{size:>8.0f}")
        best = statistics.median(o / t for o, t in zip(runs["ours"], runs[fastest[0]], strict=True))
        verdicts.append(
            f"{algorithm}: {best:.2f}x the fastest peer ({fastest[0]}): "
            f"{'met' if best >= 3 else 'MISSED'}"
        )
    print("-" * len(header))
    print("target: ours >= 3x the fastest peer of each algorithm ('+stats' rows not counted)")
    for line in verdicts:
        print(line)


if __name__ == "__main__":
    main()

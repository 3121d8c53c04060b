"""Memory backend: decisions per second and bytes per tracked key, ours vs ``limits``.

Run: ``python benchmarks/memory.py`` (``--quick`` for a short smoke run). Needs the bench
extra: ``pip install -e ".[bench]"``. Both libraries run in this one process, on the same
keys, interleaved round by round, so the ratios compare like with like on this machine.

Each timed round sends ``--hits`` decisions spread over ``--keys`` client keys with a limit
that admits most of them (100/minute): the cost of a decision, not of a rejection. The
rounds are interleaved, each ratio is taken within its round, and the medians over
``--rounds`` rounds are printed. ``limits``' ``hit`` returns a bool; a
middleware that sends RateLimit headers also needs remaining and reset, which ``limits`` gives
through a second call (``get_window_stats``): the "+stats" column measures that pair, while
our single ``hit`` returns all of it in its ``Decision``. ``limits``' ``hit`` returns a bool; a
middleware that sends RateLimit headers also needs remaining and reset, which ``limits`` gives
through a second call (``get_window_stats``): the "+stats" column measures that pair, while
our single ``hit`` returns all of it in its ``Decision``. Time is this process's CPU time
(``time.process_time``): the loops are single-threaded and CPU-bound, so on a quiet machine
it equals wall time, and on a busy one other processes' load does not count against either
library. Bytes per key: tracemalloc growth while
10,000 fresh keys each take one hit (keys made beforehand, so only storage counts).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable

import limits
import limits.storage
import limits.strategies

from ratelimit import Limit, Limiter, MemoryBackend

RATE = "100/minute"
PAIRS = [
    # (our algorithm, the limits strategy users would pick for the same job)
    ("fixed_window", limits.strategies.FixedWindowRateLimiter),
    ("sliding_window", limits.strategies.SlidingWindowCounterRateLimiter),
    ("sliding_log", limits.strategies.MovingWindowRateLimiter),
    ("token_bucket", None),
    ("leaky_bucket", None),
]


def ours(algorithm: str) -> Callable[[str], bool]:
    limiter = Limiter(MemoryBackend())
    limit = Limit(RATE, algorithm=algorithm)
    hit = limiter.hit

    def decide(key: str) -> bool:
        return hit(key, limit).allowed

    return decide


def theirs(strategy: type[limits.strategies.RateLimiter]) -> Callable[[str], bool]:
    limiter = strategy(limits.storage.MemoryStorage())
    item = limits.parse(RATE)
    hit = limiter.hit

    def decide(key: str) -> bool:
        return hit(item, key)

    return decide


def theirs_with_stats(strategy: type[limits.strategies.RateLimiter]) -> Callable[[str], bool]:
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hits", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args()
    if args.quick:
        args.hits, args.rounds = 20_000, 1
    keys = [f"203.0.{i >> 8}.{i & 255}" for i in range(args.keys)]

    print(
        f"memory backend, {RATE}, {args.hits:,} hits over {args.keys:,} keys, "
        f"medians of {args.rounds} interleaved rounds; limits {limits.__version__}"
    )
    header = (
        f"{'algorithm':<16}{'ours hits/s':>14}{'limits hits/s':>15}{'ratio':>8}"
        f"{'+stats hits/s':>15}{'ratio':>8}{'ours B/key':>12}{'limits B/key':>14}"
    )
    print(header)
    print("-" * len(header))
    for algorithm, strategy in PAIRS:
        # Interleaved rounds, each ratio taken within its round (drift in the machine's load
        # hits both sides of a round alike); medians over the rounds.
        ours_runs: list[float] = []
        theirs_runs: list[float] = []
        stats_runs: list[float] = []
        for _ in range(args.rounds):
            ours_runs.append(hits_per_second(lambda a=algorithm: ours(a), keys, args.hits))
            if strategy is None:
                continue
            theirs_runs.append(hits_per_second(lambda s=strategy: theirs(s), keys, args.hits))
            stats_runs.append(
                hits_per_second(lambda s=strategy: theirs_with_stats(s), keys, args.hits)
            )
        ours_hits = statistics.median(ours_runs)
        if strategy is not None:
            theirs_hits = statistics.median(theirs_runs)
            stats_hits = statistics.median(stats_runs)
            ratio = statistics.median(o / t for o, t in zip(ours_runs, theirs_runs, strict=True))
            stats_ratio = statistics.median(
                o / t for o, t in zip(ours_runs, stats_runs, strict=True)
            )
        ours_bytes = bytes_per_key(lambda a=algorithm: ours(a))
        row = f"{algorithm:<16}{ours_hits:>14,.0f}"
        if strategy is None:
            print(f"{row}{'-':>15}{'-':>8}{'-':>15}{'-':>8}{ours_bytes:>12.0f}{'-':>14}")
            continue
        theirs_bytes = bytes_per_key(lambda s=strategy: theirs(s))
        print(
            f"{row}{theirs_hits:>15,.0f}{ratio:>7.2f}x"
            f"{stats_hits:>15,.0f}{stats_ratio:>7.2f}x"
            f"{ours_bytes:>12.0f}{theirs_bytes:>14.0f}"
        )
    print(
        "pairs: fixed_window~FixedWindow, sliding_window~SlidingWindowCounter, "
        "sliding_log~MovingWindow.\n'+stats': limits' hit then get_window_stats, the remaining "
        "and reset a middleware needs for its headers (ours come in the one Decision)."
    )


if __name__ == "__main__":
    main()

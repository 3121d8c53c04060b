"""The rejection cache: a client the shared backend has just rejected is answered locally.

Once a limit rejects a client, nothing but time admits it again: other processes can only
consume more, never less. So the engine remembers, per process, ``(limit, client key) →
until`` for every rejection a remote backend (Redis) returns, and answers that client's next
requests from memory until then, without a round trip. That is what makes a flood cheap: a
client hammering a limit costs the fleet's Redis about one call per second per process,
instead of one per request (Envoy's over-limit cache is the model; this one is exact, since
it only repeats what the backend said, with the times moved on).

Two bounds keep it honest:

* an entry lives at most ``max_seconds`` (1 s), even when the rejection lasts longer, so a
  ``ratelimit reset`` (CLI or API) — which clears Redis, not other processes' memory — takes
  effect everywhere within a second;
* at most ``max_entries`` entries (10,000); past that the cache is cleared (a flood of new
  clients then costs what it would without the cache, never more memory).

A request of a smaller cost than the rejected one is not answered from the cache (it may fit).

With shares (``share`` on a limit), a worker may hold units of a limit Redis has refused —
from a grant that landed after the refusal: a request that the held units cover is never
answered from the cache (``holds``); the entry is dropped and the request decided.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ratelimit.decision import Decision
from ratelimit.limits import Limit

__all__ = ["RejectionCache", "rejection_cache"]


class _Entry(NamedTuple):
    until: float
    at: float
    cost: int
    decision: Decision


class RejectionCache:
    """Rejections of a remote backend, repeated locally while they certainly still hold.

    Args:
        max_seconds: the longest an entry is trusted (bounds how long a reset takes to
            reach this process).
        max_entries: the most entries kept.
        clock: monotonic seconds (injectable for tests).
        holds: the units of a limit with ``share`` the backend holds for a client key
            (:meth:`ShareBook.holds <ratelimit.backends.shares.ShareBook.holds>`).
    """

    def __init__(
        self,
        max_seconds: float = 1.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        holds: Callable[[str, Limit], int] | None = None,
    ) -> None:
        self.max_seconds = max_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._holds = holds
        self._entries: dict[tuple[str, str], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def remember(self, key: str, decision: Decision, cost: int) -> None:
        """Record that ``decision`` (a rejection for ``key`` at ``cost``) was just made."""
        retry = decision.retry_after
        if decision.allowed or not retry > 0:
            return
        now = self._clock()
        entries = self._entries
        if len(entries) >= self.max_entries:
            entries.clear()
        lasts = self.max_seconds if math.isinf(retry) else min(retry, self.max_seconds)
        entries[(decision.policy.id, key)] = _Entry(now + lasts, now, cost, decision)

    def lookup(self, groups: Sequence[tuple[str, Sequence[Limit], int]]) -> Decision | None:
        """The still-valid rejection for any ``(key, limits, cost)`` of a request, with its
        times moved on to now; ``None`` when the backend must be asked."""
        entries = self._entries
        now = self._clock()
        for key, limits, cost in groups:
            for limit in limits:
                entry = entries.get((limit.id, key))
                if entry is None:
                    continue
                if entry.until <= now:
                    del entries[(limit.id, key)]
                    continue
                if cost < entry.cost:
                    continue
                holds = self._holds
                if holds is not None and limit.share is not None and holds(key, limit) >= cost:
                    del entries[(limit.id, key)]  # held units cover it: decide it
                    continue
                elapsed = now - entry.at
                decision = entry.decision
                return decision._replace(
                    retry_after=decision.retry_after - elapsed,
                    reset_after=max(0.0, decision.reset_after - elapsed),
                )
        return None

    def forget(self, key: str | None = None) -> None:
        """Drop the entries of ``key`` (every entry when ``None``): after a local reset."""
        if key is None:
            self._entries.clear()
            return
        for slot in [slot for slot in self._entries if slot[1] == key]:
            del self._entries[slot]


def rejection_cache(backend: Any) -> RejectionCache | None:
    """The engine's cache for ``backend``: none for the memory backend (it answers as fast
    itself); for a backend with shares, one that asks it what it holds."""
    from ratelimit.backends.memory import MemoryBackend

    if isinstance(backend, MemoryBackend):
        return None
    return RejectionCache(holds=getattr(getattr(backend, "shares", None), "holds", None))

"""``Limiter``: limits + a backend → decisions, for sync and asyncio code."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple

from ratelimit.backends import backend_from_url
from ratelimit.backends.base import Backend
from ratelimit.decision import Decision, combine
from ratelimit.limits import Limit, as_limits, check_cost, tiered_key

__all__ = ["Lease", "Limiter", "tiered_key"]


class Lease(NamedTuple):
    """A slot of a concurrency limit (:meth:`Limiter.acquire`): give it back with
    :meth:`Limiter.release` when the work is done (it expires by itself after the lease)."""

    decision: Decision
    key: str
    limit: Limit
    token: str

    def __bool__(self) -> bool:
        return self.decision.allowed


def _peeked(now: Decision, one: Decision) -> Decision:
    """A peek: whether a request of cost 1 would be admitted (``one``, a dry run) together
    with the state as it is (``now``, a dry run of cost 0: remaining and reset_after)."""
    return one._replace(remaining=now.remaining, reset_after=now.reset_after, delay=0.0)


class Limiter:
    """Checks requests against limits, stored in a backend.

    >>> limiter = Limiter(MemoryBackend())
    >>> login = Limit("5/minute", name="login")
    >>> limiter.hit("203.0.113.7", login).allowed
    True

    Several limits in one call are decided atomically: the request is admitted only if
    every limit admits it, and then every limit consumes its cost; if any rejects, none
    consumes. The returned :class:`Decision` is the most restrictive one.

    Args:
        backend: a backend object, or a URL for :func:`backend_from_url`.
    """

    def __init__(self, backend: Backend | str = "memory://") -> None:
        self.backend: Backend = backend_from_url(backend) if isinstance(backend, str) else backend
        self._decide = self.backend.decide
        direct = getattr(self.backend, "limiter_hit", None)
        if direct is not None and type(self).hit is Limiter.hit:
            # MemoryBackend.limiter_hit: this method's work in one Python frame, bound in its
            # place (``python benchmarks/memory.py``: a decision is a few Python calls long,
            # and this frame was a quarter of it).
            self.hit = direct  # type: ignore[method-assign]

    def hit(
        self, key: str, *limits: Limit | str, cost: int = 1, tier: str | None = None
    ) -> Decision:
        """Count a request of ``cost`` for ``key`` against ``limits``; return the decision.

        ``tier`` (say the client's plan) makes the counters of each tier separate: pass the
        tier's own limits with it (``limiter.hit(key, *plans[plan], tier=plan)``).
        """
        if tier is not None:
            key = tiered_key(key, tier)
        if cost != 1 or type(cost) is not int:
            check_cost(cost)
        if len(limits) == 1 and type(limits[0]) is Limit:  # the common case, kept short
            return self._decide(key, limits, cost)[0]  # type: ignore[arg-type]
        return combine(self._decide(key, as_limits(limits), cost, True))

    async def ahit(
        self, key: str, *limits: Limit | str, cost: int = 1, tier: str | None = None
    ) -> Decision:
        """:meth:`hit` for asyncio code."""
        if cost != 1 or type(cost) is not int:
            check_cost(cost)
        if tier is not None:
            key = tiered_key(key, tier)
        if len(limits) == 1 and type(limits[0]) is Limit:  # the common case, kept short
            return (await self.backend.adecide(key, limits, cost, True))[0]  # type: ignore[arg-type]
        return combine(await self.backend.adecide(key, as_limits(limits), cost, True))

    def acquire(self, key: str, limit: Limit) -> Lease:
        """Take a slot of the concurrency ``limit`` (``Limit(Rate(n, lease_seconds),
        "concurrency")``) for ``key``; the lease is falsy when every slot is taken."""
        token = uuid.uuid4().hex
        return Lease(self.backend.acquire(key, limit, token), key, limit, token)  # type: ignore[attr-defined]

    def release(self, lease: Lease) -> None:
        """Give back a slot taken with :meth:`acquire` (nothing for a refused lease)."""
        if lease:
            self.backend.release(lease.key, lease.limit, lease.token)  # type: ignore[attr-defined]

    async def aacquire(self, key: str, limit: Limit) -> Lease:
        """:meth:`acquire` for asyncio code."""
        token = uuid.uuid4().hex
        decision = await self.backend.aacquire(key, limit, token)  # type: ignore[attr-defined]
        return Lease(decision, key, limit, token)

    async def arelease(self, lease: Lease) -> None:
        """:meth:`release` for asyncio code."""
        if lease:
            await self.backend.arelease(lease.key, lease.limit, lease.token)  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def slot(self, key: str, limit: Limit) -> Iterator[Lease]:
        """``with limiter.slot(key, limit) as lease: if lease: ...`` — the slot is given back
        when the block ends, however it ends."""
        lease = self.acquire(key, limit)
        try:
            yield lease
        finally:
            self.release(lease)

    @contextlib.asynccontextmanager
    async def aslot(self, key: str, limit: Limit) -> AsyncIterator[Lease]:
        """:meth:`slot` for asyncio code (``async with``)."""
        lease = await self.aacquire(key, limit)
        try:
            yield lease
        finally:
            await self.arelease(lease)

    def peek(self, key: str, *limits: Limit | str) -> Decision:
        """The state of ``key`` without counting anything.

        ``allowed`` and ``retry_after`` tell whether a request of cost 1 would be admitted
        now; ``remaining`` is how many would be, ``reset_after`` when the key is fresh again
        (0 for a fresh key). Two dry runs on the backend: nothing is written.
        """
        checked = as_limits(limits)
        now = self.backend.decide(key, checked, 0, False)
        one = self.backend.decide(key, checked, 1, False)
        return combine([_peeked(a, b) for a, b in zip(now, one, strict=True)])

    async def apeek(self, key: str, *limits: Limit | str) -> Decision:
        """:meth:`peek` for asyncio code."""
        checked = as_limits(limits)
        now = await self.backend.adecide(key, checked, 0, False)
        one = await self.backend.adecide(key, checked, 1, False)
        return combine([_peeked(a, b) for a, b in zip(now, one, strict=True)])

    def reset(self, key: str, *limits: Limit | str) -> None:
        """Forget ``key``'s counters under ``limits``: it starts fresh."""
        self.backend.reset(key, as_limits(limits))

    async def areset(self, key: str, *limits: Limit | str) -> None:
        """:meth:`reset` for asyncio code."""
        await self.backend.areset(key, as_limits(limits))

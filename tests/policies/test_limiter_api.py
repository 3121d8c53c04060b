"""The policies in code: tiers and concurrency slots through the Limiter API."""

from __future__ import annotations

from typing import Any

from ratelimit import Limit, Limiter
from ratelimit.rate import Rate


def test_tier_argument_counts_tiers_apart(backend: Any) -> None:
    """``tier=`` keeps each tier's counters apart for the same client key."""
    limiter = Limiter(backend)
    free, pro = Limit("2/hour", name="api"), Limit("3/hour", name="api.pro")
    assert [limiter.hit("k", free).allowed for _ in range(3)] == [True, True, False]
    assert [limiter.hit("k", pro, tier="pro").allowed for _ in range(4)] == [True] * 3 + [False]
    assert limiter.hit("k", free, tier="free").allowed  # another tier: its own counter


def test_slots_are_given_back(backend: Any) -> None:
    """``slot`` gives the lease back when the block ends, also on an exception."""
    limiter = Limiter(backend)
    exports = Limit(Rate(1, 30), "concurrency", name="exports")
    with limiter.slot("k", exports) as lease:
        assert lease
        assert not limiter.acquire("k", exports)  # the one slot is taken
    try:
        with limiter.slot("k", exports) as lease:
            assert lease
            raise RuntimeError("work failed")
    except RuntimeError:
        pass
    held = limiter.acquire("k", exports)
    assert held
    limiter.release(held)
    assert limiter.acquire("k", exports)


async def test_async_slots(backend: Any) -> None:
    """``aslot`` does the same for asyncio code."""
    limiter = Limiter(backend)
    exports = Limit(Rate(1, 30), "concurrency", name="exports")
    async with limiter.aslot("k", exports) as lease:
        assert lease and not await limiter.aacquire("k", exports)
    async with limiter.aslot("k", exports) as again:
        assert again
    if hasattr(backend, "aclose"):
        await backend.aclose()

"""Concurrency leases in Redis: the script, its arguments and its reply, for ``RedisBackend``.

One sorted set per (client, limit) — member: the request's token, score: the lease's expiry
in ms — changed by ``lua/concurrency.lua``, which mirrors
:mod:`ratelimit.algorithms.concurrency` (a parity test holds them equal). The key shares the
client's hash tag with its rate counters, so one request's keys stay in one Cluster slot.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from ratelimit.decision import Decision
from ratelimit.limits import Limit

__all__ = ["LEASE_SCRIPT", "LEASE_SHA", "acquire_args", "decode_acquire", "release_args"]

LEASE_SCRIPT = (
    resources.files("ratelimit.backends").joinpath("lua", "concurrency.lua").read_text("utf-8")
)
LEASE_SHA = hashlib.sha1(LEASE_SCRIPT.encode()).hexdigest()


def acquire_args(now: bytes, token: str, limit: Limit) -> list[bytes]:
    """The script's ARGV to take a lease of ``limit`` under ``token``."""
    lease_ms = round(limit.rate.period * 1000)
    return [now, b"acquire", token.encode(), b"%d" % limit.rate.limit, b"%d" % lease_ms]


def release_args(now: bytes, token: str) -> list[bytes]:
    """The script's ARGV to give back ``token``'s lease."""
    return [now, b"release", token.encode()]


def decode_acquire(reply: Any, limit: Limit) -> Decision:
    """The :class:`Decision` of an acquire reply ``[allowed, remaining, reset ms, retry ms]``."""
    allowed, remaining, reset_ms, retry_ms = (int(x) for x in reply)
    return Decision(
        bool(allowed), limit.rate.limit, remaining, reset_ms / 1000, retry_ms / 1000, 0.0, limit
    )

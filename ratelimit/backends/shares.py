"""Shares: units of a limit taken from Redis ahead of time and admitted in process.

A :class:`~ratelimit.Limit` with ``share = N`` is decided by this module when the backend is
Redis (the memory backend ignores ``share``). A worker asks ``lua/share.lua`` for up to
``want`` units of each share limit of a request in one atomic call (all or nothing: if one
limit cannot give the request's cost, none gives anything, and the reply is that limit's
ordinary rejection). Redis counts every granted unit as consumed, so across all workers

    admitted ≤ granted ≤ what the algorithm admits,

and the SPEC §2 upper bounds hold for what is admitted. The worker then admits from what it
holds, with no round trip, until the units are spent or the share **ends**:

* windows (``fixed_window``, ``sliding_window``): at the end of the window the units were
  granted in. Admitting them later in that window only delays admissions within the window,
  so every count the algorithm checked is still an upper bound of what was admitted.
* buckets (``token_bucket``, ``leaky_bucket`` in police mode, computed as tokens): at the end
  of the current *hold epoch* of ``hold_ms(limit)`` (the time the bucket takes to refill half
  its capacity, at most 1 s, at least 1 ms; epochs are aligned on the clock). While units are
  held, the refill they hide would let a span admit more than ``capacity + ⌊Δ·r⌋``; so Redis
  counts the units granted ahead in the current epoch (``O``) and caps the bucket at
  ``capacity − O``. Then tokens + held ≤ capacity at all times and only refill adds to it, so
  no span admits more than ``capacity + ⌊Δ·r⌋``.

The unused rest of a share goes back to Redis at most once (on :meth:`ShareBook.returns`,
called by the backend's ``close``), and only into the window or epoch it came from and only
into the state it came from: the state carries a generation (Redis ``TIME`` in µs when it was
created) and a grant sequence number, so a flushed or failed-over Redis drops returns.

**Sizes.** A grant is ``cost + min(want − cost, ⌊(available − cost) / 8⌋)`` units: it shrinks
toward the cost as the limit's budget runs out (the last units are decided one by one, as
without shares). ``want`` is ``max(cost, target)``, and the worker's ``target`` starts at 1,
doubles up to ``N`` each time a share is spent before it ends, and halves when a share ends
unspent. After each decision a worker holds at most ``N − 1`` units per (client, limit), so
what the fleet holds unused — the under-admission — is at most ``workers × (N − 1)`` per
window (per epoch for the buckets) and client.

**Headers.** A decision made from a share reports ``remaining = left + seen``: the units the
worker still holds plus what Redis had left after the last grant (exact at the grant, stale
at most by the share's life, like any reply once in flight).

This module holds the arithmetic twice, like the algorithms: :func:`grant` and
:func:`give_back` here (pure, integer ms), and their mirror in ``lua/share.lua``, held to it
by a parity test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ratelimit.decision import INF, Decision
from ratelimit.limits import Limit

__all__ = [
    "CODES",
    "SHRINK",
    "Grant",
    "ShareBook",
    "give_back",
    "grant",
    "hold_ms",
]

#: A grant takes at most 1/SHRINK of what is left after the request's own cost.
SHRINK = 8
#: Algorithm codes of ``share.lua`` (leaky_bucket police is computed as a token bucket).
CODES = {"fixed_window": 1, "sliding_window": 2, "token_bucket": 4, "leaky_bucket": 4}
#: Most (client, limit) shares one worker keeps; past that the oldest is dropped (its units
#: are never spent: safe, counted as ``expired``).
MAX_SHARES = 100_000

#: A share-limit state: (generation, grant sequence, then per algorithm — fixed window:
#: window, count, 0, 0; sliding window: window, previous, current, 0; buckets: last ms,
#: scaled tokens, epoch, units granted ahead in that epoch).
State = tuple[int, int, int, int, int, int]


def hold_ms(limit: Limit) -> int:
    """How long a bucket's share lives at most (its epoch), ms; 0 for the windows."""
    if limit.algorithm not in ("token_bucket", "leaky_bucket"):
        return 0
    half = limit.capacity * limit.rate.period_ms // (2 * limit.rate.limit)
    return max(1, min(1000, half))


class Grant(NamedTuple):
    """What :func:`grant` decided (times in integer ms)."""

    #: The state to store (when admitted and consuming), else ``None``.
    state: State | None
    allowed: bool
    #: What the limit has left after the grant (the units granted are not in it).
    remaining: int
    reset: int
    #: ms until the cost fits; -1: never (the cost exceeds the capacity).
    retry: int
    #: Units granted (the cost included), 0 when rejected.
    granted: int
    #: When the share ends (absolute ms) and the window or epoch it belongs to.
    end: int
    tag: int
    #: When the state is fresh again (absolute ms): its TTL.
    expires: int


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def grant(
    code: int,
    limit: int,
    period: int,
    capacity: int,
    hold: int,
    state: State | None,
    now: int,
    cost: int,
    want: int,
    gen: int,
) -> Grant:
    """Grant ``cost`` plus up to ``want − cost`` units (see the module docstring).

    ``gen`` is the generation a fresh state gets. ``want ≤ cost`` takes no more than the cost,
    and then the decision equals the plain algorithm's (SPEC differential, ``share = 1``).
    """
    seq = state[1] + 1 if state is not None else 1
    gen = state[0] if state is not None else gen
    if code == 1:
        window = now // period
        count = state[3] if state is not None and state[2] == window else 0
        end = (window + 1) * period
        reset = end - now
        if cost <= limit and count + cost <= limit:
            extra = min(want - cost, (limit - count - cost) // SHRINK) if want > cost else 0
            count += cost + extra
            if count == 0:
                reset = 0
            new = (gen, seq, window, count, 0, 0)
            return Grant(new, True, limit - count, reset, 0, cost + extra, end, window, end)
        retry = -1 if cost > limit else reset
        return Grant(None, False, limit - count, reset if count else 0, retry, 0, end, window, end)
    if code == 2:
        window, elapsed = divmod(now, period)
        start = window * period
        prev = curr = 0
        if state is not None:
            if state[2] == window:
                prev, curr = state[3], state[4]
            elif state[2] == window - 1:
                prev = state[4]
        free = limit * period - prev * (period - elapsed) - curr * period
        end = start + period
        if cost * period <= free:
            extra = min(want - cost, (free - cost * period) // (SHRINK * period))
            extra = max(extra, 0)
            curr += cost + extra
            free -= (cost + extra) * period
            reset = start + 2 * period - now if curr else (end - now if prev else 0)
            expires = start + (2 if curr else 1) * period
            new = (gen, seq, window, prev, curr, 0)
            return Grant(new, True, free // period, reset, 0, cost + extra, end, window, expires)
        reset = start + 2 * period - now if curr else (end - now if prev else 0)
        if cost > limit:
            retry = -1
        elif curr + cost <= limit:
            retry = end - ((limit - curr - cost) * period) // prev - now
        else:
            retry = start + 2 * period - ((limit - cost) * period) // curr - now
        return Grant(None, False, max(0, free // period), reset, retry, 0, end, window, 0)
    # the buckets, as tokens scaled by the period (a leaky bucket's level is full − tokens)
    full = capacity * period
    ahead = 0
    if state is not None:
        last, tokens, epoch, ahead = state[2], state[3], state[4], state[5]
        if now < last:  # a clock that went back: no refill, no time travel
            now = last
        if epoch != now // hold:
            ahead = 0
        tokens = min(full - ahead * period, tokens + (now - last) * limit)
    else:
        tokens = full
    epoch = now // hold
    end = (epoch + 1) * hold
    need = cost * period
    if cost <= capacity and tokens >= need:
        extra = min(want - cost, (tokens - need) // (SHRINK * period)) if want > cost else 0
        tokens -= need + extra * period
        ahead += extra
        reset = _cdiv(full - tokens, limit)
        expires = now + reset
        if ahead:
            reset = max(reset, end - now)
            expires = max(expires, end)
        new = (gen, seq, now, tokens, epoch, ahead)
        return Grant(new, True, tokens // period, reset, 0, cost + extra, end, epoch, expires)
    reset = _cdiv(full - tokens, limit)
    if ahead:
        reset = max(reset, end - now)
    if cost > capacity:
        retry = -1
    elif need <= full - ahead * period:
        retry = _cdiv(need - tokens, limit)
    else:  # the cap lifts when the epoch ends
        wait = end - now
        at_end = min(full - ahead * period, tokens + wait * limit)
        retry = wait + _cdiv(max(0, need - at_end), limit)
    return Grant(None, False, tokens // period, reset, retry, 0, end, epoch, 0)


def give_back(
    code: int,
    limit: int,
    period: int,
    capacity: int,
    hold: int,
    state: State | None,
    now: int,
    units: int,
    tag: int,
    gen: int,
    seq: int,
) -> tuple[State, int] | None:
    """The state once ``units`` unused units of a share (granted at ``tag`` from generation
    ``gen``, grant ``seq``) are given back, and when it is fresh again; ``None`` when they
    cannot go back (another window or epoch, a flushed or failed-over state)."""
    if state is None or state[0] != gen or state[1] < seq:
        return None
    if code in (1, 2):
        window = now // period
        if state[2] != window or tag != window:
            return None
        if code == 1:
            count = state[3] - min(units, state[3])
            return (state[0], state[1], window, count, 0, 0), (window + 1) * period
        curr = state[4] - min(units, state[4])
        expires = (window + (2 if curr else 1)) * period
        return (state[0], state[1], window, state[3], curr, 0), expires
    full = capacity * period
    last, tokens, epoch, ahead = state[2], state[3], state[4], state[5]
    now = max(now, last)
    if epoch != now // hold or tag != epoch:
        return None
    back = min(units, ahead)
    tokens = min(full - ahead * period, tokens + (now - last) * limit) + back * period
    ahead -= back
    expires = now + _cdiv(full - tokens, limit)
    if ahead:
        expires = max(expires, (epoch + 1) * hold)
    return (state[0], state[1], now, tokens, epoch, ahead), expires


# -- the worker's side ---------------------------------------------------------------------


@dataclass(slots=True)
class _Share:
    """What one worker holds of one (client, limit)."""

    left: int = 0
    end: float = 0.0  # local clock, seconds: the share is spent no later than this
    tag: int = 0
    gen: int = 0
    seq: int = 0
    seen: int = 0  # Redis's remaining after the last grant
    reset_at: float = 0.0
    target: int = 1  # units to ask for next
    limit: Limit | None = None
    pending: int = 0  # units beyond their cost asked by calls still in flight


#: A call the backend runs for :meth:`ShareBook.flow`: ``("share", (keys, args))`` runs
#: ``share.lua``; ``("plain", (items, consume))`` decides the limits without a share.
Call = tuple[str, tuple[Any, ...]]
Item = tuple[str, Limit, int]


def _local(limit: Limit, share: _Share, cost: int, reset: float) -> Decision:
    remaining = min(limit.capacity, share.left - cost + share.seen)
    return Decision(True, limit.capacity, remaining, reset, 0.0, 0.0, limit)


class ShareBook:
    """The shares one worker (one backend object) holds; thread-safe.

    Args:
        key_of: the Redis key of a (client key, share limit).
        on_event: called with ``("taken" | "returned" | "expired", units)`` for each share
            taken from Redis, given back, or ended (or dropped) with units unspent.
    """

    def __init__(
        self,
        key_of: Callable[[str, Limit], bytes],
        on_event: Callable[[str, int], None] | None = None,
        max_shares: int = MAX_SHARES,
        pad: bytes = b"0",
    ) -> None:
        #: Extra ms on every TTL (the backend's ``ttl_pad_ms``).
        self.pad = pad
        self._key_of = key_of
        self._shares: dict[bytes, _Share] = {}
        self._lock = threading.Lock()
        self._max = max_shares
        #: Shares taken, returned and expired so far (events, not units).
        self.counts = {"taken": 0, "returned": 0, "expired": 0}
        self.on_event = on_event

    def _event(self, event: str, units: int) -> None:
        self.counts[event] += 1
        if self.on_event is not None:
            self.on_event(event, units)

    def held(self) -> int:
        """Units held unspent right now, over every share (ended ones included until seen)."""
        with self._lock:
            return sum(s.left for s in self._shares.values())

    def _live(self, rkey: bytes, now: float) -> _Share | None:
        share = self._shares.get(rkey)
        if share is not None and share.left and now >= share.end:
            self._event("expired", share.left)
            share.left = 0
            share.target = max(1, share.target // 2)
        return share

    def flow(
        self, items: Sequence[Item], consume: bool, now: float, now_ms: int | None
    ) -> Generator[Call, Any, list[Decision]]:
        """Decide ``items`` — from held units where they cover the cost, else from one
        ``share.lua`` call, then the limits without a share (``plain``) — all admitted or
        none consumed. ``now`` is the local clock in seconds, ``now_ms`` the script's (or
        ``None`` for Redis ``TIME``)."""
        out: list[Decision | None] = [None] * len(items)
        asks: list[tuple[int, bytes, int]] = []  # (item, redis key, want)
        with self._lock:
            for i, (key, limit, cost) in enumerate(items):
                if limit.share is None:
                    continue
                rkey = self._key_of(key, limit)
                share = self._live(rkey, now)
                if share is not None and share.left and share.limit != limit:
                    self._event("expired", share.left)  # a reload changed the limit
                    share.left = 0
                if share is not None and share.left >= cost and (share.left or not consume):
                    out[i] = _local(
                        limit, share, cost if consume else 0, max(0.0, share.reset_at - now)
                    )
                    continue
                want = 0
                if consume:
                    if share is None:
                        if len(self._shares) >= self._max:
                            self._drop_oldest()
                        share = self._shares[rkey] = _Share(limit=limit)
                    elif now < share.end:  # spent before its end: this worker wants more
                        share.target = min(limit.share, share.target * 2)
                    # what is held and asked in flight stays below the share
                    room = limit.share - 1 - share.left - share.pending
                    extra = max(0, min(share.target - cost, room))
                    share.pending += extra
                    want = cost + extra
                asks.append((i, rkey, want))
        granted: list[int] = []
        if asks:
            keys = [rkey for _, rkey, _ in asks]
            args = [b"" if now_ms is None else b"%d" % now_ms, b"g" if consume else b"p", self.pad]
            for i, _, want in asks:
                _, limit, cost = items[i]
                args += [*_params(limit), b"%d" % cost, b"%d" % want]
            try:
                reply = yield ("share", (keys, args))
            finally:
                with self._lock:
                    for i, rkey, want in asks:
                        pending = self._shares.get(rkey)
                        if pending is not None and consume:
                            pending.pending = max(0, pending.pending - (want - items[i][2]))
            rows = [_parse(row) for row in reply]
            if all(row[0] for row in rows):
                with self._lock:
                    for (i, rkey, _), row in zip(asks, rows, strict=True):
                        _, limit, cost = items[i]
                        _, remaining, reset, _, got, life, tag, gen, seq = row
                        if not consume:
                            out[i] = Decision(
                                True, limit.capacity, remaining, reset / 1000, 0.0, 0.0, limit
                            )
                            continue
                        share = self._shares.get(rkey)
                        if share is None:
                            if len(self._shares) >= self._max:
                                self._drop_oldest()
                            share = self._shares[rkey] = _Share()
                        elif share.left and (share.tag != tag or share.gen != gen):
                            self._event("expired", share.left)  # another window or state
                            share.left = 0
                        if share.left == 0:
                            # Redis TIME is whole ms: end a ms early, never late
                            share.end = now + (life - (1 if now_ms is None else 0)) / 1000
                        share.left += got
                        share.limit = limit
                        share.tag, share.gen, share.seq = tag, gen, seq
                        share.seen = remaining
                        share.reset_at = now + reset / 1000
                        self._event("taken", got)
                        granted.append(i)
                        out[i] = _local(limit, share, cost, reset / 1000)
            else:
                for (i, _, _), row in zip(asks, rows, strict=True):
                    _, limit, _ = items[i]
                    allowed, remaining, reset, retry = row[:4]
                    out[i] = Decision(
                        allowed,
                        limit.capacity,
                        remaining,
                        reset / 1000,
                        0.0 if allowed else (INF if retry < 0 else retry / 1000),
                        0.0,
                        limit,
                    )
        plain = [i for i, (_, limit, _) in enumerate(items) if limit.share is None]
        if plain:
            admitted = all(d is None or d.allowed for d in out)
            got_plain: list[Decision] = yield (
                "plain",
                ([items[i] for i in plain], consume and admitted),
            )
            for i, decision in zip(plain, got_plain, strict=True):
                out[i] = decision
        decisions = [d for d in out if d is not None]
        if consume:
            admitted = all(decisions)
            with self._lock:
                for i, (key, limit, cost) in enumerate(items):
                    if limit.share is None:
                        continue
                    if admitted or i in granted:
                        # spent; or granted for this request, which another limit refused:
                        # thrown away, so that no worker holds more than its share
                        share = self._shares.get(self._key_of(key, limit))
                        if share is not None and share.left >= cost:
                            share.left -= cost
        return decisions

    def _drop_oldest(self) -> None:
        rkey = next(iter(self._shares))
        share = self._shares.pop(rkey)
        if share.left:
            self._event("expired", share.left)

    def returns(self, now: float, now_ms: int | None) -> list[tuple[bytes, list[bytes], int]]:
        """Take every live share's unused units out of the book (each goes back at most
        once): ``(redis key, share.lua arguments, units)`` in its ``r`` mode. Shares that
        have ended are counted as expired. The caller sends them and reports each outcome
        with :meth:`returned`."""
        out: list[tuple[bytes, list[bytes], int]] = []
        head = [b"" if now_ms is None else b"%d" % now_ms, b"r", self.pad]
        with self._lock:
            for rkey, share in self._shares.items():
                if not share.left or share.limit is None:
                    continue
                if now >= share.end:
                    self._event("expired", share.left)
                else:
                    tail = (share.tag, share.gen, share.seq, share.left)
                    args = [*head, *_params(share.limit), *(b"%d" % v for v in tail)]
                    out.append((rkey, args, share.left))
                share.left = 0
            self._shares.clear()
        return out

    def returned(self, units: int, accepted: bool) -> None:
        """Count a return: given back, or refused by Redis (then it expired)."""
        with self._lock:
            self._event("returned" if accepted else "expired", units)


def _params(limit: Limit) -> list[bytes]:
    """The five values ``share.lua`` reads of a limit: code, limit, period, capacity, hold."""
    rate = limit.rate
    code, hold = CODES[limit.algorithm], hold_ms(limit)
    return [b"%d" % v for v in (code, rate.limit, rate.period_ms, limit.capacity, hold)]


def _parse(row: Any) -> tuple[bool, int, int, int, int, int, int, int, int]:
    """One reply row of ``share.lua``: ``allowed remaining reset retry granted life tag gen
    seq`` (text)."""
    text = row.decode() if isinstance(row, bytes) else str(row)
    a, remaining, reset, retry, got, life, tag, gen, seq = (int(v) for v in text.split())
    return a == 1, remaining, reset, retry, got, life, tag, gen, seq

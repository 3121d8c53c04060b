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
without shares). ``want`` is the cost plus the larger of the worker's ``target`` and its own
demand (the requests waiting for that share, times the cost), never more than the share
leaves room for. ``target`` starts at 1, doubles up to ``N`` each time a share is spent
before it ends, and halves when a share ends unspent. What a worker holds, reserves for
requests being decided and asks in flight stays below ``N``, so it holds at most ``N − 1``
unused units per (client, limit): what the fleet holds unused — the under-admission — is at
most ``workers × (N − 1)`` per window (per epoch for the buckets) and client.

**Coalescing.** When a share runs out, every concurrent request misses at once. Only the
first asks Redis; the others of the same context (its event loop, or the threads) wait for
that grant — an asyncio future or a ``threading.Event``, at most the backend's
``overload_after`` — and take from it. Those it does not cover ask next, together, for as
many units as are then waiting. A failed grant fails its waiters with the same
:class:`~ratelimit.BackendError`; a one-limit request refused by Redis refuses the waiters of
no smaller cost with the same rejection. Units are reserved when a request counts on them,
so no unit is admitted twice, and none beyond what Redis granted.

**Headers.** ``remaining`` never states more than the fleet has left. A decision made from
held units reports the units this worker still holds after it (a strict lower bound: those
units are certain); the decision that takes a share reports Redis's remaining at the grant
plus what the worker then holds (other workers' held units are left out, so this is a lower
bound too). So ``remaining`` is low between grants — at most ``N − 1`` — and a client may see
it rise again at the next grant; it is never an overstatement.

This module holds the arithmetic twice, like the algorithms: :func:`grant` and
:func:`give_back` here (pure, integer ms), and their mirror in ``lua/share.lua``, held to it
by a parity test.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ratelimit.decision import INF, Decision
from ratelimit.errors import BackendError
from ratelimit.limits import Limit

__all__ = [
    "CODES",
    "SHRINK",
    "Grant",
    "ShareBook",
    "adecide",
    "adrive",
    "drive",
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


class _Flight:
    """One ``share.lua`` grant in flight. Requests of the same context (the same event loop,
    or threads when it was asked from a thread) that miss the same share meanwhile wait for
    it and take from what it brings, instead of asking Redis each for themselves.

    On a loop each waiter awaits a future of its own (a waiter cancelled cancels nothing
    else), and one timer per grant wakes them all if the bound passes first."""

    __slots__ = ("done", "error", "event", "handed", "loop", "refusal", "timer", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        #: Whether the grant has ended (its units, if any, are in the book).
        self.done = False
        self.event: threading.Event | None = threading.Event() if loop is None else None
        self.waiters: list[asyncio.Future[None]] = []
        #: One-limit requests waiting to be handed their units: (cost, share, future).
        self.handed: list[tuple[int, _Share, asyncio.Future[Decision | None]]] = []
        self.timer: asyncio.TimerHandle | None = None
        #: The backend failure that ended the grant (handed to every waiter as its own).
        self.error: BackendError | None = None
        #: ``(cost, rejection, local time)`` when Redis refused a one-limit request.
        self.refusal: tuple[int, Decision, float] | None = None

    def wait(self, bound: float) -> asyncio.Future[None]:
        """A future of the asking loop, done when the grant ends or ``bound`` seconds pass."""
        loop = self.loop
        assert loop is not None
        future: asyncio.Future[None] = loop.create_future()
        self.waiters.append(future)
        if self.timer is None:
            self.timer = loop.call_later(bound, self._timeout)
        return future

    def hand(self, cost: int, share: _Share, bound: float) -> asyncio.Future[Decision | None]:
        """A future that the grant resolves with this one-limit request's decision (taken
        from the units it brings, or its refusal), or ``None``: decide it again."""
        loop = self.loop
        assert loop is not None
        future: asyncio.Future[Decision | None] = loop.create_future()
        self.handed.append((cost, share, future))
        if self.timer is None:
            self.timer = loop.call_later(bound, self._timeout)
        return future

    def serve(self, limit: Limit, now: float) -> None:
        """Hand the waiting one-limit requests their units, in their order, while the share
        covers them (under the book's lock, once the grant's units are in it); a refusal
        refuses those of no smaller cost."""
        handed, self.handed = self.handed, []
        refusal = self.refusal
        rest = []
        for cost, share, future in handed:
            if future.done():
                continue
            if share.limit == limit and share.left >= cost and now < share.end:
                share.left -= cost
                future.set_result(_held(limit, share.left, max(0.0, share.reset_at - now)))
            elif refusal is not None and cost >= refusal[0] and share.left < cost:
                future.set_result(_moved(refusal, now))
            else:
                rest.append((cost, share, future))
        self.handed = rest

    def _timeout(self) -> None:
        self.timer = None
        self._wake()

    def _wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
        handed, self.handed = self.handed, []
        error = self.error
        for _, _, handoff in handed:
            if handoff.done():
                continue
            if error is not None:
                handoff.set_exception(_copy(error))
            else:
                handoff.set_result(None)

    def finish(self) -> None:
        """Wake the waiters (once, from the asking request's own thread or loop)."""
        self.done = True
        if self.event is not None:
            self.event.set()
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._wake()


@dataclass(slots=True)
class _Share:
    """What one worker holds of one (client, limit)."""

    left: int = 0
    end: float = 0.0  # local clock, seconds: the share is spent no later than this
    tag: int = 0
    gen: int = 0
    seq: int = 0
    reset_at: float = 0.0
    target: int = 1  # units to ask for next
    limit: Limit | None = None
    pending: int = 0  # units beyond their cost asked by calls still in flight
    reserved: int = 0  # units taken out of ``left`` by requests not yet decided
    waiting: int = 0  # requests waiting for ``flight``: the worker's own demand
    flight: _Flight | None = None  # the latest grant in flight
    rkey: bytes = b""  # its Redis key


#: A call the backend runs for :meth:`ShareBook.flow`: ``("share", (keys, args))`` runs
#: ``share.lua``; ``("plain", (items, consume))`` decides the limits without a share;
#: ``("wait", flight)`` waits for a grant in flight and answers with the clock again,
#: ``(now, now_ms)`` (see :func:`drive` and :func:`adrive`).
Call = tuple[str, Any]
Item = tuple[str, Limit, int]
#: A share's slot in the book: (client key, limit id).
_Slot = tuple[str, str]
#: Units taken out of a share for one item: (slot, share, units, tag, gen, from the grant of
#: this very request).
_Taken = tuple[_Slot, _Share, int, int, int, bool]


def _moved(refusal: tuple[int, Decision, float], now: float) -> Decision:
    """A grant's refusal, with its times moved on to ``now``."""
    _, decision, at = refusal
    elapsed = max(0.0, now - at)
    return decision._replace(
        retry_after=max(0.0, decision.retry_after - elapsed),
        reset_after=max(0.0, decision.reset_after - elapsed),
    )


def _held(limit: Limit, left: int, reset: float) -> Decision:
    """An admission decided from held units. ``remaining`` is what this worker still holds:
    a strict lower bound of what the fleet has left (see the module docstring)."""
    return Decision(True, limit.capacity, min(limit.capacity, left), reset, 0.0, 0.0, limit)


def _refused(limit: Limit, row: tuple[bool, int, int, int, int, int, int, int, int]) -> Decision:
    """The decision of one ``share.lua`` row that did not grant."""
    allowed, remaining, reset, retry = row[:4]
    after = 0.0 if allowed else (INF if retry < 0 else retry / 1000)
    return Decision(allowed, limit.capacity, remaining, reset / 1000, after, 0.0, limit)


class ShareBook:
    """The shares one worker (one backend object) holds; thread-safe and asyncio-safe.

    Args:
        key_of: the Redis key of a (client key, share limit).
        on_event: called with ``("taken" | "returned" | "expired", units)`` for each share
            taken from Redis, given back, or ended (or dropped) with units unspent
            (``ratelimit_shares_total{event}``).
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
        self._shares: dict[_Slot, _Share] = {}
        self._lock = threading.Lock()
        self._max = max_shares
        #: Shares taken, returned and expired so far (events, not units).
        self.counts = {"taken": 0, "returned": 0, "expired": 0}
        #: Grants asked of Redis, and requests that waited for one instead of asking.
        self.asked = 0
        self.coalesced = 0
        self.on_event = on_event

    def _event(self, event: str, units: int) -> None:
        self.counts[event] += 1
        if self.on_event is not None:
            self.on_event(event, units)

    def held(self) -> int:
        """Units held unspent right now, over every share (ended ones included until seen)."""
        with self._lock:
            return sum(s.left for s in self._shares.values())

    def holds(self, key: str, limit: Limit) -> int:
        """Units of ``limit`` this worker holds for ``key`` (0 for a limit without share).
        A share past its end still counts here until a decision sees it end."""
        if limit.share is None:
            return 0
        share = self._shares.get((key, limit.id))
        if share is None or share.limit != limit:
            return 0
        return share.left

    def forget(self, key: str, limits: Sequence[Limit]) -> list[bytes]:
        """Drop what this worker holds of ``key`` under ``limits`` (a reset: the units are
        not spent, never returned) and give the Redis keys of their shares to delete."""
        out = []
        with self._lock:
            for limit in limits:
                if limit.share is None:
                    continue
                share = self._shares.pop((key, limit.id), None)
                if share is not None and share.left:
                    self._event("expired", share.left)
                out.append(self._key_of(key, limit))
        return out

    def take(
        self,
        items: Sequence[Item],
        consume: bool,
        now: float,
        loop: asyncio.AbstractEventLoop | None = None,
        bound: float = 0.0,
    ) -> list[Decision] | tuple[asyncio.Future[Decision | None], _Flight] | None:
        """The fast path: when every item is a limit with share whose live share covers its
        cost, spend them at once and return the decisions. A one-limit request on ``loop``
        whose share is short while a grant for it is in flight from that loop gets a future
        instead (see :meth:`_Flight.hand`). Else ``None``, having taken nothing (then
        :meth:`flow` decides)."""
        if not consume:
            return None
        shares = self._shares
        if len(items) == 1:  # the common case, spelled out
            key, limit, cost = items[0]
            with self._lock:
                share = shares.get((key, limit.id))
                if (
                    share is not None
                    and share.left >= cost
                    and now < share.end
                    and (share.limit is limit or share.limit == limit)
                ):
                    share.left -= cost
                    return [_held(limit, share.left, max(0.0, share.reset_at - now))]
        out: list[Decision] = []
        spent: list[tuple[_Share, int]] = []
        with self._lock:
            for key, limit, cost in items:
                share = shares.get((key, limit.id))
                if (
                    share is None
                    or share.left < cost
                    or now >= share.end
                    or (share.limit is not limit and share.limit != limit)
                ):
                    for back, units in spent:
                        back.left += units
                    if loop is not None and share is not None and len(items) == 1:
                        ahead = share.flight
                        if ahead is not None and ahead.loop is loop and share.limit == limit:
                            self.coalesced += 1
                            return ahead.hand(cost, share, bound), ahead
                    return None
                share.left -= cost
                spent.append((share, cost))
                out.append(_held(limit, share.left, max(0.0, share.reset_at - now)))
        return out

    def _share(self, slot: _Slot, key: str, limit: Limit, now: float) -> _Share:
        """The live share of ``slot`` (created empty); a share past its end, or of a limit a
        reload changed, is emptied first (its units expire)."""
        share = self._shares.get(slot)
        if share is None:
            if len(self._shares) >= self._max:
                self._drop_oldest()
            share = self._shares[slot] = _Share(limit=limit, rkey=self._key_of(key, limit))
            return share
        changed = share.limit is not limit and share.limit != limit
        if share.left and (now >= share.end or changed):
            self._event("expired", share.left)
            share.left = 0
            share.target = max(1, share.target // 2)
        if changed:  # a reload changed the limit under the same name: its own Redis key
            share.limit, share.rkey = limit, self._key_of(key, limit)
        return share

    def flow(
        self,
        items: Sequence[Item],
        consume: bool,
        now: float,
        now_ms: int | None,
        loop: asyncio.AbstractEventLoop | None = None,
        skip: _Flight | None = None,
    ) -> Generator[Call, Any, list[Decision]]:
        """Decide ``items`` — from held units where they cover the cost, else from one
        ``share.lua`` call, then the limits without a share (``plain``) — all admitted or
        none consumed. ``now`` is the local clock in seconds, ``now_ms`` the script's (or
        ``None`` for Redis ``TIME``); ``loop`` the running event loop (``None`` on a
        thread); ``skip`` a grant already waited for in vain (not waited for again).

        Units are taken out of a share (reserved) when they are counted on, so no two
        concurrent requests can count on the same unit; a request that is not admitted
        after all puts them back (or drops them, if the share ended meanwhile).

        A request that misses a share while a grant for it is in flight from the same
        context waits for that grant (at most the driver's bound) and takes from it: one
        call to Redis serves every request that missed together, and the next grant asks
        for as many units as requests are then waiting (up to the share)."""
        if not consume:
            return (yield from self._probe(items, now, now_ms))
        out: list[Decision | None] = [None] * len(items)
        taken: dict[int, _Taken] = {}
        while True:
            wait: tuple[_Flight, _Share] | None = None
            asks: list[tuple[int, _Slot, _Share, int]] = []  # item, slot, share, extra
            flight: _Flight | None = None
            with self._lock:
                for i, (key, limit, cost) in enumerate(items):
                    if limit.share is None or i in taken:
                        continue
                    slot = (key, limit.id)
                    share = self._share(slot, key, limit, now)
                    if share.left >= cost:
                        share.left -= cost
                        share.reserved += cost
                        taken[i] = (slot, share, cost, share.tag, share.gen, False)
                        out[i] = _held(limit, share.left, max(0.0, share.reset_at - now))
                        continue
                    ahead = share.flight
                    mine = ahead is not None and ahead.loop is loop and ahead is not skip
                    if wait is None and ahead is not None and mine:
                        wait = (ahead, share)
                    asks.append((i, slot, share, 0))
                if wait is not None:
                    self._put_back(taken, now)  # hold nothing while waiting
                    wait[1].waiting += 1
                    self.coalesced += 1
                elif asks:
                    flight = _Flight(loop)
                    for n, (i, slot, share, _) in enumerate(asks):
                        _, limit, cost = items[i]
                        size = limit.share or 1
                        if now < share.end:  # spent before its end: this worker wants more
                            share.target = min(size, share.target * 2)
                        # what is held, reserved and asked in flight stays below the share
                        room = size - 1 - share.left - share.reserved - share.pending
                        demand = max(share.target - cost, share.waiting * cost)
                        extra = max(0, min(demand, room))
                        share.pending += extra
                        share.flight = flight
                        asks[n] = (i, slot, share, extra)
                    self.asked += 1
            if wait is None:
                break
            ahead, share = wait
            try:
                now, now_ms = yield ("wait", ahead)
            finally:
                with self._lock:
                    share.waiting -= 1
            if not ahead.done:
                skip = ahead
                continue
            refusal = ahead.refusal
            if refusal is not None and len(items) == 1 and items[0][2] >= refusal[0]:
                with self._lock:
                    still = share.left < items[0][2]
                if still:  # the same limit, the same client, no less cost: refused too
                    return [_moved(refusal, now)]
        admitted = True
        if asks and flight is not None:
            admitted = yield from self._ask(items, asks, flight, taken, out, now, now_ms)
        plain = [i for i, (_, limit, _) in enumerate(items) if limit.share is None]
        if plain:
            try:
                got: list[Decision] = yield (
                    "plain",
                    ([items[i] for i in plain], admitted),
                )
            except BaseException:
                with self._lock:
                    self._put_back(taken, now)
                raise
            for i, decision in zip(plain, got, strict=True):
                out[i] = decision
            admitted = admitted and all(d.allowed for d in got)
        with self._lock:
            if admitted:
                for _, share, units, *_ in taken.values():
                    share.reserved -= units  # spent
            else:
                self._put_back(taken, now)
        return [d for d in out if d is not None]

    def _ask(
        self,
        items: Sequence[Item],
        asks: list[tuple[int, _Slot, _Share, int]],
        flight: _Flight,
        taken: dict[int, _Taken],
        out: list[Decision | None],
        now: float,
        now_ms: int | None,
    ) -> Generator[Call, Any, bool]:
        """One ``share.lua`` grant for the items ``asks`` names; whether all were granted.
        Ends ``flight`` (its waiters wake) once the units are in the book."""
        keys = [share.rkey for _, _, share, _ in asks]
        args = [b"" if now_ms is None else b"%d" % now_ms, b"g", self.pad]
        for i, _, _, extra in asks:
            _, limit, cost = items[i]
            args += [*_params(limit), b"%d" % cost, b"%d" % (cost + extra)]
        try:
            reply = yield ("share", (keys, args))
            rows = [_parse(row) for row in reply]
        except BaseException as exc:
            with self._lock:
                self._landed(asks, flight)
                self._put_back(taken, now)
            if isinstance(exc, BackendError):
                flight.error = exc
            flight.finish()
            raise
        granted = all(row[0] for row in rows)
        with self._lock:
            self._landed(asks, flight)
            for (i, slot, share, _), row in zip(asks, rows, strict=True):
                _, limit, cost = items[i]
                if not granted:
                    out[i] = _refused(limit, row)
                    continue
                _, remaining, reset, _, got, life, tag, gen, seq = row
                if share.left and (share.tag != tag or share.gen != gen):
                    self._event("expired", share.left)  # another window or state
                    share.left = 0
                if share.left == 0:
                    # Redis TIME is whole ms: end a ms early, never late
                    share.end = now + (life - (1 if now_ms is None else 0)) / 1000
                share.left += got - cost
                share.reserved += cost
                share.limit = limit
                share.tag, share.gen, share.seq = tag, gen, seq
                share.reset_at = now + reset / 1000
                self._event("taken", got)
                taken[i] = (slot, share, cost, tag, gen, True)
                # Redis's remaining at the grant plus what this worker holds: a lower bound
                # of what the fleet has left (others' held units are not in it)
                out[i] = _held(limit, remaining + share.left, reset / 1000)
            if not granted and len(items) == 1:
                decision = out[asks[0][0]]
                if decision is not None and not decision.allowed:
                    flight.refusal = (items[0][2], decision, now)
            if not granted:
                self._put_back(taken, now)
            if flight.handed and (granted or flight.refusal is not None):
                flight.serve(items[asks[0][0]][1], now)
        flight.finish()
        return granted

    def _landed(self, asks: list[tuple[int, _Slot, _Share, int]], flight: _Flight) -> None:
        """A grant came back (or failed): its asks are no longer in flight."""
        for _, _, share, extra in asks:
            share.pending = max(0, share.pending - extra)
            if share.flight is flight:
                share.flight = None

    def _put_back(self, taken: dict[int, _Taken], now: float) -> None:
        """Units reserved for a request not admitted go back to their share if it is the
        same and still live; units of its own grant (its cost) are dropped, so that no
        worker holds more than its share (both: under the lock)."""
        for slot, share, units, tag, gen, fresh in taken.values():
            share.reserved -= units
            same = self._shares.get(slot) is share and (share.tag, share.gen) == (tag, gen)
            if not fresh and same and now < share.end:
                share.left += units
            else:
                self._event("expired", units)
        taken.clear()

    def _probe(
        self, items: Sequence[Item], now: float, now_ms: int | None
    ) -> Generator[Call, Any, list[Decision]]:
        """Decide ``items`` without consuming: from held units where they cover the cost,
        else from ``share.lua`` in probe mode; then the plain limits."""
        out: list[Decision | None] = [None] * len(items)
        asks: list[int] = []
        with self._lock:
            for i, (key, limit, cost) in enumerate(items):
                if limit.share is None:
                    continue
                share = self._shares.get((key, limit.id))
                live = share is not None and share.limit == limit and now < share.end
                if live and share is not None and share.left and share.left >= cost:
                    out[i] = _held(limit, share.left, max(0.0, share.reset_at - now))
                    continue
                asks.append(i)
        if asks:
            keys = [self._key_of(items[i][0], items[i][1]) for i in asks]
            args = [b"" if now_ms is None else b"%d" % now_ms, b"p", self.pad]
            for i in asks:
                _, limit, cost = items[i]
                args += [*_params(limit), b"%d" % cost, b"%d" % cost]
            reply = yield ("share", (keys, args))
            for i, row in zip(asks, reply, strict=True):
                out[i] = _refused(items[i][1], _parse(row))
        plain = [i for i, (_, limit, _) in enumerate(items) if limit.share is None]
        if plain:
            got: list[Decision] = yield ("plain", ([items[i] for i in plain], False))
            for i, decision in zip(plain, got, strict=True):
                out[i] = decision
        return [d for d in out if d is not None]

    def _drop_oldest(self) -> None:
        slot = next(iter(self._shares))
        share = self._shares.pop(slot)
        if share.left:
            self._event("expired", share.left)

    def returns(self, now: float, now_ms: int | None) -> list[tuple[bytes, list[bytes], int]]:
        """Take every live share's unused units out of the book (each goes back at most
        once): ``(redis key, share.lua arguments, units)`` in its ``r`` mode. Shares that
        have ended are counted as expired. Units reserved by requests being decided stay
        with them. The caller sends them and reports each outcome with :meth:`returned`."""
        out: list[tuple[bytes, list[bytes], int]] = []
        head = [b"" if now_ms is None else b"%d" % now_ms, b"r", self.pad]
        with self._lock:
            for share in self._shares.values():
                if not share.left or share.limit is None:
                    continue
                if now >= share.end:
                    self._event("expired", share.left)
                else:
                    tail = (share.tag, share.gen, share.seq, share.left)
                    args = [*head, *_params(share.limit), *(b"%d" % v for v in tail)]
                    out.append((share.rkey, args, share.left))
                share.left = 0
            self._shares.clear()
        return out

    def returned(self, units: int, accepted: bool) -> None:
        """Count a return: given back, or refused by Redis (then it expired)."""
        with self._lock:
            self._event("returned" if accepted else "expired", units)


def _copy(error: BackendError) -> BackendError:
    """A waiter's own copy of the error that ended the grant it waited for."""
    copy = BackendError(*error.args, kind=error.kind)
    copy.__cause__ = error.__cause__
    return copy


def drive(
    flow: Generator[Call, Any, list[Decision]],
    call: Callable[[str, Any], Any],
    clock: Callable[[], tuple[float, int | None]],
    bound: float,
    report: Callable[[BackendError], BackendError],
) -> list[Decision]:
    """Run :meth:`ShareBook.flow` with blocking calls: ``call(name, args)`` runs a share or
    plain call; a wait blocks on the grant's event for at most ``bound`` seconds. A failed
    grant fails its waiters too (each with its own error, passed through ``report``); any
    error is thrown into the flow, which puts its reserved units back."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            name, args = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: list[Decision] = stop.value
            return result
        error = None
        try:
            if name == "wait":
                flight: _Flight = args
                if flight.event is not None:
                    flight.event.wait(bound)
                if flight.error is not None:
                    raise report(_copy(flight.error))
                reply = clock()
            else:
                reply = call(name, args)
        except BaseException as exc:  # handed to the flow, which re-raises it
            error = exc


async def adecide(
    book: ShareBook,
    items: Sequence[Item],
    consume: bool,
    missed: tuple[asyncio.Future[Decision | None], _Flight] | None,
    now: tuple[float, int | None],
    call: Callable[[str, Any], Awaitable[Any]],
    clock: Callable[[], tuple[float, int | None]],
    bound: float,
    report: Callable[[BackendError], BackendError],
) -> list[Decision]:
    """An asyncio decision that :meth:`ShareBook.take` (on the running loop, at ``now``)
    could not take from held units: its hand-off from the grant in flight (``missed``), else
    :meth:`ShareBook.flow` run by :func:`adrive`."""
    loop = asyncio.get_running_loop()
    skip = None
    if missed is not None:
        handoff, flight = missed
        try:
            decision = await handoff
        except BackendError as error:
            raise report(error) from error.__cause__
        if decision is not None:
            return [decision]
        now = clock()
        skip = None if flight.done else flight  # the wait's bound passed: ask Redis
    flow = book.flow(items, consume, *now, loop, skip)
    return await adrive(flow, call, clock, bound, report)


async def adrive(
    flow: Generator[Call, Any, list[Decision]],
    call: Callable[[str, Any], Awaitable[Any]],
    clock: Callable[[], tuple[float, int | None]],
    bound: float,
    report: Callable[[BackendError], BackendError],
) -> list[Decision]:
    """:func:`drive` for asyncio: a wait awaits the grant's future (never cancelling it)."""
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            name, args = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as stop:
            result: list[Decision] = stop.value
            return result
        error = None
        try:
            if name == "wait":
                flight: _Flight = args
                if flight.loop is not None:
                    await flight.wait(bound)
                if flight.error is not None:
                    raise report(_copy(flight.error))
                reply = clock()
            else:
                reply = await call(name, args)
        except BaseException as exc:  # handed to the flow, which re-raises it
            error = exc


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

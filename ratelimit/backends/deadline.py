"""Deadlines that measure Redis, not this process: an asyncio decision's ``timeout``.

On an event loop, a plain ``asyncio.timeout`` around a Redis call measures everything that
happens meanwhile on the loop: under a flood, a worker busy parsing a thousand requests runs
its timers late and reads its sockets late, so a reply Redis sent in 50 µs looks 300 ms late,
the decision "times out", the circuit breaker opens on a healthy Redis and ``on_error``
decides — with ``allow``, everything passes (SPEC §4, "A flood is not an outage").

So the deadline counts **responsive time**: the loop's time minus the time the loop was too
busy to run a timer. :class:`LoopClock` measures that with one light ticker per event loop,
running only while some deadline is armed, every ``TICK`` seconds. A tick that runs late
(beyond ``JITTER``, the lateness of an idle loop) shows the loop was busy, since some moment
after the previous tick: the whole interval since that tick counts as busy (an over-count of
at most ``TICK`` per busy stretch, in the safe direction). A busy loop is also late to read
its sockets, so a reply that waited in a socket while the loop was busy is not held against
Redis.

A :class:`Deadline` watches one task (one batch sent to Redis, or one lease call). When
Redis has had ``timeout`` seconds of responsive time and the task is still not done, the
loop is given ``GRACE_TURNS`` more turns — a reply may sit unread in a socket: one turn reads
it, the next runs the task it wakes — and only then is the task cancelled, with
:attr:`Deadline.reason` ``"timeout"``: evidence that Redis did not answer in time.

A process can be too busy to decide at all: if the task is still running ``give_up`` seconds
of wall time after it started, whatever the loop was doing, it is cancelled with reason
``"overload"``. That is no evidence about Redis (the breaker ignores it), and it is never a
reason to admit: the middleware sheds the request with a 503 (``docs/backends.md``).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["GRACE_TURNS", "JITTER", "RECANCEL", "TICK", "Deadline", "LoopClock"]

#: Seconds between two ticks of a :class:`LoopClock` while deadlines are armed.
TICK = 0.01
#: How late an idle loop runs a timer (the selector's millisecond rounding): not a stall.
JITTER = 0.002
#: Loop turns given to a task whose responsive time is up, before it is cancelled.
GRACE_TURNS = 2
#: Seconds between two cancellations of a task that outlived the first.
RECANCEL = 0.01


class LoopClock:
    """The time one event loop was free to run its callbacks (see the module docstring).

    :meth:`now` is the loop's time minus the stalls measured so far, including the one in
    progress (a tick that is overdue right now). The ticker runs while :meth:`hold` has been
    called more often than :meth:`release`.
    """

    __slots__ = ("_expected", "_handle", "_last", "_loop", "_stalled", "_users")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._stalled = 0.0
        self._expected = 0.0
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._users = 0

    def now(self) -> float:
        """Responsive time, in seconds (only differences mean anything)."""
        now = self._loop.time()
        overdue = 0.0
        if self._handle is not None and now - self._expected > JITTER:
            overdue = now - self._last  # busy right now: since the last tick
        return now - self._stalled - overdue

    @property
    def stalled(self) -> float:
        """Seconds the loop has been measured too busy to run a timer, so far."""
        return self._stalled

    def hold(self) -> None:
        """A deadline is armed: keep ticking."""
        self._users += 1
        if self._handle is None:
            self._schedule(self._loop.time())

    def release(self) -> None:
        """A deadline ended (the ticker stops at its next tick when none is left)."""
        self._users -= 1

    def _schedule(self, now: float) -> None:
        self._last = now
        self._expected = now + TICK
        self._handle = self._loop.call_at(self._expected, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        if now - self._expected > JITTER:
            self._stalled += now - self._last
        if self._users > 0:
            self._schedule(now)
        else:
            self._handle = None


class Deadline:
    """Cancels a task once Redis has had ``timeout`` seconds of responsive time to answer,
    or once ``give_up`` seconds of wall time have passed (see the module docstring).

    Arm it with :meth:`start` right after creating the task; :attr:`reason` is ``None``
    until it cancels the task, then ``"timeout"`` or ``"overload"``.
    """

    __slots__ = (
        "_begin",
        "_clock",
        "_end",
        "_handle",
        "_loop",
        "_task",
        "_timeout",
        "_turns",
        "reason",
    )

    def __init__(self, clock: LoopClock, timeout: float, give_up: float) -> None:
        self._clock = clock
        self._loop = clock._loop
        self._timeout = timeout
        self._begin = clock.now()
        self._end = self._loop.time() + give_up
        self._task: asyncio.Future[Any] | None = None
        self._handle: asyncio.Handle | None = None
        self._turns = 0
        #: Why the task was cancelled: ``"timeout"``, ``"overload"``, or ``None`` (not by us).
        self.reason: str | None = None

    def start(self, task: asyncio.Future[Any]) -> None:
        """Watch ``task`` (it was created after this deadline, so its time is counted)."""
        self._task = task
        self._clock.hold()
        self._handle = self._loop.call_at(self._loop.time() + self._timeout, self._check)
        task.add_done_callback(self._finished)

    def _finished(self, _task: asyncio.Future[Any]) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._clock.release()

    def _left(self) -> float:
        return self._timeout - (self._clock.now() - self._begin)

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._end:
            self._expire("overload")
            return
        left = self._left()
        if left > 0:  # the loop was busy meanwhile: Redis still has time
            self._handle = self._loop.call_at(now + min(left, self._end - now), self._check)
            return
        self._turns = 0
        self._handle = self._loop.call_soon(self._turn)

    def _turn(self) -> None:
        self._turns += 1
        if self._turns < GRACE_TURNS:
            self._handle = self._loop.call_soon(self._turn)
            return
        if self._left() > 0 and self._loop.time() < self._end:  # the grace turns were slow
            self._check()
            return
        self._expire("timeout" if self._loop.time() < self._end else "overload")

    def _expire(self, reason: str) -> None:
        self._handle = None
        task = self._task
        if task is not None and not task.done():
            self.reason = reason
            task.cancel()
            # A cancellation can be lost inside the client (``asyncio.wait_for`` of Python
            # 3.11 drops it when the awaited call completes at the same moment, and redis-py
            # 5.0 sends through one): cancel again until the task has ended.
            self._handle = self._loop.call_later(RECANCEL, self._expire, reason)

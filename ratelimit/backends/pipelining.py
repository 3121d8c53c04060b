"""asyncio auto-pipelining: the script calls made during one event-loop iteration are sent
together, as one redis-py pipeline, in one round trip.

A call queues ``(keys, args)`` and awaits a future. The first call of an iteration schedules
a flush with ``loop.call_soon``; the flush takes everything queued so far and sends it on its
own task, so calls arriving meanwhile go into the next batch (no head-of-line blocking beyond
one flush). A flush of more than ``max_batch`` (32) calls is split over several pipelines
(several pooled connections), so that Redis runs one batch while the client reads the replies
of another.

Only redis-py's public API is used: ``client.pipeline(transaction=False)`` and
``execute_command`` (a batch of one is a plain ``execute_command``), which work the same on
``redis.asyncio.Redis`` (a single server or a Sentinel master) and on its ``RedisCluster``
(whose pipeline routes each call to its slot's node), on every redis-py the project admits.

Each batch is bounded by a :class:`~ratelimit.backends.deadline.Deadline`, armed when the
batch is handed to redis-py — not while its calls wait in the queue — and counting only the
time the event loop was free to read the reply: ``timeout`` seconds of that, connecting
included, and the batch fails with ``kind="timeout"`` (evidence about Redis, for the
breaker); ``give_up`` seconds of wall time, and it fails with ``kind="overload"`` (this
process is too busy to decide: no evidence about Redis, and never a reason to admit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from ratelimit.backends.circuit import CircuitBreaker
from ratelimit.backends.deadline import Deadline, LoopClock
from ratelimit.errors import BackendError

__all__ = ["AutoPipeline", "late", "overload_after"]

#: (keys, args, the future of the reply)
_Item = tuple[Sequence[bytes], Sequence[bytes], "asyncio.Future[Any]"]


class AutoPipeline:
    """Batches script calls on one asyncio client (bound to one event loop).

    Args:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
        sha: the script's SHA-1; script: its text (sent with ``EVAL`` after ``NOSCRIPT``).
        breaker: records one success or failure per batch.
        translate: turns a backend failure (a redis-py error, an ``OSError``, a timeout)
            into a :class:`BackendError`, or returns ``None`` for anything else, which then
            reaches the callers unchanged (a bug is not an outage).
        outage: whether a BackendError counts for the breaker (a script error does not:
            Redis answered).
        timeout: seconds of responsive loop time one batch may take, connecting included.
        give_up: seconds of wall time after which a batch fails as ``"overload"``.
        on_success: called after each batch that worked (the backend's first-connection
            checks hang off it).
    """

    def __init__(
        self,
        client: Any,
        sha: str,
        script: str,
        breaker: CircuitBreaker,
        translate: Callable[[BaseException], BackendError | None],
        outage: Callable[[BackendError], bool],
        timeout: float,
        on_success: Callable[[], None] | None = None,
        give_up: float | None = None,
    ) -> None:
        self.client = client
        self._sha = sha
        self._script = script
        self._breaker = breaker
        self._translate = translate
        self._outage = outage
        self._timeout = timeout
        self._give_up = overload_after(timeout) if give_up is None else give_up
        self._clock: LoopClock | None = None
        self._on_success = on_success
        self._pending: list[_Item] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The most calls in one batch; more are split over several pipelines.
        self.max_batch = 32

    def call(self, keys: Sequence[bytes], args: Sequence[bytes]) -> asyncio.Future[Any]:
        """Queue one script call; the returned future gets its reply (or its error)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        size = self.max_batch
        for start in range(0, len(pending), size):
            self.spawn(self._send, pending[start : start + size])

    def deadline(self) -> Deadline:
        """A deadline for one call to Redis on this loop, counting from now."""
        clock = self._clock
        if clock is None:
            clock = self._clock = LoopClock(asyncio.get_running_loop())
        return Deadline(clock, self._timeout, self._give_up)

    def spawn(self, send: Callable[[list[_Item], Deadline], Any], batch: list[_Item]) -> None:
        """Run ``send(batch, deadline)`` on a task of its own, under a fresh deadline."""
        deadline = self.deadline()
        task = asyncio.ensure_future(send(batch, deadline))
        deadline.start(task)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Item], deadline: Deadline) -> None:
        try:
            replies = await self._execute("EVALSHA", self._sha, batch)
            missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if missing:  # SCRIPT FLUSH or a new server: EVAL sends and caches the script
                again = await self._execute("EVAL", self._script, [batch[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except asyncio.CancelledError:
            if deadline.reason is None:  # not ours: the loop is shutting down
                for *_, future in batch:
                    future.cancel()
                raise
            self._fail(batch, late(deadline.reason, self._timeout, self._give_up))
            return
        except Exception as exc:
            self._fail(batch, exc)
            return
        failed: BackendError | None = None
        served = failures = 0
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (its own timeout)
                continue
            served += 1
            if isinstance(reply, Exception):
                error = self._translate(reply)
                if error is None:
                    future.set_exception(reply)
                    continue
                if self._outage(error):
                    failed = failed or error
                    failures += 1
                future.set_exception(_copy(error, reply))
            else:
                future.set_result(reply)
        if failed is not None:
            self._breaker.failure(failed, failures)
        elif served:
            self._breaker.success()
            if self._on_success is not None:
                self._on_success()

    def _fail(self, batch: list[_Item], exc: BaseException) -> None:
        """Hand a failed batch's error to its waiters (an outage also to the breaker)."""
        error = self._translate(exc)
        waiting = [future for *_, future in batch if not future.done()]
        if error is not None and waiting and self._outage(error):
            self._breaker.failure(error, len(waiting))
        for future in waiting:  # a bug is handed over as it is; an outage as BackendError
            future.set_exception(exc if error is None else _copy(error, exc))

    async def _execute(self, command: str, script: str, batch: list[_Item]) -> list[Any]:
        """One round trip: the replies in order, a call's Redis error in its place."""
        client = self.client
        if len(batch) == 1:
            keys, args, _ = batch[0]
            try:
                return [await client.execute_command(command, script, len(keys), *keys, *args)]
            except ResponseError as exc:  # returned in place, like a pipeline does
                return [exc]
        pipe = client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.execute_command(command, script, len(keys), *keys, *args)
        result: list[Any] = await pipe.execute(raise_on_error=False)
        return result


def overload_after(timeout: float) -> float:
    """The default wall-time bound of one decision: 10 × ``timeout``, at least 2 s."""
    return max(2.0, 10 * timeout)


def late(reason: str, timeout: float, give_up: float) -> BackendError:
    """The error of a call its :class:`Deadline` cancelled (``reason``: timeout or overload)."""
    if reason == "overload":
        return BackendError(
            f"this process is overloaded: no decision in {give_up:g}s (Redis not blamed)",
            kind="overload",
        )
    return BackendError(f"Redis unavailable (timeout): no reply in {timeout:g}s", kind="timeout")


def _copy(error: BackendError, cause: BaseException) -> BackendError:
    """A BackendError of its own for each waiter (an exception is mutated when raised)."""
    copy = BackendError(*error.args, kind=error.kind)
    copy.__cause__ = cause
    return copy

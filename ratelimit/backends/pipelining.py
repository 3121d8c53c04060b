"""asyncio auto-pipelining: the script calls made during one event-loop iteration are sent
together, as one pipeline, in one round trip.

A call queues ``(keys, args)`` and awaits a future. The first call of an iteration schedules
a flush with ``loop.call_soon``; the flush takes everything queued so far and sends it on its
own task, so calls arriving meanwhile go into the next batch (no head-of-line blocking beyond
one flush). A batch of one is sent as a plain ``EVALSHA``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from ratelimit.backends.circuit import CircuitBreaker
from ratelimit.errors import BackendError

__all__ = ["AutoPipeline"]

_Item = tuple[Sequence[bytes], Sequence[bytes | int], "asyncio.Future[Any]"]


class AutoPipeline:
    """Batches script calls on one asyncio client (bound to one event loop).

    Args:
        client: a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
        sha: the script's SHA-1; script: its text (sent with ``EVAL`` after ``NOSCRIPT``).
        breaker: records one success or failure per flush.
        translate: turns a redis-py / OS exception into a :class:`BackendError`, telling
            whether it counts as an outage for the breaker.
    """

    def __init__(
        self,
        client: Any,
        sha: str,
        script: str,
        breaker: CircuitBreaker,
        translate: Callable[[BaseException], tuple[BackendError, bool]],
    ) -> None:
        self.client = client
        self._sha = sha
        self._script = script
        self._breaker = breaker
        self._translate = translate
        self._pending: list[_Item] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def call(self, keys: Sequence[bytes], args: Sequence[bytes | int]) -> asyncio.Future[Any]:
        """Queue one script call; the returned future gets its reply (or a BackendError)."""
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
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Item]) -> None:
        try:
            replies = await self._execute("EVALSHA", self._sha, batch)
            missing = [i for i, r in enumerate(replies) if _is_noscript(r)]
            if missing:  # SCRIPT FLUSH or a new server: EVAL sends and caches the script
                again = await self._execute("EVAL", self._script, [batch[i] for i in missing])
                for i, reply in zip(missing, again, strict=True):
                    replies[i] = reply
        except BaseException as exc:  # every waiter must hear about it
            error, outage = self._translate(exc)
            if outage:
                self._breaker.failure()
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            return
        outage = False
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, BaseException):
                error, is_outage = self._translate(reply)
                outage = outage or is_outage
                future.set_exception(error)
            else:
                future.set_result(reply)
        if outage:
            self._breaker.failure()
        else:
            self._breaker.success()

    async def _execute(self, command: str, script: str, batch: list[_Item]) -> list[Any]:
        client = self.client
        if len(batch) == 1:
            keys, args, _ = batch[0]
            try:
                return [await client.execute_command(command, script, len(keys), *keys, *args)]
            except Exception as exc:  # returned like a pipeline would
                if _is_noscript(exc) or _is_reply_error(exc):
                    return [exc]
                raise
        pipe = client.pipeline(transaction=False)
        for keys, args, _ in batch:
            pipe.execute_command(command, script, len(keys), *keys, *args)
        result: list[Any] = await pipe.execute(raise_on_error=False)
        return result


def _is_noscript(reply: object) -> bool:
    from redis.exceptions import NoScriptError

    return isinstance(reply, NoScriptError)


def _is_reply_error(reply: object) -> bool:
    from redis.exceptions import ResponseError

    return isinstance(reply, ResponseError)

"""asyncio auto-pipelining: the script calls made during one event-loop iteration are sent
together, as one pipeline, in one round trip.

A call queues ``(keys, args)`` and awaits a future. The first call of an iteration schedules
a flush with ``loop.call_soon``; the flush takes everything queued so far and sends it on its
own task, so calls arriving meanwhile go into the next batch (no head-of-line blocking beyond
one flush). A flush of more than ``max_batch`` (32) calls is split over several connections,
so that Redis runs one batch while the client reads the replies of another.

On a plain ``redis.asyncio.Redis`` (single server, Sentinel master) a batch is written as raw
RESP on one pooled connection and its replies read back in order: the same bytes a redis-py
pipeline sends, without its per-argument encoding work. A Redis Cluster client gets a redis-py
cluster pipeline, which routes each call to its slot's node.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from ratelimit.backends.circuit import CircuitBreaker
from ratelimit.errors import BackendError

__all__ = ["AutoPipeline"]

#: (keys, args, the EVALSHA command as RESP or None, the future of the reply)
_Item = tuple[Sequence[bytes], Sequence[bytes], bytes | None, "asyncio.Future[Any]"]


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
        #: The most calls in one batch; more are split over several connections, so that
        #: Redis works on one batch while the client handles the replies of another.
        self.max_batch = 32

    def call(
        self, keys: Sequence[bytes], args: Sequence[bytes], packed: bytes | None = None
    ) -> asyncio.Future[Any]:
        """Queue one script call; the returned future gets its reply (or a BackendError).

        ``packed``, when given, is the whole ``EVALSHA`` command already encoded as RESP.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, packed, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        size = self.max_batch
        for start in range(0, len(pending), size):
            task = asyncio.ensure_future(self._send(pending[start : start + size]))
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
            for *_, future in batch:
                if not future.done():
                    future.set_exception(_copy(error, exc))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
            return
        outage = False
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, BaseException):
                error, is_outage = self._translate(reply)
                outage = outage or is_outage
                future.set_exception(_copy(error, reply))
            else:
                future.set_result(reply)
        if outage:
            self._breaker.failure()
        else:
            self._breaker.success()

    async def _execute(self, command: str, script: str, batch: list[_Item]) -> list[Any]:
        client = self.client
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            return await _raw_batch(pool, command, script, batch)
        if len(batch) == 1:
            keys, args, _, _ = batch[0]
            try:
                return [await client.execute_command(command, script, len(keys), *keys, *args)]
            except Exception as exc:  # returned like a pipeline would
                if _is_noscript(exc) or _is_reply_error(exc):
                    return [exc]
                raise
        pipe = client.pipeline(transaction=False)
        for keys, args, _, _ in batch:
            pipe.execute_command(command, script, len(keys), *keys, *args)
        result: list[Any] = await pipe.execute(raise_on_error=False)
        return result


def _copy(error: BackendError, cause: BaseException) -> BackendError:
    """A BackendError of its own for each waiter (an exception is mutated when raised)."""
    copy = BackendError(*error.args)
    copy.__cause__ = cause
    return copy


_bulk_cache: dict[bytes, bytes] = {}


def _bulk(value: bytes) -> bytes:
    """``value`` as a RESP bulk string (the arguments that repeat are cached)."""
    out = _bulk_cache.get(value)
    if out is None:
        out = b"$%d\r\n%s\r\n" % (len(value), value)
        if len(_bulk_cache) < 4096:
            _bulk_cache[value] = out
    return out


def _pack(command: str, script: str, batch: list[_Item]) -> bytes:
    if command == "EVALSHA":
        ready = [packed for _, _, packed, _ in batch]
        if None not in ready:
            return b"".join(ready)  # type: ignore[arg-type]  # no None in it (checked)
    head = _bulk(command.encode()) + _bulk(script.encode())
    parts = []
    for keys, args, _, _ in batch:
        parts.append(b"*%d\r\n" % (3 + len(keys) + len(args)))
        parts.append(head)
        parts.append(_bulk(b"%d" % len(keys)))
        parts.extend(map(_bulk, keys))
        parts.extend(map(_bulk, args))
    return b"".join(parts)


async def _raw_batch(pool: Any, command: str, script: str, batch: list[_Item]) -> list[Any]:
    """Send the batch on one pooled connection; a dead pooled connection is retried once."""
    data = _pack(command, script, batch)
    for attempt in (1, 2):
        conn = await pool.get_connection()
        replies: list[Any] = []
        try:
            await conn.send_packed_command(data)
            # One deadline for the whole batch (socket_timeout), not one timer per reply.
            async with asyncio.timeout(conn.socket_timeout):
                for _ in batch:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:  # this call's error; the others are fine
                        replies.append(exc)
            return replies
        except RedisConnectionError:
            # Like redis-py's Retry(NoBackoff(), 1): a connection that died with a restarted
            # server is replaced once. (Not after a timeout: that would double the wait.)
            await conn.disconnect()
            if attempt == 2 or replies:
                raise
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
    raise AssertionError("unreachable")  # pragma: no cover


def _is_noscript(reply: object) -> bool:
    return isinstance(reply, NoScriptError)


def _is_reply_error(reply: object) -> bool:
    return isinstance(reply, ResponseError)

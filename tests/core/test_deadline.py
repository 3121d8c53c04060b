"""Deadlines that measure Redis, not the event loop (ratelimit.backends.deadline).

Each test builds the situation on a real event loop with a socket pair standing in for Redis:
a reply written while the loop is blocked, no reply at all on an idle loop, no reply on a
loop that is busy all the time. The assertions are on what the deadline decided (its
reason), never on how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import pytest

from ratelimit.backends.deadline import Deadline, LoopClock


async def _read_reply(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    return await loop.sock_recv(sock, 16)


@pytest.fixture
def pair() -> tuple[socket.socket, socket.socket]:
    """A connected socket pair: ours (non-blocking) and "Redis"'s end."""
    ours, redis = socket.socketpair()
    ours.setblocking(False)
    yield ours, redis
    ours.close()
    redis.close()


async def test_a_reply_that_came_while_the_loop_was_blocked_is_not_late(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Redis answers at once, but the loop is blocked past the timeout: the reply is read,
    and the deadline does not cancel the call (a plain asyncio timeout would)."""
    ours, redis = pair
    loop = asyncio.get_running_loop()
    deadline = Deadline(LoopClock(loop), timeout=0.05, give_up=30.0)
    task = asyncio.ensure_future(_read_reply(ours))
    deadline.start(task)

    def busy_worker() -> None:  # the worker parses a flood of requests meanwhile
        redis.send(b"+OK\r\n")
        time.sleep(0.3)

    loop.call_soon(busy_worker)
    assert await task == b"+OK\r\n"
    assert deadline.reason is None


async def test_no_reply_on_an_idle_loop_times_out(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Redis never answers and the loop has nothing else to do: the call is cancelled as a
    timeout (evidence against Redis)."""
    ours, _ = pair
    loop = asyncio.get_running_loop()
    deadline = Deadline(LoopClock(loop), timeout=0.02, give_up=30.0)
    task = asyncio.ensure_future(_read_reply(ours))
    deadline.start(task)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadline.reason == "timeout"


async def test_no_reply_on_a_loop_busy_all_the_time_is_an_overload(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """Redis never answers while every loop turn is busy: nothing says Redis is at fault, so
    the call ends as an overload once its wall-time bound has passed."""
    ours, _ = pair
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    deadline = Deadline(clock, timeout=0.02, give_up=0.25)
    task = asyncio.ensure_future(_read_reply(ours))
    deadline.start(task)

    def busy_turn() -> None:
        time.sleep(0.02)
        if not task.done():
            loop.call_soon(busy_turn)

    loop.call_soon(busy_turn)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadline.reason == "overload"
    assert clock.stalled > 0


async def test_a_call_that_ends_in_time_stops_the_ticker(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A deadline whose call ends is disarmed: the loop clock stops ticking (no timer is left
    behind when no call is waiting on Redis)."""
    ours, redis = pair
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    deadline = Deadline(clock, timeout=5.0, give_up=30.0)
    task = asyncio.ensure_future(_read_reply(ours))
    deadline.start(task)
    redis.send(b"+OK\r\n")
    assert await task == b"+OK\r\n"
    for _ in range(3):
        await asyncio.sleep(0.02)
    assert clock._handle is None
    assert deadline.reason is None


async def test_round_trips_slowed_by_a_busy_loop_are_not_held_against_redis(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    """A call of several round trips (connect, handshake, command) on a loop that is busy at
    every turn takes far longer than the timeout, though Redis answers each at once: the
    deadline lets it finish."""
    ours, redis = pair
    loop = asyncio.get_running_loop()
    deadline = Deadline(LoopClock(loop), timeout=0.05, give_up=30.0)
    echo = threading.Thread(target=_echo, args=(redis, 10), daemon=True)
    echo.start()

    async def call() -> int:
        for _ in range(10):
            await loop.sock_sendall(ours, b"PING\r\n")
            await loop.sock_recv(ours, 16)
        return 10

    task = asyncio.ensure_future(call())
    deadline.start(task)

    def busy_turn() -> None:
        time.sleep(0.03)
        if not task.done():
            loop.call_soon(busy_turn)

    loop.call_soon(busy_turn)
    assert await task == 10
    assert deadline.reason is None
    echo.join(5)


def _echo(sock: socket.socket, replies: int) -> None:
    """Redis's side: answer each request at once."""
    for _ in range(replies):
        if not sock.recv(16):
            return
        sock.sendall(b"+PONG\r\n")


async def test_a_cancellation_the_call_swallows_is_repeated() -> None:
    """A call that swallows its first cancellation (as ``asyncio.wait_for`` can in Python
    3.11, inside older redis-py) is cancelled again until it ends."""
    loop = asyncio.get_running_loop()
    deadline = Deadline(LoopClock(loop), timeout=0.02, give_up=30.0)

    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # lost, once
            await asyncio.sleep(30)
        await asyncio.sleep(30)

    task = asyncio.ensure_future(stubborn())
    deadline.start(task)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deadline.reason == "timeout"

"""An open-loop HTTP load generator (asyncio, and the small client of :mod:`.http1`).

Open loop: request ``i`` is due at ``start + schedule[i]`` whatever the server does. A slow
server does not slow the arrivals down (a closed loop would, and would hide the overload it
causes). At most ``concurrency`` requests are in flight: a request whose turn comes while all
slots are busy is not sent and is recorded as *dropped*; one that the generator itself sent
more than :data:`LATE_AFTER` seconds after its turn (a busy CPU) is recorded as *late*. Both
are reported, never hidden.

Latency is measured from the moment a request is actually sent to the moment its whole
response has arrived.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ratelimit.cli.http1 import Client, ProtocolError

__all__ = [
    "DROPPED",
    "ERROR",
    "LATE_AFTER",
    "PENDING",
    "Sample",
    "Stream",
    "run_streams",
    "uniform_schedule",
]

#: A request sent more than this many seconds after its turn counts as late.
LATE_AFTER = 0.010
#: ``Sample.status`` of a request that was never sent (every slot was busy).
DROPPED = -1
#: ``Sample.status`` of a request sent and not answered yet.
PENDING = -2
#: ``Sample.status`` of a request that got no response (connection refused, timeout, ...).
ERROR = 0

_SERVER_TIMING_DUR = re.compile(r"dur=([0-9.]+)")
_SERVER_TIMING_ARRIVED = re.compile(r'arrived;desc="?([0-9.]+)')


@dataclass(slots=True)
class Sample:
    """What happened to one scheduled request; times are seconds after the start."""

    due: float
    sent: float = math.nan
    latency: float = math.nan
    status: int = PENDING
    retry_after: str | None = None
    ratelimit: str | None = None
    policy: str | None = None
    legacy_remaining: str | None = None
    server_ms: float | None = None
    arrived: float | None = None
    error: str | None = None

    @property
    def at(self) -> float:
        """When the server saw the request if it said so (same clock only), else when sent."""
        return self.sent if self.arrived is None else self.arrived


@dataclass(slots=True)
class Stream:
    """One URL driven by one arrival schedule, with its own in-flight bound.

    ``same_clock``: the server runs in this process and reports its arrival time on
    ``time.monotonic()`` in ``Server-Timing: arrived;desc="<s>"`` (the demo app does): then
    ``Sample.arrived`` is filled in.
    """

    url: str
    schedule: Sequence[float]
    concurrency: int
    same_clock: bool = False
    samples: list[Sample] = field(default_factory=list)
    in_flight: int = 0

    @property
    def target(self) -> str:
        """The request target: the URL's path and query."""
        parts = urlsplit(self.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def uniform_schedule(rate: float, duration: float) -> list[float]:
    """Arrival offsets for a fixed rate: ``i / rate`` for every ``i`` before ``duration``."""
    count = math.ceil(rate * duration - 1e-9)
    return [i / rate for i in range(count)]


def _server_ms(value: str | None) -> float | None:
    """The ``dur`` of a ``Server-Timing`` header, in ms (``None`` when absent)."""
    if not value:
        return None
    match = _SERVER_TIMING_DUR.search(value)
    return float(match.group(1)) if match else None


async def _send(client: Client, stream: Stream, sample: Sample, start: float) -> None:
    loop = asyncio.get_running_loop()
    sent = loop.time()
    sample.sent = sent - start
    try:
        response = await client.request(stream.target)
        sample.latency = loop.time() - sent
        sample.status = response.status
        h = response.headers
        sample.retry_after = h.get("retry-after")
        sample.ratelimit = h.get("ratelimit")
        sample.policy = h.get("ratelimit-policy")
        sample.legacy_remaining = h.get("x-ratelimit-remaining")
        timing = h.get("server-timing")
        sample.server_ms = _server_ms(timing)
        if stream.same_clock and timing:
            match = _SERVER_TIMING_ARRIVED.search(timing)
            if match:
                sample.arrived = float(match.group(1)) - start
    except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError) as exc:
        sample.latency = loop.time() - sent
        sample.status = ERROR
        sample.error = _error_kind(exc)
    finally:
        stream.in_flight -= 1


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, asyncio.IncompleteReadError | ConnectionError):
        return "connection closed"
    if isinstance(exc, ProtocolError):
        return "bad response"
    return type(exc).__name__


async def _drive(
    client: Client, stream: Stream, start: float, tasks: set[asyncio.Task[None]]
) -> None:
    loop = asyncio.get_running_loop()
    schedule = stream.schedule
    i, count = 0, len(schedule)
    while i < count:
        now = loop.time()
        while i < count and start + schedule[i] <= now:  # everything due: send it now
            sample = Sample(due=schedule[i])
            stream.samples.append(sample)
            i += 1
            if stream.in_flight >= stream.concurrency:
                sample.status = DROPPED  # every slot busy: never queued behind the others
                continue
            stream.in_flight += 1
            task = asyncio.create_task(_send(client, stream, sample, start))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if i < count:
            await asyncio.sleep(max(0.0, start + schedule[i] - loop.time()))


async def run_streams(
    streams: Sequence[Stream],
    *,
    start: float | None = None,
    method: str = "GET",
    headers: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
    progress: Callable[[float], None] | None = None,
    progress_every: float = 0.25,
) -> float:
    """Drive every stream at once, open loop; fill each ``stream.samples``.

    ``start`` is the event-loop time (``loop.time()``, i.e. ``time.monotonic()``) of offset 0
    (default: now). ``progress(elapsed)`` is called every ``progress_every`` seconds.
    Returns ``start``.
    """
    loop = asyncio.get_running_loop()
    clients = [Client(stream.url, method, tuple(headers), timeout) for stream in streams]
    if start is None:
        start = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    try:
        drivers = [
            asyncio.create_task(_drive(client, stream, start, tasks))
            for client, stream in zip(clients, streams, strict=True)
        ]
        reporter = None
        if progress is not None:
            reporter = asyncio.create_task(_report(progress, start, progress_every))
        try:
            await asyncio.gather(*drivers)
            while tasks:
                await asyncio.gather(*list(tasks))
        finally:
            for task in (*drivers, *tasks):
                task.cancel()
            if progress is not None and reporter is not None:
                reporter.cancel()
                progress(loop.time() - start)
    finally:
        for client in clients:
            client.close()
    return start


async def _report(progress: Callable[[float], None], start: float, every: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        progress(loop.time() - start)

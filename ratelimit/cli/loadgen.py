"""An open-loop HTTP load generator (asyncio and aiohttp's client).

Open loop: request ``i`` is due at ``start + schedule[i]`` whatever the server does. A slow
server does not slow the arrivals down (a closed loop would, and would hide the overload it
causes). At most ``concurrency`` requests are in flight: a request whose turn comes while all
slots are busy is not sent and is recorded as *dropped*; one that the generator itself sent
more than :data:`LATE_AFTER` seconds after its turn (a busy CPU) is recorded as *late*. Both
are reported, never hidden.

Latency is measured from the moment a request is actually sent to the moment its whole
response has arrived.

The HTTP client is aiohttp's (one ``ClientSession`` per stream, keep-alive connections up to
the stream's concurrency, no redirects followed, no cookies kept, bodies read but not
decompressed). It replaced a hand-written HTTP/1.1 client after this measurement, open loop
against a local uvicorn hello app on the 2-core development machine (5 s per run, concurrency
64, the CPU shared with other work; ``cpu`` is the generator's own user + system time per
answered request)::

    rate      client    achieved    send lag p99    cpu/request
    100/s     http1      100.0/s     2.2-2.3 ms     (start-up dominated)
              aiohttp    100.0/s     2.2 ms
    2,000/s   http1     2000.0/s     3.6 ms          103 us
              aiohttp   2000.0/s     2.8 ms          161 us
    5,000/s   http1     4967-5000/s  1.1-5.8 ms      55-66 us
              aiohttp   4964-4998/s  1.5-5.6 ms     101-121 us
    8,000/s   http1     7979/s       3.6 ms           53 us
              aiohttp   7927/s       3.8 ms          100 us

aiohttp keeps up with the demo (about 100 req/s, bursts of 250) and with ``loadtest`` at
several thousand requests a second, for about twice the CPU per request: one core drives
roughly 8,000-10,000 req/s. Past that, the report's *late* and *dropped* counts say so.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

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


def _header(headers: Any, name: str) -> str | None:
    """A response header, repeated fields joined with ``", "`` (``None`` when absent)."""
    values: list[str] = headers.getall(name, [])
    return ", ".join(values) if values else None


async def _send(
    session: aiohttp.ClientSession,
    url: Any,
    method: str,
    stream: Stream,
    sample: Sample,
    start: float,
) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    sent = loop.time()
    sample.sent = sent - start
    try:
        response = await _request(session, method, url)
        sample.latency = loop.time() - sent
        sample.status = response.status
        h = response.headers
        sample.retry_after = _header(h, "retry-after")
        sample.ratelimit = _header(h, "ratelimit")
        sample.policy = _header(h, "ratelimit-policy")
        sample.legacy_remaining = _header(h, "x-ratelimit-remaining")
        timing = _header(h, "server-timing")
        sample.server_ms = _server_ms(timing)
        if stream.same_clock and timing:
            match = _SERVER_TIMING_ARRIVED.search(timing)
            if match:
                sample.arrived = float(match.group(1)) - start
    except (OSError, TimeoutError, aiohttp.ClientError) as exc:
        sample.latency = loop.time() - sent
        sample.status = ERROR
        sample.error = _error_kind(exc)
    finally:
        stream.in_flight -= 1


async def _request(session: aiohttp.ClientSession, method: str, url: Any) -> Any:
    """One request, its body read. A keep-alive connection the server closed after its last
    answer shows as "disconnected" only once reused: an idempotent request (GET, HEAD, ...)
    that finds it so is sent once more, on a new connection, as browsers do (older aiohttp
    versions do not do it themselves)."""
    import aiohttp

    for attempt in (1, 2):
        try:
            async with session.request(method, url, allow_redirects=False) as response:
                await response.read()
            return response
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            # (not a connection that could not be made: that is no stale connection)
            stale = not isinstance(exc, aiohttp.ClientConnectorError)
            if attempt == 2 or not stale or method not in _IDEMPOTENT:
                raise
    raise AssertionError("unreachable")


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def _error_kind(exc: BaseException) -> str:
    import aiohttp

    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            return "connection refused"
        return "cannot connect"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | ConnectionError
    ):
        return "connection closed"
    if isinstance(exc, aiohttp.ClientOSError):
        return "connection closed"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "bad response"
    return type(exc).__name__


async def _drive(
    session: aiohttp.ClientSession,
    method: str,
    stream: Stream,
    start: float,
    tasks: set[asyncio.Task[None]],
) -> None:
    from yarl import URL

    url = URL(stream.url)  # parsed once, not per request
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
            task = asyncio.create_task(_send(session, url, method, stream, sample, start))
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
    sessions = [_session(stream.concurrency, headers, timeout) for stream in streams]
    if start is None:
        start = loop.time()
    tasks: set[asyncio.Task[None]] = set()
    try:
        drivers = [
            asyncio.create_task(_drive(session, method, stream, start, tasks))
            for session, stream in zip(sessions, streams, strict=True)
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
        for session in sessions:
            await session.close()
    return start


def _session(
    concurrency: int, headers: Sequence[tuple[str, str]], timeout: float
) -> aiohttp.ClientSession:
    """One stream's client: keep-alive connections, no cookies, no decompression."""
    import aiohttp

    names = {name.lower() for name, _ in headers}
    default = [] if "user-agent" in names else [("User-Agent", "ratelimit-loadtest")]
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers=[*default, *headers],
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


async def _report(progress: Callable[[float], None], start: float, every: float) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        progress(loop.time() - start)

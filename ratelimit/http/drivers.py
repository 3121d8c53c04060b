"""The two drivers of a decision flow: one on the blocking backend API, one on asyncio.

A flow (:mod:`ratelimit.http.flow`, the settle steps of :mod:`ratelimit.http.policies`) is a
generator that yields the backend calls it needs — ``(name, args)`` — and receives their
results. :func:`drive` runs it with ``backend.<name>(*args)``; :func:`adrive` with ``await
backend.a<name>(*args)``. That is the only difference between the sync and async paths.

Only :class:`~ratelimit.BackendError` is a backend failure: with a local stand-in
(``on_error = "local"``) the call is made on it instead; else the flow is closed and the
failure's kind returned, for the ``on_error`` outcome — except ``overload`` (this process was
too busy to decide), which no stand-in answers: it is shed. Anything else raised — a key or
cost function of the user's, a bug of ours — propagates, so it is a 500 from the framework
and not a silent fail-open.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ratelimit.errors import BackendError
from ratelimit.http.keys import awaitable_error
from ratelimit.limits import Limit

__all__ = ["AWAIT", "Call", "adrive", "drive", "local_call"]

#: One backend call: the method name (``decide``, ``decide_each``, ``reset``, ``acquire``,
#: ``release``, ``charge``; the async driver calls the ``a``-prefixed twin) and its arguments.
Call = tuple[str, tuple[Any, ...]]
#: The flow step ``(AWAIT, (awaitable, what, function))``: the value of an ``async def``
#: ``key``, ``tier``, ``cost`` or ``charge`` function, awaited by the asyncio driver (the
#: blocking one raises ``TypeError``).
AWAIT = "await"
#: What a driver returns: the flow's value, whether it decided locally, and the kind of the
#: backend failure that ended it (``None``: it did not fail).
Driven = tuple[Any, bool, "str | None"]


def local_call(share: dict[Limit, Limit], name: str, args: tuple[Any, ...]) -> Call:
    """The call ``name(*args)`` with every limit replaced by its local share."""
    if name == "decide" or name == "charge":  # (key, limits, cost | delta, consume | ms)
        key, limits, cost, last = args
        return name, (key, tuple(share.get(lim, lim) for lim in limits), cost, last)
    if name == "decide_each":
        items, consume = args
        return name, ([(k, share.get(lim, lim), c) for k, lim, c in items], consume)
    if name == "reset":
        key, limits = args
        return name, (key, [share.get(lim, lim) for lim in limits])
    key, limit, token = args  # acquire / release
    return name, (key, share.get(limit, limit), token)


def _stands_in(local: Any, error: BackendError) -> bool:
    """Whether the local stand-in answers in place of the failed backend (an overload is
    no outage: nothing answers it, it is shed)."""
    return local is not None and error.kind != "overload"


def _locally(local: Any, share: dict[Limit, Limit], name: str, args: tuple[Any, ...]) -> Any:
    """The call ``name(*args)`` made on the local stand-in, with its limits' local shares."""
    name, args = local_call(share, name, args)
    return getattr(local, name)(*args)


def drive(
    flow: Generator[Call, Any, Any], backend: Any, local: Any, share: dict[Limit, Limit]
) -> Driven:
    """Run ``flow`` on the blocking backend API (``local``: the stand-in, or ``None``)."""
    decided_locally = False
    try:
        call = next(flow)  # StopIteration at once: answered without the backend
        while True:
            name, args = call
            if name is AWAIT:
                flow.close()
                value, what, func = args
                raise awaitable_error(what, func, value)
            try:
                result = getattr(backend, name)(*args)
            except BackendError as error:
                if not _stands_in(local, error):
                    flow.close()
                    return None, decided_locally, error.kind or "error"
                result, decided_locally = _locally(local, share, name, args), True
            call = flow.send(result)
    except StopIteration as stop:
        return stop.value, decided_locally, None


async def adrive(
    flow: Generator[Call, Any, Any], backend: Any, local: Any, share: dict[Limit, Limit]
) -> Driven:
    """:func:`drive` on the asyncio backend API (``await backend.a<name>``)."""
    decided_locally = False
    try:
        call = next(flow)
        while True:
            name, args = call
            if name is AWAIT:  # a user function's value: its errors propagate
                call = flow.send(await args[0])
                continue
            try:
                result = await getattr(backend, "a" + name)(*args)
            except BackendError as error:
                if not _stands_in(local, error):
                    flow.close()
                    return None, decided_locally, error.kind or "error"
                result, decided_locally = _locally(local, share, name, args), True
            call = flow.send(result)
    except StopIteration as stop:
        return stop.value, decided_locally, None

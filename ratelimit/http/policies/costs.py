"""``cost``: what a request weighs — a whole number, its body's bytes, or a function.

Config key: ``cost`` (an int ≥ 1, ``"content-length"``, ``"module:callable"``). A cost of 0
passes uncounted; a cost function that raises or returns something else than a whole number
≥ 0 is a bug in user code and propagates. ``"content-length"`` counts the body's declared
bytes; a body that cannot be measured up front (``Transfer-Encoding``, an invalid or
ambiguous ``Content-Length``) is refused with 411 Length Required, and the adapters cut the
body at the charged length whatever its framing (``Outcome.body_limit``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from ratelimit.errors import ConfigError
from ratelimit.http.drivers import AWAIT
from ratelimit.http.keys import awaitable_error, import_callable

if TYPE_CHECKING:
    from ratelimit.http.flow import Draft, FlowContext
    from ratelimit.http.keys import RequestInfo
    from ratelimit.http.outcome import Outcome
    from ratelimit.http.plan import Group

__all__ = [
    "CostFunc",
    "checked_cost",
    "compile_cost",
    "content_length",
    "declared_length",
    "resolve_cost",
]

#: A cost function: the request's weight (``cost = "content-length"`` or a callable).
CostFunc = Callable[["RequestInfo"], int]

#: The cost of a ``Content-Length`` too long to be true: more than any limit's capacity.
_HUGE = 10**18


def declared_length(request: RequestInfo) -> int | None:
    """The request body's size as its ``Content-Length`` declares it: 0 without one, or
    ``None`` when the body cannot be measured up front — a ``Transfer-Encoding`` header (any
    value: chunked), a ``Content-Length`` that is not plain ASCII digits, or several
    different ``Content-Length`` values. A rule with ``cost = "content-length"`` refuses such
    a request with 411 Length Required.
    """
    if request.header("transfer-encoding") is not None:
        return None
    text = request.header("content-length")
    if text is None:
        return 0
    values = {value.strip() for value in text.split(",")}
    if len(values) != 1:
        return None  # "600, 900": which one would the server believe?
    value = values.pop()
    if not (value.isascii() and value.isdigit()):
        return None
    # More digits than any body has: a cost no limit admits (not a 4,300-digit int parse).
    return int(value) if len(value) <= 18 else _HUGE


def content_length(request: RequestInfo) -> int:
    """The request body's declared size in bytes: the cost of ``cost = "content-length"``
    (0 without a ``Content-Length``; a body without a valid one never gets this far: the
    engine refuses it with 411 first)."""
    length = declared_length(request)
    return 0 if length is None else length


def compile_cost(spec: object) -> int | CostFunc:
    """``cost``: a whole number ≥ 1, ``"content-length"`` or ``"module:callable"``."""
    if isinstance(spec, bool):
        raise ConfigError(f"must be a whole number ≥ 1 or 'content-length', got {spec!r}")
    if isinstance(spec, int):
        if spec < 1:
            raise ConfigError(f"must be a whole number of at least 1, got {spec!r}")
        return spec
    if spec == "content-length":
        return content_length
    if isinstance(spec, str) and ":" in spec:
        func: CostFunc = import_callable(spec, "cost")
        return func
    if callable(spec):
        return spec
    raise ConfigError(
        f"must be a whole number of at least 1, 'content-length' or 'module:callable', got {spec!r}"
    )


def checked_cost(func: Callable[..., Any], cost: Any) -> int:
    """``cost``, the value of the cost function ``func``, if it is a whole number ≥ 0; else
    ``TypeError`` (a bug in the function, not an outage)."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        if inspect.isawaitable(cost):
            raise awaitable_error("cost", func, cost)
        raise TypeError(f"the cost function {func!r} returned {cost!r}, not a whole number ≥ 0")
    return cost


def resolve_cost(
    ctx: FlowContext, draft: Draft, group: Group
) -> Generator[Any, Any, int | Outcome]:
    """What this request weighs under ``group`` (yields the awaitable of an ``async def``
    cost function), or the 411 outcome for a body ``"content-length"`` cannot measure."""
    cost = group.cost
    if cost is content_length:
        length = declared_length(draft.request)
        if length is None:
            if not ctx.shadow:
                return ctx.verdicts.length_required(draft.request)
            return 0  # shadow mode: a body it cannot measure passes uncounted
        draft.body_limit = length
        return length
    if isinstance(cost, int):
        return cost
    value = cost(draft.request)
    if value.__class__ is not int and inspect.isawaitable(value):
        value = yield (AWAIT, (value, "cost", cost))
    return checked_cost(cost, value)

"""What the per-view decorators share: turning decorator arguments into a compiled rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ratelimit.http.keys import (
    KeySpec,
    import_callable,
    is_async_callable,
    refuse_async,
    validate_key,
)
from ratelimit.http.policies import compile_cost
from ratelimit.http.rules import Rule
from ratelimit.limits import Limit
from ratelimit.rate import Rate

#: The ``max_delay`` of a shaping leaky bucket declared by a decorator (as in the config).
DEFAULT_MAX_DELAY = 5.0


def decorator_rule(
    func: Callable[..., Any],
    rates: Sequence[str | Rate | Limit],
    *,
    name: str | None,
    algorithm: str,
    burst: int | None,
    mode: str | None,
    max_delay: float | None,
    key: KeySpec | None,
    cost: int | str,
    methods: Sequence[str] | None,
    blocking: str | None = None,
) -> Rule:
    """The rule a view decorator applies (named after the view unless ``name`` is given).

    A shaping leaky bucket gets the config default ``max_delay`` of 5 s unless one is given.
    ``cost`` is a whole number, ``"content-length"`` (request body bytes; a body without a
    valid ``Content-Length`` is refused with 411) or ``"module:callable"``, as in the config.
    ``blocking`` names the blocking adapter the view runs under (``"Flask"``): an
    ``async def`` key function is then a :class:`~ratelimit.ConfigError`.
    """
    if algorithm == "leaky_bucket" and mode in (None, "shape") and max_delay is None:
        max_delay = DEFAULT_MAX_DELAY
    limits = tuple(
        rate
        if isinstance(rate, Limit)
        else Limit(
            Rate.parse(rate), algorithm=algorithm, burst=burst, mode=mode, max_delay=max_delay
        )
        for rate in rates
    )
    if key is not None:
        validate_key(key)
        if blocking is not None:
            target = import_callable(key) if isinstance(key, str) and ":" in key else key
            if is_async_callable(target):
                view = f"{func.__module__}.{func.__qualname__}"
                refuse_async([f"@limit(key=...) of {view}"], blocking)
    return Rule(
        name=name or f"{func.__module__}.{func.__qualname__}",
        path="/**",
        methods=tuple(methods) if methods else None,
        limits=limits,
        key=key,
        cost=compile_cost(cost),
    )

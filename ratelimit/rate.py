"""Rates: how many requests per how long.

``Rate.parse("10/minute")`` reads the notation documented in the README; ``Rate(10, 60.0)``
builds one directly. Time inside the engine is kept in whole milliseconds, so a period is
stored as ``period_ms`` too; periods must be a whole number of milliseconds, at least 1 ms.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache

from ratelimit.errors import ConfigError

__all__ = ["MAX_EXACT", "Rate", "parse_duration"]

#: Largest integer the engine (and the Redis scripts, which compute in doubles) keeps exact.
#: ``limit × period_ms`` and ``burst × period_ms`` must stay at or below it.
MAX_EXACT = 2**53

_UNITS: dict[str, float] = {}
for _seconds, _names in (
    (1.0, ("s", "sec", "secs", "second", "seconds")),
    (60.0, ("m", "min", "mins", "minute", "minutes")),
    (3600.0, ("h", "hr", "hrs", "hour", "hours")),
    (86400.0, ("d", "day", "days")),
):
    for _name in _names:
        _UNITS[_name] = _seconds

_UNIT_NAMES = {1.0: "second", 60.0: "minute", 3600.0: "hour", 86400.0: "day"}

# ASCII digits only ([0-9], not \d, which would accept other scripts' digits).
_RATE_RE = re.compile(
    r"""^\s*(?P<limit>[0-9]+)\s*
        (?:/|\s+per\s+)\s*
        (?P<mult>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)?\s*
        (?P<unit>[a-z]+)\s*$""",
    re.VERBOSE | re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Rate:
    """An immutable rate: ``limit`` requests per ``period`` seconds.

    >>> Rate.parse("10/minute")
    Rate(limit=10, period=60.0)
    >>> str(Rate(5, 10))
    '5/10 seconds'
    """

    limit: int
    period: float
    period_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limit, period = self.limit, self.period
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise ConfigError(f"rate limit must be a whole number, got {limit!r}")
        if limit < 1:
            raise ConfigError(f"rate limit must be at least 1, got {limit!r}")
        if isinstance(period, bool) or not isinstance(period, int | float):
            raise ConfigError(f"rate period must be a number of seconds, got {period!r}")
        if not math.isfinite(period) or period <= 0:
            raise ConfigError(
                f"rate period must be a positive, finite number of seconds, got {period!r}"
            )
        period_ms = round(period * 1000)
        if period_ms < 1 or abs(period_ms - period * 1000) > 1e-6 * max(1.0, period * 1000):
            raise ConfigError(
                "rate period must be a whole number of milliseconds (at least 0.001 s), "
                f"got {period!r}"
            )
        if limit * period_ms > MAX_EXACT:
            raise ConfigError(
                f"rate {limit}/{period}s is too large: limit × period in ms must stay below 2**53"
            )
        object.__setattr__(self, "period", float(period))
        object.__setattr__(self, "period_ms", period_ms)

    @staticmethod
    def parse(text: str | Rate) -> Rate:
        """Read a rate such as ``"10/second"``, ``"100 per minute"``, ``"5/10s"`` or ``"3/1.5s"``.

        Raises :class:`ConfigError` naming the text for anything else: empty text, zero or
        negative limits, non-integer limits, unknown units, zero or non-finite periods.
        """
        if isinstance(text, Rate):
            return text
        if not isinstance(text, str):
            raise ConfigError(f"a rate must be text such as '10/minute', got {text!r}")
        return _parse(text)

    @property
    def per_second(self) -> float:
        """The sustained rate in requests per second (``limit / period``)."""
        return self.limit / self.period

    def __str__(self) -> str:
        unit = _UNIT_NAMES.get(self.period)
        if unit is not None:
            return f"{self.limit}/{unit}"
        for seconds in (86400.0, 3600.0, 60.0, 1.0):
            count = self.period / seconds
            if count == int(count) and count >= 1:
                return f"{self.limit}/{int(count)} {_UNIT_NAMES[seconds]}s"
        return f"{self.limit}/{self.period:g} seconds"


_DURATION_RE = re.compile(
    r"^\s*(?P<mult>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)?\s*(?P<unit>[a-z]+)\s*$", re.ASCII
)


def parse_duration(value: object) -> float:
    """Seconds from a duration: a number of seconds, or text such as ``"60 seconds"``,
    ``"15 minutes"``, ``"1 hour"``, ``"1 day"``, ``"90s"`` (the units of rates).

    Raises:
        ConfigError: naming the text, for anything else or a duration that is not > 0.
    """
    if isinstance(value, bool):
        raise ConfigError(f"invalid duration {value!r}: expected seconds or text like '1 hour'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value.lower())
        unit = _UNITS.get(match["unit"]) if match else None
        if match is None or unit is None:
            raise ConfigError(
                f"invalid duration {value!r}: expected text such as '60 seconds', "
                "'15 minutes', '1 hour' or '1 day'"
            )
        seconds = float(match["mult"] or 1) * unit
    else:
        raise ConfigError(f"invalid duration {value!r}: expected seconds or text like '1 hour'")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"invalid duration {value!r}: must be longer than zero")
    return seconds


@lru_cache(maxsize=1024)
def _parse(text: str) -> Rate:
    match = _RATE_RE.match(text.lower())
    if match is None:
        raise ConfigError(
            f"invalid rate {text!r}: expected '<count>/<unit>' such as '10/second', "
            f"'100 per minute' or '5/10s'"
        )
    unit = match["unit"]
    seconds = _UNITS.get(unit)
    if seconds is None:
        raise ConfigError(
            f"invalid rate {text!r}: unknown unit {unit!r} (use second, minute, hour or day)"
        )
    mult_text = match["mult"]
    multiple = float(mult_text) if mult_text is not None else 1.0
    if multiple <= 0:
        raise ConfigError(f"invalid rate {text!r}: the period must be longer than zero")
    try:
        return Rate(int(match["limit"]), multiple * seconds)
    except ConfigError as exc:
        raise ConfigError(f"invalid rate {text!r}: {exc}") from None

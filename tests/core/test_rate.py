"""Rate notation: every documented form parses, every bad input raises ConfigError naming it."""

from __future__ import annotations

import math

import pytest

from ratelimit import ConfigError, Rate


@pytest.mark.parametrize(
    ("text", "limit", "period"),
    [
        ("10/second", 10, 1.0),
        ("10/s", 10, 1.0),
        ("10/sec", 10, 1.0),
        ("10 per second", 10, 1.0),
        ("100/minute", 100, 60.0),
        ("100/m", 100, 60.0),
        ("100/min", 100, 60.0),
        ("1000/hour", 1000, 3600.0),
        ("1000/h", 1000, 3600.0),
        ("1000/hr", 1000, 3600.0),
        ("5000/day", 5000, 86400.0),
        ("5000/d", 5000, 86400.0),
        ("5/10s", 5, 10.0),
        ("5/10 seconds", 5, 10.0),
        ("5 per 10 minutes", 5, 600.0),
        ("3/1.5s", 3, 1.5),
        ("  7 / MINUTE ", 7, 60.0),
        ("2 PER 3 Hours", 2, 10800.0),
    ],
)
def test_parse_accepts_every_documented_form(text: str, limit: int, period: float) -> None:
    """Each form of SPEC §1 parses to the right limit and period."""
    rate = Rate.parse(text)
    assert (rate.limit, rate.period) == (limit, period)
    assert rate.period_ms == round(period * 1000)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "0/second",
        "-1/second",
        "1.5/second",
        "10/0s",
        "10/0.0 seconds",
        "10/fortnight",
        "10",
        "/second",
        "ten/second",
        "١٠/second",  # Arabic-Indic digits
        "10/nan seconds",
        "10/inf",
        "10/1e3s",
        "10/-5s",
        "10/second/extra",
        "10/0.0001s",  # below the engine's millisecond resolution
    ],
)
def test_parse_rejects_bad_text_naming_it(text: str) -> None:
    """Invalid rate text raises ConfigError (a ValueError) whose message quotes the text."""
    with pytest.raises(ConfigError) as info:
        Rate.parse(text)
    assert isinstance(info.value, ValueError)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize(
    ("limit", "period"),
    [
        (0, 1.0),
        (-3, 1.0),
        (1.5, 1.0),
        (True, 1.0),
        (10, 0),
        (10, -1.0),
        (10, math.nan),
        (10, math.inf),
        (10, "1"),
        (10**17, 86400.0),
    ],
)
def test_constructor_rejects_bad_values(limit: object, period: object) -> None:
    """Rate() refuses non-integer, non-positive, non-finite and over-precise values."""
    with pytest.raises(ConfigError):
        Rate(limit, period)  # type: ignore[arg-type]


def test_parse_rejects_non_text() -> None:
    """A number where rate text is expected is a ConfigError, not a TypeError."""
    with pytest.raises(ConfigError, match="10"):
        Rate.parse(10)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "text"),
    [
        (Rate(10, 60), "10/minute"),
        (Rate(1, 1), "1/second"),
        (Rate(5, 10), "5/10 seconds"),
        (Rate(3, 1.5), "3/1.5 seconds"),
        (Rate(2, 7200), "2/2 hours"),
        (Rate(9, 86400), "9/day"),
    ],
)
def test_str_is_readable_and_parses_back(rate: Rate, text: str) -> None:
    """str(rate) reads naturally and parses back to an equal Rate."""
    assert str(rate) == text
    assert Rate.parse(str(rate)) == rate


def test_rate_is_immutable_and_hashable() -> None:
    """A Rate cannot be changed after creation and works as a dict key."""
    rate = Rate.parse("10/minute")
    with pytest.raises(AttributeError):
        rate.limit = 11  # type: ignore[misc]
    assert {rate: 1}[Rate(10, 60.0)] == 1
    assert rate.per_second == pytest.approx(10 / 60)

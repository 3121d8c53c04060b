"""Limit validation, identity and Decision behaviour."""

from __future__ import annotations

import math

import pytest

from ratelimit import ConfigError, Decision, Limit, Rate
from ratelimit.decision import combine


def test_limit_accepts_rate_text_and_derives_capacity_and_id() -> None:
    """Rate text is parsed; capacity is the burst for buckets and the limit otherwise."""
    bucket = Limit("10/second", algorithm="token_bucket", burst=25)
    assert bucket.rate == Rate(10, 1)
    assert bucket.capacity == 25
    assert Limit("10/second").capacity == 10
    assert Limit("10/second", name="api").id == "api"
    assert Limit("10/second").id != Limit("10/minute").id
    assert bucket.id != Limit("10/second", algorithm="token_bucket").id
    assert Limit("2/second", algorithm="leaky_bucket").mode == "shape"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "gcra"}, "unknown algorithm 'gcra'"),
        ({"burst": 5}, "burst is for token_bucket and leaky_bucket only"),
        ({"algorithm": "token_bucket", "burst": 0}, "burst must be a whole number"),
        ({"algorithm": "token_bucket", "burst": 2.5}, "burst must be a whole number"),
        ({"algorithm": "token_bucket", "burst": True}, "burst must be a whole number"),
        ({"algorithm": "token_bucket", "mode": "shape"}, "mode is for leaky_bucket only"),
        ({"algorithm": "leaky_bucket", "mode": "queue"}, "unknown leaky_bucket mode 'queue'"),
        ({"algorithm": "leaky_bucket", "mode": "police", "max_delay": 1.0}, "shape mode only"),
        ({"algorithm": "leaky_bucket", "max_delay": -1}, "max_delay must be"),
        ({"algorithm": "leaky_bucket", "max_delay": math.inf}, "max_delay must be"),
        ({"name": ""}, "name must be non-empty"),
        ({"algorithm": "token_bucket", "burst": 2**60}, "too large"),
    ],
)
def test_limit_rejects_bad_options_with_a_clear_message(
    kwargs: dict[str, object], message: str
) -> None:
    """Every bad option is a ConfigError that says which option and why."""
    with pytest.raises(ConfigError, match=message):
        Limit("10/second", **kwargs)  # type: ignore[arg-type]


def test_limit_rejects_bad_rate_text() -> None:
    """Bad rate text given to Limit is reported with the text."""
    with pytest.raises(ConfigError, match="'10/fortnight'"):
        Limit("10/fortnight")


def test_limit_is_immutable_and_hashable() -> None:
    """A Limit cannot be changed and equal limits hash alike."""
    limit = Limit("5/minute", name="login")
    with pytest.raises(AttributeError):
        limit.name = "other"  # type: ignore[misc]
    assert len({limit, Limit("5/minute", name="login")}) == 1
    assert str(Limit("2/second", algorithm="leaky_bucket", burst=4)) == (
        "2/second (leaky_bucket, burst 4, shape)"
    )


def _decision(
    allowed: bool, remaining: int, retry: float, delay: float = 0.0, reset: float = 1.0
) -> Decision:
    return Decision(allowed, 10, remaining, reset, retry, delay, Limit("10/second"))


def test_decision_is_truthy_exactly_when_allowed() -> None:
    """`if decision:` means admitted."""
    assert _decision(True, 3, 0.0)
    assert not _decision(False, 0, 1.0)


def test_combine_reports_the_most_restrictive_decision() -> None:
    """Admitted: lowest remaining with the longest delay; rejected: longest retry_after."""
    a, b = _decision(True, 5, 0.0, delay=0.3), _decision(True, 2, 0.0)
    combined = combine([a, b])
    assert combined.remaining == 2 and combined.delay == 0.3
    r1, r2 = _decision(False, 0, 2.0), _decision(False, 0, 7.0)
    assert combine([a, r1, r2]).retry_after == 7.0
    assert not combine([a, r1])
    with pytest.raises(ValueError):
        combine([])


def test_the_registry_declares_every_algorithm_once() -> None:
    """Every algorithm name maps to one class that declares it, its burst option and its
    Lua mirror; a Limit is plain data (its algorithm object comes from the registry)."""
    from importlib import resources

    from ratelimit.algorithms import ALL_ALGORITHMS
    from ratelimit.algorithms.registry import BUCKETS, IMPLEMENTATIONS, algorithm_of

    assert tuple(IMPLEMENTATIONS) == ALL_ALGORITHMS
    assert BUCKETS == ("token_bucket", "leaky_bucket")
    lua = resources.files("ratelimit.backends").joinpath("lua")
    for name, cls in IMPLEMENTATIONS.items():
        assert cls.name == name and lua.joinpath(cls.lua).is_file()
    limit = Limit("5/minute", name="x")
    assert algorithm_of(limit).policy is limit and limit.impl.policy is limit
    assert "impl" not in {f.name for f in __import__("dataclasses").fields(limit)}

"""Header and body rendering: IETF fields, legacy fields, problem+json, rounding."""

from __future__ import annotations

import json
import math

import pytest

from ratelimit import Decision, Limit
from ratelimit.http.headers import (
    join_policies,
    label_of,
    policy_item,
    render,
    retry_seconds,
    service_unavailable,
    too_many_requests,
)

LOGIN = Limit("5/minute", name="login")


def decision(**changes: object) -> Decision:
    base = Decision(True, 5, 4, 51.2, 0.0, 0.0, LOGIN)
    return base._replace(**changes)


def test_policy_items() -> None:
    """RateLimit-Policy items carry the quota and the window in whole seconds."""
    assert policy_item(LOGIN) == b'"login";q=5;w=60'
    assert policy_item(Limit("3/1.5s", name="odd")) == b'"odd";q=3;w=2'
    # A bucket's quota is its burst, its window the time an empty bucket takes to fill: so
    # r (at most the burst) never exceeds q, and q/w is still the long-run rate.
    assert policy_item(Limit("10/second", algorithm="token_bucket", burst=20, name="b")) == (
        b'"b";q=20;w=2'
    )
    assert join_policies([LOGIN, Limit("1/day", name="d")]) == (
        b'"login";q=5;w=60, "d";q=1;w=86400'
    )


def test_names_are_valid_structured_field_strings() -> None:
    """Quotes and backslashes are escaped, non-printable characters replaced."""
    assert label_of(Limit("1/s", name='a"b\\c')) == b'"a\\"b\\\\c"'
    assert label_of(Limit("1/s", name="caf\xe9\n")) == b'"caf??"'


@pytest.mark.parametrize(
    ("mode", "names"),
    [
        ("ietf", [b"ratelimit-policy", b"ratelimit"]),
        ("legacy", [b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset"]),
        ("both", [b"ratelimit-policy", b"ratelimit", b"x-ratelimit-limit",
                  b"x-ratelimit-remaining", b"x-ratelimit-reset"]),
        ("none", []),
    ],
)  # fmt: skip
def test_render_modes(mode: str, names: list[bytes]) -> None:
    """Each headers mode renders exactly its header names."""
    headers = render(mode, decision(), b'"login";q=5;w=60', {LOGIN.id: b'"login"'})
    assert [name for name, _ in headers] == names


def test_render_values_round_reset_up() -> None:
    """r is the remaining count and t the reset rounded up to whole seconds."""
    headers = dict(render("both", decision(), b"P", {LOGIN.id: b'"login"'}))
    assert headers[b"ratelimit"] == b'"login";r=4;t=52'
    assert headers[b"x-ratelimit-limit"] == b"5"
    assert headers[b"x-ratelimit-remaining"] == b"4"
    assert headers[b"x-ratelimit-reset"] == b"52"


@pytest.mark.parametrize(("seconds", "whole"), [(0.0, 0), (0.001, 1), (1.0, 1), (51.2, 52)])
def test_retry_seconds_rounds_up(seconds: float, whole: int) -> None:
    """Retry-After is whole seconds, rounded up."""
    assert retry_seconds(seconds) == whole


def test_429_problem_body() -> None:
    """The 429 reply is RFC 9457 problem+json with matching Retry-After and length."""
    reply = too_many_requests(decision(allowed=False, remaining=0, retry_after=3.2), [])
    headers = dict(reply.headers)
    body = json.loads(reply.body)
    assert reply.status == 429
    assert headers[b"content-type"] == b"application/problem+json"
    assert headers[b"retry-after"] == b"4" and body["retry_after"] == 4
    assert int(headers[b"content-length"]) == len(reply.body)
    assert set(body) == {"type", "title", "status", "detail", "retry_after", "violated-policies"}
    # draft-11 §5.1: the quota-exceeded problem type, naming the policy that was violated
    assert body["type"] == "https://iana.org/assignments/http-problem-types#quota-exceeded"
    assert body["violated-policies"] == [decision().policy.name or decision().policy.id]


def test_429_for_a_request_that_can_never_pass() -> None:
    """A cost above the capacity (retry_after = inf) gets no Retry-After and a null retry."""
    reply = too_many_requests(decision(allowed=False, retry_after=math.inf), [])
    assert b"retry-after" not in dict(reply.headers)
    assert json.loads(reply.body)["retry_after"] is None


def test_503_reply() -> None:
    """The fail-closed reply is a 503 problem+json with Retry-After: 1."""
    reply = service_unavailable()
    assert reply.status == 503 and dict(reply.headers)[b"retry-after"] == b"1"
    assert json.loads(reply.body)["status"] == 503

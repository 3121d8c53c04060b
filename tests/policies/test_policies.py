"""Every policy of SPEC §5 as scenarios through the engine, on memory and on Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from ratelimit import ConfigError
from ratelimit.http.engine import Engine, Outcome
from ratelimit.http.keys import RequestInfo
from tests.conftest import FakeClock


class Request(RequestInfo):
    """A request with headers, for the engine."""

    __slots__ = ("headers",)

    def __init__(self, method: str, path: str, peer: str = "192.0.2.1", **headers: str) -> None:
        super().__init__(method, path, peer)
        self.headers = {k.replace("_", "-").lower(): v for k, v in headers.items()}

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


def run(engine: Engine, request: Request) -> Outcome:
    plan = engine.plan(request.method, request.path)
    assert plan is not None
    outcome = engine.run(plan, request)
    if engine.rejections is not None:
        engine.rejections.forget()  # each step asks the backend (the cache has its own tests)
    return outcome


def status(outcome: Outcome) -> int:
    return outcome.reply.status if outcome.reply is not None else 200


def headers(outcome: Outcome) -> dict[bytes, bytes]:
    source = outcome.reply.headers if outcome.reply is not None else outcome.headers
    return dict(source)


# -- tiers -----------------------------------------------------------------------------------

TIERS = {
    "name": "api",
    "path": "/api/**",
    "key": "header:x-api-key",
    "tier": "header:x-plan",
    "limits": ["2/hour"],
    "tiers": {"pro": ["4/hour", "100/day"], "internal": "exempt"},
}


def test_tiers_pick_the_limits_and_count_apart(backend: Any) -> None:
    """A listed tier gets its own limits and counters and is named in the headers; no tier
    and an invented tier share the rule's own limits; an exempt tier is not limited at all."""
    engine = Engine({"rules": [TIERS]}, backend=backend)
    pro = [run(engine, Request("GET", "/api/x", x_api_key="k", x_plan="pro")) for _ in range(5)]
    assert [status(o) for o in pro] == [200, 200, 200, 200, 429]
    assert headers(pro[0])[b"ratelimit"].startswith(b'"api.pro.0";r=3')
    assert b'"api.pro.0";q=4' in headers(pro[0])[b"ratelimit-policy"]
    plain = [run(engine, Request("GET", "/api/x", x_api_key="k")) for _ in range(2)]
    invented = run(engine, Request("GET", "/api/x", x_api_key="k", x_plan="platinum"))
    assert [status(o) for o in [*plain, invented]] == [200, 200, 429]  # one shared budget
    assert headers(plain[0])[b"ratelimit"].startswith(b'"api";r=1')
    internal = [run(engine, Request("GET", "/api/x", x_plan="internal")) for _ in range(10)]
    assert all(status(o) == 200 and not o.headers for o in internal)


# -- count -----------------------------------------------------------------------------------

COUNT = {
    "name": "login",
    "path": "/login",
    "methods": ["POST"],
    "limit": "3/minute",
    "count": "failures",
}


def login(engine: Engine, answer: int) -> int:
    outcome = run(engine, Request("POST", "/login"))
    if outcome.reply is not None:
        return outcome.reply.status
    assert outcome.pending is not None
    engine.settle(outcome.pending, answer)
    return answer


def test_count_failures_only(backend: Any) -> None:
    """Successful logins cost nothing; the third failure fills the limit, then 429."""
    engine = Engine({"rules": [COUNT]}, backend=backend)
    assert [login(engine, 200) for _ in range(10)] == [200] * 10
    assert [login(engine, 401) for _ in range(4)] == [401, 401, 401, 429]


def test_count_lands_even_over_the_limit(backend: Any) -> None:
    """Requests admitted together are all counted when they end: the count always lands
    (the limit is full afterwards), and the overshoot is the number in flight."""
    engine = Engine({"rules": [COUNT]}, backend=backend)
    flying = [run(engine, Request("POST", "/login")) for _ in range(6)]
    assert all(o.reply is None and o.pending is not None for o in flying)
    for outcome in flying:
        assert outcome.pending is not None
        engine.settle(outcome.pending, 403)
    after = run(engine, Request("POST", "/login"))
    assert status(after) == 429 and after.decision is not None and after.decision.remaining == 0


def test_count_statuses(backend: Any, clock: FakeClock) -> None:
    """``count = [401, 403]`` counts exactly those statuses."""
    rule = {**COUNT, "count": [401, 403]}
    engine = Engine({"rules": [rule]}, backend=backend)
    assert [login(engine, s) for s in (500, 404, 401, 403, 200, 401)] == [
        500,
        404,
        401,
        403,
        200,
        401,
    ]
    assert login(engine, 200) == 429
    clock.advance(60)
    assert login(engine, 200) == 200


# -- ban -------------------------------------------------------------------------------------

BAN = {
    "name": "login",
    "path": "/login",
    "limit": "1/minute",
    "ban": {"after": 3, "within": "1 hour", "duration": "1 day"},
}


def test_ban_after_repeated_rejections(backend: Any, clock: FakeClock) -> None:
    """The third rejection within the hour bans for a day, whatever the budget says;
    Retry-After is what is left of the ban; after it the client is limited as before."""
    engine = Engine({"rules": [BAN]}, backend=backend)
    outcomes = [run(engine, Request("GET", "/login")) for _ in range(4)]
    assert [o.kind for o in outcomes] == ["allowed", "rejected", "rejected", "rejected"]
    clock.advance(120)  # the minute's budget is back, the ban is not
    banned = run(engine, Request("GET", "/login"))
    assert banned.kind == "banned" and status(banned) == 429
    retry = int(headers(banned)[b"retry-after"])
    assert 86400 - 121 <= retry <= 86400 - 119
    other = run(engine, Request("GET", "/login", peer="192.0.2.99"))
    assert other.kind == "allowed"  # per client
    clock.advance(86400)
    assert run(engine, Request("GET", "/login")).kind == "allowed"


def test_ban_with_count_is_one_call_before_the_response(backend: Any, clock: FakeClock) -> None:
    """A failed-logins rule with a ban: failures fill the limit, rejections strike, and the
    ban check rides in the same dry run as the limit (one backend call per request)."""
    rule = {**COUNT, "limit": "2/minute", "ban": {"after": 2, "within": "1 hour", "duration": 600}}
    engine = Engine({"rules": [rule]}, backend=backend)
    assert [login(engine, 401) for _ in range(2)] == [401, 401]
    assert [login(engine, 401) for _ in range(2)] == [429, 429]  # two strikes: banned
    clock.advance(120)
    outcome = run(engine, Request("POST", "/login"))
    assert outcome.kind == "banned" and outcome.decision is not None
    assert math.isclose(outcome.decision.retry_after, 480, abs_tol=1), outcome.decision


# -- concurrency -----------------------------------------------------------------------------

EXPORTS = {
    "name": "exports",
    "path": "/export/**",
    "algorithm": "concurrency",
    "limit": 2,
    "lease": "30 seconds",
}


def test_concurrency_slots_are_taken_and_given_back(backend: Any, clock: FakeClock) -> None:
    """Two in flight; the third waits for one to end; a lease never given back (a killed
    worker) frees its slot after ``lease``."""
    engine = Engine({"rules": [EXPORTS]}, backend=backend)
    first, second = (run(engine, Request("GET", "/export/a")) for _ in range(2))
    assert first.reply is None and second.reply is None
    assert b'qu="concurrent-requests"' in headers(first)[b"ratelimit-policy"]
    third = run(engine, Request("GET", "/export/a"))
    assert status(third) == 429 and third.decision is not None
    assert 0 < third.decision.retry_after <= 1
    assert first.pending is not None
    engine.settle(first.pending, 200)
    fourth = run(engine, Request("GET", "/export/a"))
    assert fourth.reply is None
    clock.advance(31)  # second and fourth were never given back: their leases expire
    assert all(run(engine, Request("GET", "/export/a")).reply is None for _ in range(2))


async def test_concurrency_through_the_async_driver(backend: Any) -> None:
    """The asyncio driver takes and gives back leases the same way."""
    engine = Engine({"rules": [EXPORTS]}, backend=backend)
    plan = engine.plan("GET", "/export/x")
    assert plan is not None
    outcomes = [await engine.arun(plan, Request("GET", "/export/x")) for _ in range(3)]
    assert [status(o) for o in outcomes] == [200, 200, 429]
    for outcome in outcomes[:2]:
        assert outcome.pending is not None
        await engine.asettle(outcome.pending, 200)
    again = await engine.arun(plan, Request("GET", "/export/x"))
    assert again.reply is None
    if hasattr(backend, "aclose"):
        await backend.aclose()


# -- weights ---------------------------------------------------------------------------------

BYTES = {"name": "upload", "path": "/upload/**", "limit": "1000/hour", "cost": "content-length"}


def test_content_length_cost_counts_bytes(backend: Any) -> None:
    """``cost = "content-length"`` spends the body's bytes; a body-less request passes
    uncounted; the policy says ``qu="content-bytes"``."""
    engine = Engine({"rules": [BYTES]}, backend=backend)
    first = run(engine, Request("POST", "/upload/a", content_length="600"))
    assert status(first) == 200
    assert b'"upload";q=1000;w=3600;qu="content-bytes"' in headers(first)[b"ratelimit-policy"]
    assert headers(first)[b"ratelimit"].startswith(b'"upload";r=400')
    empty = run(engine, Request("POST", "/upload/a"))
    assert status(empty) == 200 and not empty.headers  # cost 0: not counted
    assert status(run(engine, Request("POST", "/upload/a", content_length="600"))) == 429


def heavy(request: RequestInfo) -> int:
    return 3 if request.path.endswith("/big") else 1


def broken_cost(request: RequestInfo) -> int:
    raise RuntimeError("bug in the cost function")


def test_cost_callable_and_its_errors(backend: Any) -> None:
    """A ``module:callable`` cost weighs each request; one that raises propagates."""
    rule = {"name": "w", "path": "/w/**", "limit": "4/hour", "cost": f"{__name__}:heavy"}
    engine = Engine({"rules": [rule]}, backend=backend)
    assert status(run(engine, Request("GET", "/w/big"))) == 200
    assert status(run(engine, Request("GET", "/w/big"))) == 429
    assert status(run(engine, Request("GET", "/w/small"))) == 200
    bad = {"name": "b", "path": "/b", "limit": "4/hour", "cost": f"{__name__}:broken_cost"}
    engine = Engine({"rules": [bad]}, backend=backend)
    with pytest.raises(RuntimeError, match="bug in the cost function"):
        run(engine, Request("GET", "/b"))


# -- allow / deny ----------------------------------------------------------------------------


def test_allow_and_deny_lists(backend: Any) -> None:
    """Top-level deny refuses everything (403, even unmatched paths); allow is never
    limited nor given headers; per-rule lists act on that rule only."""
    rule = {"name": "r", "path": "/r", "limit": "1/hour", "deny": ["198.51.100.0/24"]}
    config = {"rules": [rule], "deny": ["203.0.113.0/24"], "allow": ["192.0.2.7"]}
    engine = Engine(config, backend=backend)
    denied = run(engine, Request("GET", "/anything", peer="203.0.113.9"))
    assert status(denied) == 403 and denied.kind == "denied"
    assert denied.reply is not None and b"Forbidden" in denied.reply.body
    allowed = [run(engine, Request("GET", "/r", peer="192.0.2.7")) for _ in range(3)]
    assert all(status(o) == 200 and not o.headers for o in allowed)
    assert status(run(engine, Request("GET", "/r", peer="198.51.100.1"))) == 403
    assert [status(run(engine, Request("GET", "/r"))) for _ in range(2)] == [200, 429]


# -- reload ----------------------------------------------------------------------------------


def write_rules(path: Path, limit: str, extra: str = "") -> None:
    path.write_text(
        f'reload = true\n[[rules]]\nname = "r"\npath = "/r"\nlimit = "{limit}"\n{extra}'
    )


def test_reload_swaps_rules_and_keeps_counters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A changed file is taken at the next check; a broken one keeps the old rules and logs
    once; counters of an unchanged rule survive a reload."""
    path = tmp_path / "ratelimit.toml"
    write_rules(path, "2/hour")
    engine = Engine(str(path))
    assert engine._watch is not None
    assert status(run(engine, Request("GET", "/r"))) == 200
    write_rules(path, "2/hour", '[[rules]]\nname = "s"\npath = "/s"\nlimit = "1/hour"\n')
    engine._watch._next = 0.0
    engine._watch._mtime = -1  # as if the file's time moved (coarse mtimes on some disks)
    assert status(run(engine, Request("GET", "/r"))) == 200  # same counters: 2nd of 2
    assert status(run(engine, Request("GET", "/r"))) == 429
    assert [status(run(engine, Request("GET", "/s"))) for _ in range(2)] == [200, 429]
    path.write_text("this is not toml [")
    with caplog.at_level(logging.ERROR, logger="ratelimit"):
        for _ in range(3):
            engine._watch._next = 0.0
            engine._watch._mtime = -1 if _ == 0 else engine._watch._mtime
            run(engine, Request("GET", "/s"))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "keeping the rules" in errors[0].getMessage()
    assert status(run(engine, Request("GET", "/s"))) == 429  # the old rules still apply


def test_reload_needs_a_file() -> None:
    """``reload = true`` on a dict config is a ConfigError at start-up."""
    with pytest.raises(ConfigError, match="reload = true needs the config to be a TOML file"):
        Engine({"reload": True, "rules": []})


def test_policy_errors_at_load() -> None:
    """Policies that cannot mean anything are refused at start-up, naming the key."""
    base = {"name": "x", "path": "/x", "limit": "1/s"}
    bad = [
        ({**base, "count": "sometimes"}, "rules[0].count: "),
        ({**base, "algorithm": "leaky_bucket", "count": "failures"}, "rules[0].count: a shaping"),
        ({**base, "ban": {"after": 0, "within": 1, "duration": 1}}, "rules[0].ban: after"),
        ({**base, "ban": {"after": 1, "within": "soon", "duration": 1}}, "ban: within: invalid"),
        ({**base, "tiers": {"pro": "1/s"}}, "rules[0].tiers: needs 'tier'"),
        ({**base, "tier": "header:x", "tiers": {"pro": "1/fortnight"}}, "tiers.pro[0]"),
        ({**base, "lease": 5}, "rules[0].lease: only for"),
        ({**base, "algorithm": "concurrency"}, "concurrency limit is a whole number"),
        ({**base, "allow": ["nope"]}, "rules[0].allow[0]: invalid network"),
        ({**base, "cost": "body-size"}, "rules[0].cost: "),
    ]
    for rule, expected in bad:
        with pytest.raises(ConfigError) as info:
            Engine({"rules": [rule]})
        assert expected in str(info.value), (rule, str(info.value))


def test_settle_from_asyncio_gives_back_on_cancel() -> None:
    """asettle runs to its end even when awaited from a task being cancelled (shielded)."""
    engine = Engine({"rules": [EXPORTS]})
    plan = engine.plan("GET", "/export/x")
    assert plan is not None

    async def scenario() -> list[int]:
        held = await engine.arun(plan, Request("GET", "/export/x"))
        assert held.pending is not None
        await asyncio.shield(engine.asettle(held.pending, 499))
        outcomes = [await engine.arun(plan, Request("GET", "/export/x")) for _ in range(3)]
        return [status(o) for o in outcomes]

    assert asyncio.run(scenario()) == [200, 200, 429]


def test_content_length_that_cannot_be_true(backend: Any) -> None:
    """A huge or non-ASCII Content-Length is no crash and no free pass: too long to be true
    is rejected outright, not a number is refused with 411."""
    engine = Engine({"rules": [BYTES]}, backend=backend)
    huge = run(engine, Request("POST", "/upload/a", content_length="9" * 5000))
    assert status(huge) == 429 and huge.decision is not None
    assert math.isinf(huge.decision.retry_after)
    odd = run(engine, Request("POST", "/upload/a", content_length="²"))
    assert status(odd) == 411 and odd.kind == "denied"


@pytest.mark.parametrize(
    "framing",
    [
        {"transfer_encoding": "chunked"},
        {"transfer_encoding": "gzip, chunked", "content_length": "10"},
        {"transfer_encoding": "identity"},
        {"content_length": "600, 900"},
        {"content_length": "-5"},
        {"content_length": "0x10"},
        {"content_length": ""},
    ],
)
def test_a_body_without_a_valid_length_is_411(backend: Any, framing: dict[str, str]) -> None:
    """A byte quota refuses, with 411 problem+json and nothing counted, a request whose body
    it cannot measure up front: any Transfer-Encoding, a Content-Length that is not digits,
    or several different ones."""
    engine = Engine({"rules": [BYTES]}, backend=backend)
    refused = run(engine, Request("POST", "/upload/a", **framing))
    assert status(refused) == 411 and refused.kind == "denied"
    assert refused.reply is not None and refused.decision is None
    assert headers(refused)[b"content-type"] == b"application/problem+json"
    body = json.loads(refused.reply.body)
    assert body["status"] == 411 and body["title"] == "Length Required"
    fine = run(engine, Request("POST", "/upload/a", content_length="600"))
    assert status(fine) == 200 and fine.body_limit == 600
    assert headers(fine)[b"ratelimit"].startswith(b'"upload";r=400')  # the 411 cost nothing


def test_length_required_details(backend: Any) -> None:
    """HEAD gets the 411 without a body; repeated equal Content-Length values count once;
    no Content-Length is a body of 0 bytes (the adapters cut any body there); rules that do
    not count bytes never ask for a length."""
    engine = Engine(
        {"rules": [BYTES, {"name": "plain", "path": "/plain", "limit": "5/hour"}]},
        backend=backend,
    )
    head = run(engine, Request("HEAD", "/upload/a", transfer_encoding="chunked"))
    assert status(head) == 411 and head.reply is not None and head.reply.body == b""
    same = run(engine, Request("POST", "/upload/a", content_length="300, 300"))
    assert status(same) == 200 and same.body_limit == 300
    bodiless = run(engine, Request("POST", "/upload/a"))
    assert status(bodiless) == 200 and bodiless.body_limit == 0 and not bodiless.headers
    plain = run(engine, Request("POST", "/plain", transfer_encoding="chunked"))
    assert status(plain) == 200 and plain.body_limit is None


def test_length_required_in_shadow_mode(backend: Any) -> None:
    """In shadow mode a chunked body on a byte quota passes (uncounted, not cut): shadow mode
    never refuses."""
    engine = Engine({"shadow": True, "rules": [BYTES]}, backend=backend)
    chunked = run(engine, Request("POST", "/upload/a", transfer_encoding="chunked"))
    assert status(chunked) == 200 and chunked.body_limit is None

"""``charge`` through the engine: config, the settle step, ``ratelimit.charge`` and its holders."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import ratelimit
from ratelimit import ConfigError, Limit, MemoryBackend
from ratelimit.errors import BackendError
from ratelimit.http.drivers import local_call
from ratelimit.http.engine import Engine, Outcome
from ratelimit.http.flow import settle_flows
from ratelimit.http.policies import charges as charges_module
from ratelimit.http.policies.charges import CHARGES_KEY, MAX_CHARGE, Charges, attach
from tests.conftest import FakeClock
from tests.policies.test_policies import Request, headers, run, status

TOKENS = {
    "name": "tokens",
    "path": "/v1/**",
    "key": "header:x-api-key",
    "limit": "1000/minute",
    "algorithm": "token_bucket",
    "cost": 100,
    "charge": "response-header:x-tokens",
    "unit": "tokens",
}


class Recording(MemoryBackend):
    """The memory backend, noting every charge it is asked to land."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.charged: list[tuple[str, list[str | None], int, int]] = []
        self.fail = False

    def charge(self, key: str, limits: Sequence[Limit], delta: int, elapsed_ms: int) -> None:
        if self.fail:
            raise BackendError("down", kind="error")
        self.charged.append((key, [limit.name for limit in limits], delta, elapsed_ms))
        inner = getattr(super(), "charge", None)
        if inner is not None:
            inner(key, limits, delta, elapsed_ms)

    async def acharge(self, key: str, limits: Sequence[Limit], delta: int, elapsed_ms: int) -> None:
        self.charge(key, limits, delta, elapsed_ms)


def engine_with(*rules: Mapping[str, Any], clock: FakeClock | None = None) -> Engine:
    return Engine({"rules": list(rules)}, backend=Recording(clock=clock or FakeClock()))


def charged(engine: Engine) -> list[tuple[str, list[str | None], int, int]]:
    backend = engine.backend
    assert isinstance(backend, Recording)
    return backend.charged


def admitted(engine: Engine, key: str = "k1") -> Outcome:
    outcome = run(engine, Request("POST", "/v1/chat", x_api_key=key))
    assert status(outcome) == 200
    assert outcome.pending is not None and outcome.pending.charges is not None
    return outcome


def charges_of(outcome: Outcome) -> Charges:
    assert outcome.pending is not None and outcome.pending.charges is not None
    return outcome.pending.charges


# -- config ----------------------------------------------------------------------------------


def test_charge_config_errors_name_the_key() -> None:
    """A charge rule that cannot work is refused at load, naming the rule's key and why."""
    base = {"name": "x", "path": "/x", "limit": "100/minute", "charge": "application"}
    bad = [
        ({**base, "charge": "response-header:"}, "rules[0].charge: invalid header name"),
        ({**base, "charge": "response-header:x y"}, "rules[0].charge: invalid header name"),
        ({**base, "charge": "header:x-tokens"}, "use 'response-header:x-tokens'"),
        ({**base, "charge": "tokens"}, "rules[0].charge: must be 'response-header:<name>'"),
        ({**base, "charge": 5}, "rules[0].charge: must be"),
        ({**base, "charge": "nowhere.at.all:f"}, "rules[0].charge: invalid charge"),
        ({**base, "count": "failures"}, "rules[0].charge: not with count"),
        ({**base, "share": 10}, "rules[0].share: a charge rule"),
        (
            {"path": "/x", "limits": [{"rate": "9/s", "share": 5}], "charge": "application"},
            "rules[0].share: a charge rule",
        ),
        ({**base, "algorithm": "sliding_log"}, "rules[0].charge: not with algorithm"),
        ({**base, "algorithm": "concurrency", "limit": 2}, "rules[0].charge: not for a concur"),
        ({**base, "unit": "Tokens"}, "rules[0].unit: must be lower case"),
        ({**base, "unit": "output tokens"}, "rules[0].unit: must be an HTTP token"),
        ({**base, "unit": 3}, "rules[0].unit: must be an HTTP token"),
        ({"path": "/x", "exempt": True, "unit": "tokens"}, "rules[0].unit: an exempt rule"),
        ({"path": "/x", "exempt": True, "charge": "application"}, "rules[0].charge: an exempt"),
    ]
    for rule, expected in bad:
        with pytest.raises(ConfigError) as info:
            Engine({"rules": [rule]})
        assert expected in str(info.value), (rule, str(info.value))


def test_sliding_log_error_says_why() -> None:
    """The sliding_log refusal explains that the log has no form for a debt."""
    rule = {"path": "/x", "limit": "5/minute", "algorithm": "sliding_log", "charge": "application"}
    with pytest.raises(ConfigError, match="one entry per request and has no form for a debt"):
        Engine({"rules": [rule]})


def test_tier_limits_are_checked_too() -> None:
    """A tier's sliding_log limit is refused on a charge rule like the rule's own."""
    rule = {
        "path": "/x",
        "limit": "5/minute",
        "charge": "application",
        "tier": "header:x-plan",
        "tiers": {"pro": {"rate": "10/minute", "algorithm": "sliding_log"}},
    }
    with pytest.raises(ConfigError, match=r"rules\[0\]\.charge: not with algorithm"):
        Engine({"rules": [rule]})


def test_describe_and_policy_header_show_charge_and_unit() -> None:
    """describe() shows the charge spec and unit; RateLimit-Policy carries qu="tokens"."""
    engine = engine_with(TOKENS)
    info = engine.describe()[0]
    assert info["charge"] == "response-header:x-tokens"
    assert info["unit"] == "tokens"
    assert info["cost"] == 100
    outcome = admitted(engine)
    assert headers(outcome)[b"ratelimit-policy"] == b'"tokens";q=1000;w=60;qu="tokens"'
    assert headers(outcome)[b"ratelimit"] == b'"tokens";r=900;t=6'


def test_unit_without_charge_and_callable_describe() -> None:
    """unit works on any rule; a callable charge is described as module:name."""
    config = ratelimit.Config(
        rules=[  # type: ignore[list-item]
            {"name": "a", "path": "/a", "limit": "5/s", "unit": "rows"},
            {"name": "b", "path": "/b", "limit": "5/s", "charge": f"{__name__}:rows_charged"},
        ]
    )
    assert config.rules[0].quota_unit == "rows"
    assert config.rules[0].describe()["charge"] is None
    assert config.rules[1].describe()["charge"] == f"{__name__}:rows_charged"
    assert config.rules[1].has_policies


def rows_charged(request: Any, status: int, headers: Mapping[str, str]) -> int:
    """A charge function: the x-rows header, doubled, 0 for failures."""
    return 0 if status >= 400 else 2 * int(headers.get("x-rows", "0"))


async def async_rows(request: Any, status: int, headers: Mapping[str, str]) -> int:
    return int(headers.get("x-rows", "0"))


def test_async_charge_function_refused_by_blocking_adapters() -> None:
    """An async def charge function is refused at start-up by a blocking adapter."""
    engine = engine_with({"path": "/x", "limit": "5/s", "charge": f"{__name__}:async_rows"})
    with pytest.raises(ConfigError, match=r"rules\[0\]\.charge: an async function"):
        engine.require_sync("the WSGI middleware")


# -- settle ----------------------------------------------------------------------------------


def test_header_charges_the_difference_once_per_rule() -> None:
    """The header's value minus the reservation is charged in one call per rule; a header
    equal to the reservation charges nothing."""
    engine = engine_with(TOKENS)
    outcome = admitted(engine)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, [(b"X-Tokens", b"350")])
    assert [(c[0].endswith("k1"), c[1], c[2], c[3]) for c in charged(engine)] == [
        (True, ["tokens"], 250, 0)
    ]
    outcome = admitted(engine)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, [(b"x-tokens", b"100")])
    assert len(charged(engine)) == 1


def test_give_back_when_the_response_cost_less() -> None:
    """A response cheaper than its reservation gives the difference back (a negative delta),
    with the time since the reservation was decided."""
    clock = FakeClock()
    engine = engine_with(TOKENS, clock=clock)
    outcome = admitted(engine)
    clock.advance(1.5)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, {"x-tokens": "30"})
    assert [(c[2], c[3]) for c in charged(engine)] == [(-70, 1500)]


def test_missing_or_malformed_header_keeps_the_reservation_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No header, or not plain digits: nothing is charged (the reservation stands), and
    one warning for the rule across many requests."""
    rule = {**TOKENS, "name": "warned-once"}
    engine = engine_with(rule)
    with caplog.at_level(logging.WARNING, logger="ratelimit"):
        for value in (None, "12 tokens", "-5", "1e3", "", "٣"):
            outcome = admitted(engine)
            assert outcome.pending is not None
            pairs = [] if value is None else [("X-Tokens", value)]
            engine.settle(outcome.pending, 200, pairs)
    assert charged(engine) == []
    warnings = [r for r in caplog.records if "warned-once" in r.getMessage()]
    assert len(warnings) == 1
    assert "reservation stands" in warnings[0].getMessage()


def test_absurd_charges_are_capped() -> None:
    """A header of many digits is charged as MAX_CHARGE, not parsed as a huge number."""
    engine = engine_with(TOKENS)
    outcome = admitted(engine)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, [(b"x-tokens", b"9" * 400)])
    assert [c[2] for c in charged(engine)] == [MAX_CHARGE - 100]


def test_charge_function_gets_request_status_and_lower_case_headers() -> None:
    """A charge function is called with (request, status, headers with lower-case names)."""
    rule = {**TOKENS, "charge": f"{__name__}:rows_charged"}
    engine = engine_with(rule)
    outcome = admitted(engine)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, [(b"X-Rows", b"80")])
    outcome = admitted(engine)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 500, [(b"X-Rows", b"80")])
    assert [c[2] for c in charged(engine)] == [60, -100]


def test_charge_function_errors_propagate() -> None:
    """A charge function returning a non-int or a negative number is a TypeError."""
    for value in ("5", -1, 2.5, True, None):
        engine = engine_with({**TOKENS, "charge": lambda request, status, headers, v=value: v})
        outcome = admitted(engine)
        assert outcome.pending is not None
        with pytest.raises(TypeError, match="charge function"):
            engine.settle(outcome.pending, 200)


def test_async_charge_function_is_awaited_by_asettle() -> None:
    """asettle awaits an async def charge function."""
    engine = engine_with({**TOKENS, "charge": async_rows})
    plan = engine.plan("POST", "/v1/x")
    assert plan is not None

    async def scenario() -> None:
        outcome = await engine.arun(plan, Request("POST", "/v1/x", x_api_key="k"))
        assert outcome.pending is not None
        await engine.asettle(outcome.pending, 200, [(b"x-rows", b"120")])

    asyncio.run(scenario())
    assert [c[2] for c in charged(engine)] == [20]


def test_application_report_wins_and_adds_up() -> None:
    """ratelimit.charge() before the settle wins over the header; several calls add up."""
    engine = engine_with(TOKENS)
    outcome = admitted(engine)
    scope: dict[str, Any] = {"type": "http"}
    attach(scope, charges_of(outcome))
    ratelimit.charge(scope, 200)
    ratelimit.charge(scope, 50)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, [(b"x-tokens", b"999")])
    assert [c[2] for c in charged(engine)] == [150]


def test_application_mode_without_a_report_keeps_the_reservation() -> None:
    """charge = "application" with nothing reported: the reservation stands, no warning."""
    engine = engine_with({**TOKENS, "charge": "application"})
    outcome = admitted(engine)
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200)
    assert charged(engine) == []


def test_a_report_after_the_settle_lands_on_its_own() -> None:
    """A charge reported once the response was settled is charged at once (blocking path),
    and later ones add what they add."""
    engine = engine_with({**TOKENS, "charge": "application"})
    outcome = admitted(engine)
    environ: dict[str, Any] = {}
    attach(environ, charges_of(outcome))
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200)
    ratelimit.charge(environ, 400)
    ratelimit.charge(environ, 10)
    assert [c[2] for c in charged(engine)] == [300, 10]


def test_a_late_report_on_an_event_loop_is_a_task() -> None:
    """On a running event loop a late charge is scheduled as a task (kept until done)."""
    engine = engine_with({**TOKENS, "charge": "application"})
    plan = engine.plan("POST", "/v1/x")
    assert plan is not None

    async def scenario() -> None:
        outcome = await engine.arun(plan, Request("POST", "/v1/x", x_api_key="k"))
        scope: dict[str, Any] = {}
        attach(scope, charges_of(outcome))
        assert outcome.pending is not None
        await engine.asettle(outcome.pending, 200)
        ratelimit.charge(scope, 40)
        assert charges_module._LATE  # scheduled, held
        await asyncio.gather(*charges_module._LATE)

    asyncio.run(scenario())
    assert [c[2] for c in charged(engine)] == [-60]
    assert not charges_module._LATE


def test_cost_zero_reserves_nothing_but_still_charges() -> None:
    """A reservation of 0 (a cost function) takes nothing up front; the charge still lands."""
    engine = engine_with({**TOKENS, "cost": f"{__name__}:free"})
    outcome = run(engine, Request("POST", "/v1/x", x_api_key="k"))
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, [(b"x-tokens", b"7")])
    assert [c[2] for c in charged(engine)] == [7]


def free(request: Any) -> int:
    return 0


def test_failed_charge_is_logged_at_most_once_per_interval(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend failing at settle drops the charge (the reservation stands), logged once
    per interval however many requests fail."""
    monkeypatch.setattr(charges_module, "_last_failure", -1e9)
    engine = engine_with(TOKENS)
    backend = engine.backend
    assert isinstance(backend, Recording)
    backend.fail = True
    with caplog.at_level(logging.WARNING, logger="ratelimit"):
        for _ in range(5):
            outcome = admitted(engine)
            assert outcome.pending is not None
            engine.settle(outcome.pending, 200, [(b"x-tokens", b"500")])
    dropped = [r for r in caplog.records if "charge was dropped" in r.getMessage()]
    assert len(dropped) == 1


def test_settle_order_counts_then_charges_then_slots() -> None:
    """The settle flow counts, then charges, then gives the slots back."""
    rules = [
        {"name": "fails", "path": "/v1/**", "limit": "5/minute", "count": "failures"},
        TOKENS,
        {"name": "slots", "path": "/v1/**", "algorithm": "concurrency", "limit": 2},
    ]
    engine = engine_with(*rules)
    outcome = admitted(engine)
    assert outcome.pending is not None
    flows = settle_flows(outcome.pending, 500, [(b"x-tokens", b"101")])
    names = [call[0] for flow in flows for call in flow_calls(flow)]
    assert names == ["decide", "charge", "release"]


class ChargeFails(MemoryBackend):
    """Redis gone at settle time: every charge fails."""

    def charge(self, key: str, limits: Any, delta: int, elapsed_ms: int) -> None:
        raise BackendError("connection refused", kind="connection")


def test_a_failed_charge_still_gives_the_slots_back() -> None:
    """A backend failure while charging drops the charge (the reservation stands) but the
    concurrency slot of the same request is still given back: the next request gets it."""
    rules = [TOKENS, {"name": "slots", "path": "/v1/**", "algorithm": "concurrency", "limit": 1}]
    engine = Engine({"rules": rules}, backend=ChargeFails(clock=FakeClock()))
    for _ in range(3):
        outcome = run(engine, Request("POST", "/v1/chat", x_api_key="k1"))
        assert status(outcome) == 200
        assert outcome.pending is not None
        engine.settle(outcome.pending, 200, [(b"x-tokens", b"150")])


def flow_calls(flow: Any) -> list[Any]:
    calls = []
    try:
        call = next(flow)
        while True:
            calls.append(call)
            call = flow.send([_Allowed()] if call[0] == "decide" else None)
    except StopIteration:
        return calls


class _Allowed:
    allowed = True
    remaining = 0


def test_local_stand_in_charges_the_local_share() -> None:
    """on_error = "local": a charge made on the stand-in uses each limit's local share."""
    limit = Limit("100/minute", name="tokens")
    share = {limit: Limit("25/minute", name="tokens")}
    name, args = local_call(share, "charge", ("k", (limit,), 40, 12))
    assert name == "charge"
    assert args == ("k", (share[limit],), 40, 12)


# -- ratelimit.charge ------------------------------------------------------------------------


def test_charge_argument_errors() -> None:
    """n must be an int ≥ 0; request must be a request, a scope or an environ."""
    with pytest.raises(TypeError):
        ratelimit.charge({}, 1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ratelimit.charge({}, True)
    with pytest.raises(ValueError):
        ratelimit.charge({}, -1)
    with pytest.raises(TypeError, match="takes a request"):
        ratelimit.charge(object(), 1)


def test_charge_without_a_charge_rule_is_a_no_op() -> None:
    """A request no charge rule applies to: nothing happens."""
    ratelimit.charge({"type": "http"}, 5)
    ratelimit.charge({"REQUEST_METHOD": "GET"}, 5)


def test_charge_finds_holders_on_request_objects() -> None:
    """Request objects are searched through .scope, .META and .environ, each holder once."""
    engine = engine_with({**TOKENS, "charge": "application"})
    holder = charges_of(admitted(engine))
    place: dict[str, Any] = {}
    attach(place, holder)

    class Both:
        scope = place
        META = place

    ratelimit.charge(Both(), 3)
    assert holder.reported == 3
    assert place[CHARGES_KEY] == [holder]


# -- debts, on memory and Redis ----------------------------------------------------------------


def _debt_engine(backend: Any, algorithm: str, limit: str) -> Engine:
    rule = {**TOKENS, "limit": limit, "algorithm": algorithm, "cost": 10}
    return Engine({"rules": [rule]}, backend=backend)


@pytest.mark.parametrize(
    ("algorithm", "limit"), [("token_bucket", "60/minute"), ("fixed_window", "100/minute")]
)
def test_overspend_is_a_debt_paid_before_the_next_admission(
    backend: Any, clock: FakeClock, algorithm: str, limit: str
) -> None:
    """A response that cost far more than its reservation leaves a debt: the next request is
    rejected with a Retry-After that says when the debt is paid, and admitted then."""
    clock.set_ms(1_020_000)  # a minute's window begins: fixed windows start at 17 min
    engine = _debt_engine(backend, algorithm, limit)
    outcome = admitted(engine)
    assert outcome.pending is not None
    # token bucket: 60 - 10 - 120 = -70 tokens, refilled at 1/s: 80 s until 10 are back.
    # fixed window: 10 + 240 = 250 counted: 150 carried into the next minute, 50 into the
    # one after, where 10 more fit: 120 s.
    engine.settle(
        outcome.pending, 200, [(b"x-tokens", b"130" if "bucket" in algorithm else b"250")]
    )
    wait = 80 if algorithm == "token_bucket" else 120
    rejected = run(engine, Request("POST", "/v1/chat", x_api_key="k1"))
    assert status(rejected) == 429
    assert headers(rejected)[b"retry-after"] == str(wait).encode()
    clock.advance(wait - 0.001)
    assert status(run(engine, Request("POST", "/v1/chat", x_api_key="k1"))) == 429
    clock.advance(0.001)
    assert status(run(engine, Request("POST", "/v1/chat", x_api_key="k1"))) == 200
    assert status(run(engine, Request("POST", "/v1/chat", x_api_key="k2"))) == 200  # others


def test_give_back_frees_the_unused_reservation(backend: Any, clock: FakeClock) -> None:
    """A response cheaper than its reservation gives the unused units back at once."""
    clock.set_ms(1_020_000)
    engine = _debt_engine(backend, "fixed_window", "100/minute")
    outcome = admitted(engine)
    assert headers(outcome)[b"ratelimit"].startswith(b'"tokens";r=90;')
    assert outcome.pending is not None
    engine.settle(outcome.pending, 200, [(b"x-tokens", b"3")])
    after = admitted(engine)
    assert headers(after)[b"ratelimit"].startswith(b'"tokens";r=87;')  # 100 - 3 - 10

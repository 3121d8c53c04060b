"""Django REST framework throttles (ratelimit.contrib.drf), in process on a fake clock."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory, override_settings
from rest_framework.request import Request

from ratelimit import MemoryBackend
from ratelimit.contrib import django as rl_django
from ratelimit.contrib.django import configure
from ratelimit.contrib.drf import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle
from tests.conftest import FakeClock
from tests.http.conftest import FailingBackend

RATES = {"anon": "3/minute", "user": "5/minute", "burst": "2/minute", "tenant": "1/minute"}


@pytest.fixture(autouse=True)
def drf_settings(memory: MemoryBackend) -> Iterator[None]:
    """The DRF test views and rates, and a fresh engine on the fake-clock memory backend."""
    with override_settings(
        ROOT_URLCONF="tests.http.drf_urls", REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": RATES}
    ):
        configure({}, backend=memory)
        yield
    rl_django._engine = None


def client(addr: str = "192.0.2.10", **extra: str) -> Client:
    """A Django test client connecting from ``addr``."""
    return Client(REMOTE_ADDR=addr, **extra)


def test_anon_throttle_admits_the_rate_then_drf_429_with_our_headers() -> None:
    """AnonRateThrottle admits 3/minute, then DRF's 429; every response has our headers."""
    c = client()
    responses = [c.get("/anon") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0]["RateLimit-Policy"] == '"drf.anon";q=3;w=60'
    assert responses[0]["RateLimit"].startswith('"drf.anon";r=2;t=')
    rejected = responses[3]
    assert rejected["RateLimit-Policy"] == '"drf.anon";q=3;w=60'
    assert rejected["RateLimit"].startswith('"drf.anon";r=0;t=')
    assert rejected.json()["detail"].startswith("Request was throttled. Expected available in")
    assert int(rejected["Retry-After"]) >= 1


def test_anon_throttle_skips_authenticated_users() -> None:
    """An authenticated request is not counted by AnonRateThrottle (and gets no headers)."""
    c = client(HTTP_AUTHORIZATION="Token 7")
    responses = [c.get("/anon") for _ in range(5)]
    assert {r.status_code for r in responses} == {200}
    assert not responses[0].has_header("RateLimit")


def test_user_throttle_counts_per_user_and_per_address() -> None:
    """UserRateThrottle: a budget per user primary key, and per address for anonymous ones."""
    alice = client(HTTP_AUTHORIZATION="Token alice")
    bob = client(HTTP_AUTHORIZATION="Token bob")
    assert [alice.get("/user").status_code for _ in range(6)] == [200] * 5 + [429]
    assert bob.get("/user").status_code == 200
    assert [client("192.0.2.20").get("/user").status_code for _ in range(6)][-1] == 429
    assert client("192.0.2.21").get("/user").status_code == 200


def test_scoped_throttle_shares_a_scope_and_skips_unscoped_views() -> None:
    """Views of one throttle_scope share its counter; a view without a scope is not limited."""
    c = client()
    codes = [c.get(path).status_code for path in ("/burst", "/burst-too", "/burst")]
    assert codes == [200, 200, 429]
    assert c.get("/burst").has_header("RateLimit-Policy")
    unscoped = [c.get("/unscoped") for _ in range(4)]
    assert {r.status_code for r in unscoped} == {200}
    assert not unscoped[0].has_header("RateLimit")


def test_function_views_are_throttled_too() -> None:
    """An @api_view with @throttle_classes gets the same limit and headers."""
    c = client()
    responses = [c.get("/function", HTTP_ACCEPT="application/json") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[3]["RateLimit"].startswith('"drf.anon";r=0;')


def test_overridden_get_cache_key_is_the_identity() -> None:
    """A subclass's get_cache_key names the client: one budget per X-Tenant value."""
    c = client()
    assert c.get("/tenant", HTTP_X_TENANT="a").status_code == 200
    assert c.get("/tenant", HTTP_X_TENANT="a").status_code == 429
    assert c.get("/tenant", HTTP_X_TENANT="b").status_code == 200
    assert [c.get("/tenant").status_code for _ in range(3)] == [200] * 3  # None: not throttled


def drf_request(addr: str = "192.0.2.30", **extra: str) -> Request:
    """A DRF request for calling a throttle directly."""
    return Request(RequestFactory().get("/anon", REMOTE_ADDR=addr, **extra))


def test_wait_is_the_exact_retry_after(clock: FakeClock) -> None:
    """wait() is the decision's retry_after: a request that much later is admitted, one a
    millisecond earlier is not."""
    view = SimpleNamespace(headers={})
    for _ in range(3):
        assert AnonRateThrottle().allow_request(drf_request(), view)
    throttle = AnonRateThrottle()
    assert not throttle.allow_request(drf_request(), view)
    wait = throttle.wait()
    assert throttle.decision is not None and wait == throttle.decision.retry_after
    assert wait is not None and 0 < wait <= 60
    clock.advance(wait - 0.001)
    early = AnonRateThrottle()
    assert not early.allow_request(drf_request(), view)
    clock.advance(0.001)
    assert AnonRateThrottle().allow_request(drf_request(), view)


def test_wait_is_none_when_admitted() -> None:
    """An admitted request leaves nothing to wait for."""
    throttle = UserRateThrottle()
    assert throttle.allow_request(drf_request(), SimpleNamespace(headers={}))
    assert throttle.wait() is None


def test_trusted_proxies_name_the_client_not_num_proxies(memory: MemoryBackend) -> None:
    """Behind a trusted proxy the forwarded address is the client; from an untrusted peer
    X-Forwarded-For is ignored, so rotating it mints no budget."""
    configure({"trusted_proxies": ["10.0.0.0/8"]}, backend=memory)
    proxy = client("10.0.0.1")
    codes = [proxy.get("/anon", HTTP_X_FORWARDED_FOR="198.51.100.1").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert proxy.get("/anon", HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 200
    direct = client("192.0.2.40")
    codes = [
        direct.get("/anon", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code for i in range(4)
    ]
    assert codes == [200, 200, 200, 429]
    assert AnonRateThrottle().get_ident(
        drf_request("10.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    ) == ("1.2.3.4")


@pytest.mark.parametrize(("mode", "status"), [("allow", 200), ("deny", 503)])
def test_backend_failure_follows_on_error(mode: str, status: int) -> None:
    """A failing backend admits (allow) or answers 503 with Retry-After (deny): never a 500."""
    configure({"on_error": mode}, backend=FailingBackend())  # type: ignore[arg-type]
    response = client().get("/anon")
    assert response.status_code == status
    assert not response.has_header("RateLimit")
    if status == 503:
        assert response["Retry-After"] == "1"
        assert response.json()["detail"].startswith("The rate limiter cannot reach")


def test_backend_failure_local_decides_in_memory() -> None:
    """on_error = "local": while the backend fails, the limit holds in process memory."""
    configure({"on_error": "local"}, backend=FailingBackend())  # type: ignore[arg-type]
    c = client()
    assert [c.get("/anon").status_code for _ in range(4)] == [200, 200, 200, 429]


def test_several_throttles_join_ietf_items_and_keep_the_tightest_legacy_fields(
    memory: MemoryBackend,
) -> None:
    """Anon and user throttles on one view: both IETF items; X-RateLimit-* of the tightest."""
    configure({"headers": "both"}, backend=memory)
    response = client().get("/both")
    assert response["RateLimit-Policy"] == '"drf.anon";q=3;w=60, "drf.user";q=5;w=60'
    assert response["RateLimit"].count(";r=") == 2
    assert (response["X-RateLimit-Limit"], response["X-RateLimit-Remaining"]) == ("3", "2")


def test_rate_spellings_drf_and_ours() -> None:
    """DRF's spellings and ours parse; an unknown unit is ImproperlyConfigured."""
    throttle = ScopedRateThrottle()
    assert throttle.parse_rate("100/day") == (100, 86400)
    assert throttle.parse_rate("10/min") == (10, 60)
    assert throttle.parse_rate("5/10s") == (5, 10)
    assert throttle.parse_rate(None) == (None, None)
    with pytest.raises(ImproperlyConfigured, match="fortnight"):
        throttle.parse_rate("1/fortnight")


def test_missing_scope_rate_is_improperly_configured() -> None:
    """A scope without a rate is reported like DRF does; a rate of None disables the throttle."""
    with (
        override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {}}),
        pytest.raises(ImproperlyConfigured, match="'anon' scope"),
    ):
        AnonRateThrottle().allow_request(drf_request(), SimpleNamespace(headers={}))
    with override_settings(REST_FRAMEWORK={"DEFAULT_THROTTLE_RATES": {"anon": None}}):
        assert AnonRateThrottle().allow_request(drf_request(), SimpleNamespace(headers={}))


def test_import_without_drf_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without DRF installed, importing the module names the extra to install."""
    monkeypatch.setitem(sys.modules, "rest_framework.throttling", None)
    monkeypatch.delitem(sys.modules, "ratelimit.contrib.drf")
    with pytest.raises(ImportError, match=r"ratelimit-middleware\[drf\]"):
        importlib.import_module("ratelimit.contrib.drf")


def test_disabled_turns_the_throttles_off() -> None:
    """Under ``ratelimit.testing.disabled()`` the DRF throttles admit everything, with no
    rate-limit headers; afterwards they limit again."""
    from ratelimit.testing import disabled

    c = client("192.0.2.77")
    with disabled():
        responses = [c.get("/anon") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert all("RateLimit" not in r for r in responses)
    after = [c.get("/anon").status_code for _ in range(4)]
    assert after == [200, 200, 200, 429]

"""Django REST framework throttles deciding on the project's engine: drop-in replacements.

``settings.py``::

    REST_FRAMEWORK = {
        "DEFAULT_THROTTLE_CLASSES": [
            "ratelimit.contrib.drf.AnonRateThrottle",    # was rest_framework.throttling....
            "ratelimit.contrib.drf.UserRateThrottle",
        ],
        "DEFAULT_THROTTLE_RATES": {"anon": "100/day", "user": "1000/day", "uploads": "5/10s"},
    }
    RATELIMIT = {"backend": "redis://localhost:6379/0", "trusted_proxies": ["10.0.0.0/8"]}

The classes read the same settings as DRF's (``DEFAULT_THROTTLE_RATES`` scopes, a view's
``throttle_scope`` for :class:`ScopedRateThrottle`, a ``rate`` or ``scope`` attribute on a
subclass) and identify clients the same way (anonymous: the client address; user: the
user's primary key, else the address), but:

- they decide on the engine of :mod:`ratelimit.contrib.django` (built once per process from
  ``settings.RATELIMIT``: its backend, ``headers``, ``on_error``, ``trusted_proxies``...), in
  one atomic backend call — on Redis one Lua script, so no worker or thread can slip past
  the limit (DRF's cache throttle reads, then writes: concurrent requests all pass);
- the client address is the middleware's (``trusted_proxies``), not DRF's ``NUM_PROXIES``;
- :meth:`wait` is exact: the decision's ``retry_after``;
- every response of a throttled view carries the ``RateLimit-Policy`` / ``RateLimit`` (or
  ``X-RateLimit-*``) headers of the config's ``headers`` mode, admitted or not; the 429
  itself is DRF's (its ``Throttled`` exception, body and ``Retry-After``);
- a failing backend follows ``on_error``: ``allow`` and ``local`` admit (``local`` deciding
  in process memory), ``deny`` answers 503 (:class:`RateLimitUnavailable`), never a 500.

The headers go through DRF's own channel: a throttle adds them to the view's ``headers``
dict, which :meth:`APIView.finalize_response` copies onto whatever response the view ends
with (the view's, or the one made from an exception such as ``Throttled``).

Rates are read with :meth:`ratelimit.Rate.parse`: DRF's spellings (``"100/day"``,
``"10/min"``, ``"5/s"``) and ours (``"5/10s"``, ``"1000 per hour"``). Each scope is a rule
named ``drf.<scope>`` (its counters, and the name in the headers), counted with
``sliding_window`` unless a subclass sets ``algorithm`` (and ``burst`` for the buckets).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

try:
    from rest_framework.exceptions import APIException, PermissionDenied
    from rest_framework.settings import api_settings
    from rest_framework.throttling import BaseThrottle
except ImportError as exc:  # tested by hiding rest_framework (tests/http/test_drf.py)
    raise ImportError(
        "ratelimit.contrib.drf needs Django REST framework: pip install 'ratelimit-middleware[drf]'"
    ) from exc
from django.core.exceptions import ImproperlyConfigured

from ratelimit.contrib._decorator import decorator_rule
from ratelimit.contrib.django import DjangoRequest, get_engine
from ratelimit.decision import Decision
from ratelimit.errors import ConfigError
from ratelimit.http.engine import Outcome
from ratelimit.http.headers import UNAVAILABLE_RETRY_AFTER, HeaderPairs
from ratelimit.http.keys import KeySpec, RequestInfo
from ratelimit.http.rules import Rule
from ratelimit.rate import Rate

__all__ = [
    "AnonRateThrottle",
    "RateLimitUnavailable",
    "RateThrottle",
    "ScopedRateThrottle",
    "UserRateThrottle",
]


class RateLimitUnavailable(APIException):  # type: ignore[misc]  # DRF ships no type hints
    """The 503 of a throttle whose backend failed under ``on_error = "deny"``."""

    status_code = 503
    default_detail = "The rate limiter cannot reach its storage; try again shortly."
    default_code = "ratelimit_unavailable"
    #: DRF's exception handler turns it into ``Retry-After``.
    wait = UNAVAILABLE_RETRY_AFTER


class _DrfRequest(DjangoRequest):
    """The engine's view of a DRF request (its ``user`` is DRF's authenticated user), with
    the identity a subclass's own ``get_cache_key`` gave."""

    __slots__ = ("cache_key",)

    def __init__(self, request: Any, cache_key: str) -> None:
        super().__init__(request)
        self.cache_key = cache_key


def cache_key_identity(request: RequestInfo) -> str | None:
    """The key function of a throttle whose ``get_cache_key`` is overridden: its value."""
    return getattr(request, "cache_key", None)


@lru_cache(maxsize=256)
def _rule(name: str, rate: Rate, algorithm: str, burst: int | None, key: KeySpec) -> Rule:
    """The rule of one scope (kept: the engine caches plans by rule identity)."""
    return decorator_rule(
        _rule,
        (rate,),
        name=name,
        algorithm=algorithm,
        burst=burst,
        mode=None,
        max_delay=None,
        key=key,
        cost=1,
        methods=None,
    )


#: The header fields that are lists: several throttles' items are joined.
_LIST_FIELDS = ("ratelimit-policy", "ratelimit")
_RATE_FIELDS = frozenset({b"ratelimit-policy", b"ratelimit"})


def _rate_headers(outcome: Outcome) -> HeaderPairs:
    """The rate-limit fields of an outcome (of the 429 reply, when rejected)."""
    if outcome.reply is None:
        return outcome.headers
    return [
        (name, value)
        for name, value in outcome.reply.headers
        if name in _RATE_FIELDS or name.startswith(b"x-ratelimit-")
    ]


def _report(view: Any, headers: HeaderPairs, decision: Decision | None) -> None:
    """Add ``headers`` to the view's ``headers`` dict (DRF sets them on the response in
    ``finalize_response``). IETF items of several throttles are joined; the legacy fields
    are those of the most restrictive throttle (lowest remaining)."""
    target = getattr(view, "headers", None)
    if not headers or not isinstance(target, dict):
        return
    shown = target.get("x-ratelimit-remaining")
    legacy = decision is not None and (shown is None or decision.remaining < int(shown))
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name in _LIST_FIELDS:
            target[name] = f"{target[name]}, {value}" if name in target else value
        elif legacy:
            target[name] = value


class RateThrottle(BaseThrottle):  # type: ignore[misc]  # DRF ships no type hints
    """A DRF throttle deciding on the project's engine (the base of the three classes).

    Attributes:
        scope: the ``DEFAULT_THROTTLE_RATES`` key of the rate (and the rule name,
            ``drf.<scope>``).
        rate: the rate itself (overrides the scope's), or ``None`` for no throttling.
        THROTTLE_RATES: scope → rate; default ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``,
            read on each request (so ``override_settings`` works).
        algorithm: any of :data:`ratelimit.ALGORITHMS`; default ``sliding_window`` (no
            double burst across a window edge, constant memory).
        burst: the bucket size of ``token_bucket`` / ``leaky_bucket``.
        key: how the engine identifies clients: ``"ip"`` or ``"user"`` (the user's primary
            key when authenticated, else the address).
        decision: the last request's :class:`~ratelimit.Decision` (``None`` if not limited).
    """

    scope: str | None = None
    rate: str | None = None
    THROTTLE_RATES: Mapping[str, str | None] | None = None
    algorithm: str = "sliding_window"
    burst: int | None = None
    key: ClassVar[str] = "user"
    cache_format = "throttle_%(scope)s_%(ident)s"

    def __init__(self) -> None:
        self.decision: Decision | None = None

    def get_rate(self) -> str | None:
        """The rate of :attr:`scope` (``ImproperlyConfigured`` if there is none, as in DRF)."""
        if not self.scope:
            raise ImproperlyConfigured(
                f"You must set either `.scope` or `.rate` for '{type(self).__name__}' throttle"
            )
        rates = self.THROTTLE_RATES
        if rates is None:
            rates = api_settings.DEFAULT_THROTTLE_RATES
        try:
            return rates[self.scope]
        except KeyError:
            raise ImproperlyConfigured(
                f"No default throttle rate set for '{self.scope}' scope"
            ) from None

    def parse_rate(self, rate: str | None) -> tuple[int | None, float | None]:
        """``(requests, seconds)`` of a rate text (``(None, None)`` for ``None``)."""
        if rate is None:
            return None, None
        parsed = self._parse(rate)
        return parsed.limit, parsed.period

    def _parse(self, rate: str) -> Rate:
        try:
            return Rate.parse(rate)
        except ConfigError as exc:
            raise ImproperlyConfigured(f"throttle scope {self.scope!r}: {exc}") from None

    def get_ident(self, request: Any) -> str:
        """The client address, by the engine's rules (``trusted_proxies``, IPv6 prefix)."""
        return get_engine().identity.client_address(DjangoRequest(request))

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        """The client identity in DRF's format, or ``None``: not throttled. A subclass may
        override it (its value then is the client identity the counters use)."""
        user = getattr(request, "user", None)
        if self.key == "user" and user is not None and user.is_authenticated:
            ident = str(user.pk)
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Any, view: Any) -> bool:
        """Decide the request on the engine (one atomic backend call)."""
        self.decision = None
        rate = self.rate if self.rate is not None else self.get_rate()
        if rate is None:
            return True
        cache_key = self.get_cache_key(request, view)
        if cache_key is None:
            return True
        engine = get_engine()
        key: KeySpec = self.key if _own_cache_key(self) else cache_key_identity
        name = f"drf.{self.scope or type(self).__qualname__}"
        rule = _rule(name, self._parse(rate), self.algorithm, self.burst, key)
        outcome = engine.run(engine.plan_for_rules((rule,)), _DrfRequest(request, cache_key))
        self.decision = outcome.decision
        if outcome.kind == "error_denied":
            raise RateLimitUnavailable()
        if outcome.kind == "denied":
            raise PermissionDenied()
        _report(view, _rate_headers(outcome), outcome.decision)
        if outcome.reply is not None:
            return False
        if outcome.delay:
            time.sleep(outcome.delay)  # leaky_bucket shaping (DRF views are synchronous)
        return True

    def wait(self) -> float | None:
        """Seconds until a request would be admitted: the decision's exact ``retry_after``
        (``None`` when admitted, or when no wait will do)."""
        decision = self.decision
        if decision is None or decision.allowed or math.isinf(decision.retry_after):
            return None
        return decision.retry_after


class AnonRateThrottle(RateThrottle):
    """Anonymous requests, per client address (scope ``anon``); authenticated ones pass."""

    scope = "anon"
    key = "ip"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        """``None`` for an authenticated user, else the client address in DRF's format."""
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class UserRateThrottle(RateThrottle):
    """Per user (primary key) when authenticated, else per address (scope ``user``)."""

    scope = "user"


class ScopedRateThrottle(RateThrottle):
    """Per view scope: a view's ``throttle_scope`` names the rate, per user or address.
    Views without one are not throttled; views of one scope share its counters."""

    scope_attr = "throttle_scope"

    def allow_request(self, request: Any, view: Any) -> bool:
        """Take the scope from the view, then decide as the others do."""
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            self.decision = None
            return True
        return super().allow_request(request, view)


#: The ``get_cache_key`` methods whose identity the engine computes itself.
_OWN_KEYS = frozenset({RateThrottle.get_cache_key, AnonRateThrottle.get_cache_key})


def _own_cache_key(throttle: RateThrottle) -> bool:
    return type(throttle).get_cache_key in _OWN_KEYS

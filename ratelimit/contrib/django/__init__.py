"""Django integration: a sync-and-async middleware and a view decorator.

``settings.py``::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",   # before, for key = "user"
        "ratelimit.contrib.django.RateLimitMiddleware",
        ...,
    ]
    RATELIMIT = BASE_DIR / "ratelimit.toml"        # or a dict of the same shape

Views can carry their own limits::

    from ratelimit.contrib.django import limit

    @limit("5/minute", methods=["POST"])
    def login(request): ...

Both use one engine built from ``settings.RATELIMIT`` on first use (``configure()`` replaces
it, for example to inject a backend object or a custom 429 handler).

Django logs every 4xx response as a WARNING, and every 5xx as an ERROR (mailed to the admins
by its default config), on the ``django.request`` logger: one line per request. For the
replies this module makes (429, and the 403 / 503 of ``deny`` lists and ``on_error =
"deny"``) that would be a log line per rejected request under a flood, and a mail per request
during a Redis outage, so a filter on ``django.request`` drops the records of those replies.
Count them with the metrics and the status page instead (SPEC §7); the ``ratelimit`` logger
still reports outages once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from ratelimit.backends.base import Backend
from ratelimit.contrib._decorator import decorator_rule
from ratelimit.http.config import Config, load_config
from ratelimit.http.engine import Engine, Outcome, Pending, RejectHandler
from ratelimit.http.headers import HeaderPairs, Reply
from ratelimit.http.keys import KeySpec, RequestInfo
from ratelimit.http.policies.charges import attach
from ratelimit.limits import Limit
from ratelimit.rate import Rate

__all__ = [
    "DjangoRequest",
    "RateLimitMiddleware",
    "configure",
    "get_engine",
    "limit",
    "load_settings",
]

_engine: Engine | None = None


def configure(
    config: Config | Any = None,
    *,
    backend: Backend | None = None,
    on_reject: RejectHandler | None = None,
) -> Engine:
    """Build (or rebuild) the engine the middleware and decorators use.

    ``config`` defaults to ``settings.RATELIMIT`` (a TOML path or a dict; absent: no rules).
    """
    global _engine
    if config is None:
        config = load_settings(getattr(settings, "RATELIMIT", None))
    elif not isinstance(config, Config):
        config = load_settings(config)
    _engine = Engine(config, backend=backend, on_reject=on_reject)
    return _engine


def load_settings(source: Any) -> Config:
    """The :class:`Config` of a ``settings.RATELIMIT`` value (a TOML path, a dict or ``None``).

    Errors name ``settings.RATELIMIT`` for a dict, and the file for a TOML path.
    """
    if isinstance(source, Config):
        return source
    name = None if isinstance(source, str | os.PathLike) else "settings.RATELIMIT"
    return load_config(source, name=name)


def get_engine() -> Engine:
    """The shared engine, built from ``settings.RATELIMIT`` on first use."""
    return _engine if _engine is not None else configure()


class DjangoRequest(RequestInfo):
    """A :class:`RequestInfo` over a Django ``HttpRequest``."""

    __slots__ = ("_user",)

    def __init__(self, request: HttpRequest, user: Any = None) -> None:
        super().__init__(
            request.method or "GET", request.path_info, request.META.get("REMOTE_ADDR"), request
        )
        self._user = user

    def header(self, name: str) -> str | None:
        """``request.META["HTTP_<NAME>"]`` (``CONTENT_LENGTH`` / ``CONTENT_TYPE`` unprefixed)."""
        var = name.upper().replace("-", "_")
        if var not in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            var = "HTTP_" + var
        value: str | None = self.native.META.get(var) or None
        return value

    def user(self) -> str | None:
        """The primary key of ``request.user`` when authenticated, else ``None``."""
        user = self._user if self._user is not None else getattr(self.native, "user", None)
        if user is None or not getattr(user, "is_authenticated", False):
            return None
        return str(user.pk)

    def user_attribute(self, name: str) -> str | None:
        """Attribute ``name`` of the authenticated ``request.user`` (``tier = "user:..."``)."""
        from ratelimit.asgi import user_attribute

        user = self._user if self._user is not None else getattr(self.native, "user", None)
        return user_attribute(user, name)


#: The status of the reply this module made to a request (429, 403, 503), set on the request.
_REPLIED_ATTR = "ratelimit_replied"


class _OwnRepliesFilter(logging.Filter):
    """Drops ``django.request``'s per-request record of a reply made by this module: the
    record's status must be the one replied (an outer middleware's other answer stays logged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        replied = getattr(getattr(record, "request", None), _REPLIED_ATTR, None)
        return replied is None or replied != getattr(record, "status_code", None)


_OWN_REPLIES = _OwnRepliesFilter()


def _quiet_own_replies() -> None:
    """Install the filter on ``django.request`` (once; after Django applied ``LOGGING``)."""
    logger = logging.getLogger("django.request")
    if _OWN_REPLIES not in logger.filters:
        logger.addFilter(_OWN_REPLIES)


def to_response(reply: Reply, request: HttpRequest | None = None) -> HttpResponse:
    """The Django response of a 429 / 403 / 503 reply; ``request``, when given, is marked so
    that ``django.request`` does not log one line for it."""
    response = HttpResponse(reply.body, status=reply.status)
    add_headers(response, reply.headers)
    if request is not None:
        setattr(request, _REPLIED_ATTR, reply.status)
    return response


#: The IETF fields are lists: a view decorator's items and the middleware's are joined.
_LIST_FIELDS = frozenset({b"ratelimit", b"ratelimit-policy"})


def add_headers(response: HttpResponseBase, headers: HeaderPairs) -> None:
    """Set the engine's headers on a Django response (joining the IETF list fields)."""
    for name, value in headers:
        key, text = name.decode("latin-1"), value.decode("latin-1")
        if name in _LIST_FIELDS and response.has_header(key):
            text = f"{text}, {response[key]}"
        response[key] = text


def _finish(response: HttpResponseBase, outcome: Outcome) -> HttpResponseBase:
    if outcome.headers:
        add_headers(response, outcome.headers)
    return response


class RateLimitMiddleware:
    """Django middleware applying the rules of ``settings.RATELIMIT`` (sync and async)."""

    sync_capable = True
    async_capable = True
    #: How shaping waits, sync and async (replaceable in tests).
    sleep: Callable[[float], Any] = staticmethod(time.sleep)
    asleep: Callable[[float], Awaitable[Any]] = staticmethod(asyncio.sleep)

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.engine = get_engine()
        self.is_async = iscoroutinefunction(get_response)
        if not self.is_async:
            self.engine.require_sync("Django's sync middleware path")
        _quiet_own_replies()
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        engine = self.engine
        status = engine.status
        if status is not None and request.path_info == status.path:
            from ratelimit.metrics.status import django_reply  # never rate limited itself

            return to_response(django_reply(status, request))
        plan = engine.plan(request.method or "GET", request.path_info)
        if plan is None:
            return self.get_response(request)
        outcome = engine.run(plan, DjangoRequest(request))
        if outcome.reply is not None:
            return to_response(outcome.reply, request)
        if outcome.delay:
            self.sleep(outcome.delay)
        pending = _attach(request, outcome.pending)
        response = _finish(self.get_response(request), outcome)
        if pending is not None:
            _settle_after(response, pending, engine)
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        engine = self.engine
        status = engine.status
        if status is not None and request.path_info == status.path:
            from ratelimit.metrics.status import adjango_reply  # never rate limited itself

            return to_response(await adjango_reply(status, request))
        plan = engine.plan(request.method or "GET", request.path_info)
        if plan is None:
            response: HttpResponseBase = await self.get_response(request)
            return response
        outcome = await engine.arun(plan, await _async_info(request, engine.uses_user))
        if outcome.reply is not None:
            return to_response(outcome.reply, request)
        if outcome.delay:
            await self.asleep(outcome.delay)
        pending = _attach(request, outcome.pending)
        response = _finish(await self.get_response(request), outcome)
        if pending is not None:
            if getattr(response, "streaming", False):
                _settle_after(response, pending, engine)
            else:
                await engine.asettle(pending, response.status_code, response.items())
        return response


def _attach(request: HttpRequest, pending: Pending | None) -> Pending | None:
    """Leave ``pending``'s charges in ``request.META`` for ``ratelimit.charge(request, n)``."""
    if pending is not None and pending.charges is not None:
        attach(request.META, pending.charges)
    return pending


def _settle_after(response: HttpResponseBase, pending: Pending, engine: Engine) -> None:
    """Settle ``pending`` (count, concurrency lease, charge) once ``response`` is over: now
    for a plain response; for a streaming one when its content has been sent or abandoned."""
    status = response.status_code
    headers = response.items()
    if not getattr(response, "streaming", False):
        engine.settle(pending, status, headers)
        return
    content: Any = response.streaming_content
    if hasattr(content, "__aiter__"):

        async def astream() -> Any:
            try:
                async for chunk in content:
                    yield chunk
            finally:
                await engine.asettle(pending, status, headers)

        response.streaming_content = astream()
        return

    def stream() -> Any:
        try:
            yield from content
        finally:
            engine.settle(pending, status, headers)

    response.streaming_content = stream()


async def _async_info(request: HttpRequest, needs_user: bool) -> DjangoRequest:
    """The request info, with the user loaded without blocking when a rule needs it."""
    user = None
    if needs_user and hasattr(request, "auser"):
        user = await request.auser()
    return DjangoRequest(request, user)


def limit(
    *rates: str | Rate | Limit,
    name: str | None = None,
    algorithm: str = "fixed_window",
    burst: int | None = None,
    mode: str | None = None,
    max_delay: float | None = None,
    key: KeySpec | None = None,
    cost: int | str = 1,
    methods: Sequence[str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Limit one Django view (sync or async); its counters are its own.

    Args:
        rates: one or more rates (``"5/minute"``) or :class:`~ratelimit.Limit` objects.
        name: the rule name (default: the view's dotted name).
        algorithm, burst, mode, max_delay: as for :class:`~ratelimit.Limit`.
        key: the client identity (default: the config's ``key``).
        cost: what one request costs: a whole number, ``"content-length"`` (request body
            bytes; a body without a valid ``Content-Length`` gets 411) or ``"module:callable"``.
        methods: only these methods are limited (default: all).

    Rejections get the same 429 reply and headers as the middleware's.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        rule = decorator_rule(
            view,
            rates,
            name=name,
            algorithm=algorithm,
            burst=burst,
            mode=mode,
            max_delay=max_delay,
            key=key,
            cost=cost,
            methods=methods,
            blocking=None if iscoroutinefunction(view) else "a sync Django view",
        )
        rules = (rule,)
        _quiet_own_replies()

        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                engine = get_engine()
                plan = engine.plan_for_rules(rules)
                if not rule.matches(request.method or "GET", "/"):
                    return await view(request, *args, **kwargs)
                needs_user = engine.config.key_of(rule) == "user"
                outcome = await engine.arun(plan, await _async_info(request, needs_user))
                if outcome.reply is not None:
                    return to_response(outcome.reply, request)
                if outcome.delay:
                    await asyncio.sleep(outcome.delay)
                return _finish(await view(request, *args, **kwargs), outcome)

            return async_view

        @functools.wraps(view)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            engine = get_engine()
            plan = engine.plan_for_rules(rules)
            if not rule.matches(request.method or "GET", "/"):
                return view(request, *args, **kwargs)
            outcome = engine.run(plan, DjangoRequest(request))
            if outcome.reply is not None:
                return to_response(outcome.reply, request)
            if outcome.delay:
                time.sleep(outcome.delay)
            return _finish(view(request, *args, **kwargs), outcome)

        return sync_view

    return decorate

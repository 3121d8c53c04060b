"""Flask integration: the :class:`RateLimit` extension and the per-view :func:`limit` decorator.

::

    from flask import Flask
    from ratelimit.contrib.flask import RateLimit, limit

    app = Flask(__name__)
    app.config["RATELIMIT"] = "ratelimit.toml"      # or a dict of the same shape
    RateLimit(app)                                  # or: ext = RateLimit(); ext.init_app(app)

    @app.post("/auth/login")
    @limit("5/minute")                              # under @app.route
    def login(): ...

:class:`RateLimit` wraps ``app.wsgi_app`` in :class:`ratelimit.wsgi.RateLimitMiddleware`, so
the config's rules apply to every request before Flask sees it, and the per-view limits use
the same :class:`~ratelimit.http.engine.Engine` (backend, key, headers, ``on_error``).

A per-view limit belongs to the view, not to a URL: it runs when Flask's URL map dispatches a
request to the view's endpoint, so every spelling that reaches the view (a trailing slash, a
converter's variants, a ``SCRIPT_NAME`` mount, ``HEAD`` for a ``GET`` view, the same view
under several routes) pays into the same counters, and a spelling that Flask does not route
to the view (a redirect, a 404) never runs it. Stacked decorators are checked together, in
one atomic step. A view limited on an app without :class:`RateLimit` uses one shared
in-memory engine with the default settings.
"""

from __future__ import annotations

import functools
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flask import Flask, after_this_request, current_app, make_response, request
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from ratelimit.backends.base import Backend
from ratelimit.contrib._decorator import decorator_rule
from ratelimit.http.config import Config, load_config
from ratelimit.http.engine import Engine, Outcome, RejectHandler
from ratelimit.http.headers import Reply
from ratelimit.http.keys import KeySpec
from ratelimit.http.rules import Rule
from ratelimit.limits import Limit
from ratelimit.rate import Rate
from ratelimit.wsgi import RateLimitMiddleware, WsgiRequest, str_headers

__all__ = ["CONFIG_KEY", "EXTENSION_KEY", "RateLimit", "limit"]

#: The ``app.config`` key read by :meth:`RateLimit.init_app` when no config is given.
CONFIG_KEY = "RATELIMIT"
#: The ``app.extensions`` key under which the app's :class:`RateLimit` is stored.
EXTENSION_KEY = "ratelimit"

#: The attribute holding a view's rules (on the decorated view and on the wrapper).
_RULES_ATTR = "__ratelimit_rules__"
#: Set in the WSGI environ once a request's per-view limits were applied (stacking).
_DONE_KEY = "ratelimit.flask.view_checked"

_default: Engine | None = None


def _default_engine() -> Engine:
    global _default
    if _default is None:
        _default = Engine()
    return _default


class RateLimit:
    """The Flask extension: the config's rules for every request, plus per-view limits.

    Args:
        app: the application to set up now (else call :meth:`init_app` later, once per app).
        config: a TOML path, a dict of the same shape or a :class:`~ratelimit.Config`;
            default: ``app.config["RATELIMIT"]`` (absent: no rules, only per-view limits).
        backend: a ready backend object instead of the config's ``backend`` URL.
        on_reject: ``(request, decision) -> Reply`` replacing the 429 problem+json reply.
    """

    #: How shaping waits (replaceable in tests).
    sleep: Callable[[float], Any] = staticmethod(time.sleep)

    def __init__(
        self,
        app: Flask | None = None,
        config: Config | str | os.PathLike[str] | Mapping[str, Any] | None = None,
        *,
        backend: Backend | None = None,
        on_reject: RejectHandler | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.on_reject = on_reject
        self._engines: weakref.WeakKeyDictionary[Flask, Engine] = weakref.WeakKeyDictionary()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build the app's engine and wrap ``app.wsgi_app`` with the WSGI middleware.

        Raises :class:`~ratelimit.ConfigError` (naming the key, and the file for a TOML
        path) when the config is invalid: at start-up, not at the first request.
        """
        source = self.config if self.config is not None else app.config.get(CONFIG_KEY)
        # A dict is named after the config key in errors; a TOML path names itself.
        name = f'app.config["{CONFIG_KEY}"]' if isinstance(source, Mapping) else None
        config = load_config(source, name=name)
        engine = Engine(config, backend=self.backend, on_reject=self.on_reject)
        engine.require_sync("Flask")
        self._engines[app] = engine
        app.extensions[EXTENSION_KEY] = self
        app.wsgi_app = RateLimitMiddleware(  # type: ignore[method-assign]
            app.wsgi_app, engine=engine
        )
        app.before_request(self._misplaced_limits)

    def engine_for(self, app: Flask) -> Engine:
        """The engine serving ``app`` (``KeyError`` if :meth:`init_app` was not called)."""
        return self._engines[app]

    @property
    def engine(self) -> Engine:
        """The engine of the current app (inside a request or app context)."""
        return self.engine_for(current_app._get_current_object())  # type: ignore[attr-defined]

    def _misplaced_limits(self) -> ResponseReturnValue | None:
        """Apply limits written *above* ``@app.route``, whose wrapper Flask never calls."""
        if request.environ.get(_DONE_KEY) or request.endpoint is None:
            return None
        view = current_app.view_functions.get(request.endpoint)
        wrapper = getattr(view, "__ratelimit_wrapper__", None)
        if wrapper is None or wrapper is view:
            return None
        rules: tuple[Rule, ...] = getattr(view, _RULES_ATTR)
        response: Response | None = _apply(rules, None)
        return response


def _engine_and_sleep() -> tuple[Engine, Callable[[float], Any]]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    ext = app.extensions.get(EXTENSION_KEY)
    if isinstance(ext, RateLimit):
        return ext.engine_for(app), ext.sleep
    return _default_engine(), time.sleep


def _reply_response(reply: Reply) -> Response:
    """The Flask response of a 429 / 503 / 403 reply (Werkzeug drops the body for HEAD)."""
    return current_app.response_class(
        reply.body, status=reply.status, headers=str_headers(reply.headers)
    )


def _apply(rules: tuple[Rule, ...], call: Callable[[], Any] | None) -> Any:
    """Check ``rules`` for the current request; reply, or call the view and add the headers.

    With ``call=None`` (a ``before_request`` hook) a rejection's response is returned and
    ``None`` lets the request go on (its headers are then added after the view).
    """
    request.environ[_DONE_KEY] = True
    method = request.method
    active = tuple(rule for rule in rules if rule.matches(method, "/"))
    if not active:
        return call() if call is not None else None
    engine, sleep = _engine_and_sleep()
    info = WsgiRequest(method, request.path, request.remote_addr, request.environ)
    outcome: Outcome = engine.run(engine.plan_for_rules(active), info)
    if outcome.reply is not None:
        return _reply_response(outcome.reply)
    if outcome.delay:
        sleep(outcome.delay)
    if call is None:
        if outcome.headers:
            headers = str_headers(outcome.headers)

            def add(response: Response) -> Response:
                for name, value in headers:
                    response.headers.add(name, value)
                return response

            after_this_request(add)
        return None
    response = make_response(call())
    for name, value in str_headers(outcome.headers):
        response.headers.add(name, value)
    return response


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
    """Limit one Flask view (sync or async); its counters are its own.

    Place it under ``@app.route`` (or ``@bp.route``). Stacked ``@limit`` decorators are
    checked together, atomically: a request is admitted only if every one admits it.

    Args:
        rates: one or more rates (``"5/minute"``) or :class:`~ratelimit.Limit` objects.
        name: the rule name (default: the view's dotted name).
        algorithm, burst, mode, max_delay: as for :class:`~ratelimit.Limit`.
        key: the client identity (default: the config's ``key``; ``user`` reads
            ``REMOTE_USER``).
        cost: what one request costs: a whole number, ``"content-length"`` (request body
            bytes; a body without a valid ``Content-Length`` gets 411) or ``"module:callable"``.
        methods: only these methods are limited (default: all; ``GET`` covers ``HEAD``).

    Rejections get the same 429 problem+json reply and headers as the middleware's.
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
            blocking="Flask",
        )
        inner = getattr(view, "__ratelimit_view__", view)
        rules: tuple[Rule, ...] = (rule, *getattr(view, _RULES_ATTR, ()))

        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.environ.get(_DONE_KEY):
                return current_app.ensure_sync(inner)(*args, **kwargs)
            return _apply(rules, lambda: current_app.ensure_sync(inner)(*args, **kwargs))

        # Tag the view, what was decorated and the wrapper: whichever of them Flask
        # registered (the decorator may sit above @app.route), the hook finds every rule.
        for func in {wrapper, inner, view}:
            setattr(func, _RULES_ATTR, rules)
            setattr(func, "__ratelimit_wrapper__", wrapper)  # noqa: B010 (a dunder-like tag)
        wrapper.__ratelimit_view__ = inner  # type: ignore[attr-defined]
        return wrapper

    return decorate

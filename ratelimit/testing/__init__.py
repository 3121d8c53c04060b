"""Helpers for testing an application that uses ratelimit (SPEC §8).

::

    from ratelimit.testing import FakeClock, disabled, reset

    clock = FakeClock().install(app)       # the app's limits now run on this clock
    ...                                    # six logins: the sixth is a 429
    clock.advance(60)                      # a minute later, without sleeping
    reset(app)                             # every counter forgotten
    with disabled():                       # every limit of the process off, no headers
        ...

``app`` may be an :class:`~ratelimit.http.engine.Engine`, a backend, an ASGI or WSGI
:class:`RateLimitMiddleware`, a Starlette / FastAPI application with the middleware in its
stack, a Flask application set up with :class:`ratelimit.contrib.flask.RateLimit`, or
``django.conf.settings`` (the engine of ``settings.RATELIMIT``); ``None`` means every engine
of the process. The pytest plugin (:mod:`ratelimit.testing.pytest_plugin`, loaded by the
``ratelimit`` entry point) offers them as the fixtures ``ratelimit_clock``,
``ratelimit_disabled`` and ``ratelimit_reset``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from ratelimit.backends.memory import MemoryBackend
from ratelimit.backends.redis import RedisBackend
from ratelimit.errors import BackendError
from ratelimit.http import engine as _engine
from ratelimit.http.engine import Engine
from ratelimit.http.rejections import RejectionCache

__all__ = ["FakeClock", "disabled", "engines_of", "is_disabled", "reset"]

#: The attributes through which wrapped applications reach the application they wrap
#: (ASGI / WSGI middleware ``app``, Flask's ``wsgi_app``, Starlette's ``middleware_stack``).
_INNER = ("middleware_stack", "wsgi_app", "app")
#: How deep :func:`engines_of` walks a stack of wrapped applications.
_MAX_DEPTH = 64


class FakeClock:
    """A clock the test moves by hand: ``clock()`` returns seconds as a float.

    Pass it as ``clock=`` to a backend (``MemoryBackend(clock=clock)``,
    ``RedisBackend(..., clock=clock)``), or :meth:`install` it on a running application.
    Nothing sleeps: :meth:`advance` moves time on at once.

    Args:
        start: the time it shows first, in seconds.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._replaced: list[tuple[Any, Any]] = []

    def __call__(self) -> float:
        """The current fake time, in seconds."""
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds

    def set_ms(self, ms: int) -> None:
        """Put the clock at exactly ``ms`` milliseconds."""
        self.now = ms / 1000

    def install(self, target: Any = None) -> FakeClock:
        """Make the engines of ``target`` (see :func:`engines_of`; ``None``: every engine of
        the process) decide on this clock: their backends (memory, and Redis, which then
        uses it instead of Redis ``TIME``), their ``on_error = "local"`` stand-in and their
        rejection cache. A backend without a settable ``clock`` is a ``TypeError`` (skipped
        when ``target`` is ``None``). Undone by :meth:`uninstall`, or at the end of a
        ``with`` block::

            with FakeClock().install(app) as clock:
                ...

        Counters written on another clock are not moved: install before the requests of
        the test, or :func:`reset` after installing. Returns the clock.
        """
        for owner in _clocked(target):
            if isinstance(owner, RejectionCache):  # it times the rejections it repeats
                self._replaced.append((owner, owner._clock))
                owner._clock = self
            elif hasattr(type(owner), "clock"):
                self._replaced.append((owner, owner.clock))
                owner.clock = self
            elif target is not None:
                raise TypeError(
                    f"cannot install a clock on {owner!r}: it has no settable clock "
                    "(give the clock to the backend when building it instead)"
                )
        return self

    def uninstall(self) -> None:
        """Give back the clocks :meth:`install` replaced (most recent first)."""
        while self._replaced:
            owner, clock = self._replaced.pop()
            if isinstance(owner, RejectionCache):
                owner._clock = clock
            else:
                owner.clock = clock

    def __enter__(self) -> FakeClock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"


@contextmanager
def disabled() -> Iterator[None]:
    """Within the block, every middleware, decorator and throttle of the process admits
    every request without counting it and sends no rate-limit headers. Blocks nest, and the
    limits are back on when the outermost one ends, even by an exception. It is one switch
    for the whole process (every thread and task), checked once per request."""
    _engine.switch_off(1)
    try:
        yield
    finally:
        _engine.switch_off(-1)


def is_disabled() -> bool:
    """Whether a :func:`disabled` block is open."""
    return bool(_engine._off)


def reset(target: Any = None) -> None:
    """Forget every counter of the engines of ``target`` (see :func:`engines_of`; ``None``:
    every engine of the process): the memory backend is cleared, a Redis backend deletes
    every key under its prefix (``SCAN``, in batches), and the rejection cache and the
    ``on_error = "local"`` stand-in are emptied. Every client starts fresh.

    Raises:
        TypeError: a backend of ``target`` cannot be cleared (it has no ``clear()``).
        BackendError: Redis could not be reached.

    With ``target=None`` neither is raised: the backends that cannot be cleared (a test's
    stand-in, a Redis server gone with an earlier test) are skipped."""
    for owner in _clocked(target):
        if isinstance(owner, RejectionCache):
            owner.forget()
            continue
        clear = getattr(owner, "clear", None)
        if clear is None:
            if target is None:
                continue
            raise TypeError(f"cannot reset {owner!r}: a backend without a clear() method")
        try:
            clear()
        except BackendError:
            if target is not None:
                raise


def _is_backend(obj: Any) -> bool:
    return isinstance(obj, MemoryBackend | RedisBackend)


def _clocked(target: Any) -> list[Any]:
    """The backends and rejection caches of ``target``'s engines (each once), with
    ``target`` itself first when it is a backend."""
    owners: dict[int, Any] = {}
    if _is_backend(target):
        owners[id(target)] = target
    for engine in engines_of(target):
        for owner in (engine.backend, engine.local, engine.rejections):
            if owner is not None:
                owners.setdefault(id(owner), owner)
    return list(owners.values())


def engines_of(target: Any = None) -> list[Engine]:
    """The engines serving ``target``: an :class:`Engine`; an ASGI or WSGI
    ``RateLimitMiddleware`` (and whatever wraps one: Starlette / FastAPI applications,
    other middleware, Flask's ``wsgi_app``); a Flask application set up with
    :class:`~ratelimit.contrib.flask.RateLimit`; ``django.conf.settings`` (the engine of
    ``settings.RATELIMIT``); ``None`` for every engine of the process (the per-view
    decorators' default engines included).

    A Starlette application builds its middleware stack on its first request: this builds
    it now when it has not been built (after which no middleware can be added to it).
    """
    if target is None:
        return _engine.live_engines()
    if isinstance(target, Engine):
        return [target]
    if _is_backend(target):
        return [e for e in _engine.live_engines() if target in (e.backend, e.local)]
    if type(target).__module__.startswith("django.conf"):
        from ratelimit.contrib.django import get_engine

        return [get_engine()]
    found: list[Engine] = []
    _walk(target, found, set(), 0)
    return found


def _walk(obj: Any, found: list[Engine], seen: set[int], depth: int) -> None:
    if obj is None or id(obj) in seen or depth > _MAX_DEPTH:
        return
    seen.add(id(obj))
    attrs = getattr(obj, "__dict__", {})
    engine = attrs.get("engine")
    if isinstance(engine, Engine) and engine not in found:
        found.append(engine)
    extensions = attrs.get("extensions")
    if isinstance(extensions, dict):  # a Flask application
        ext = extensions.get("ratelimit")
        engines = getattr(ext, "_engines", None)
        if engines is not None and obj in engines and engines[obj] not in found:
            found.append(engines[obj])
    if attrs.get("middleware_stack", False) is None and hasattr(obj, "build_middleware_stack"):
        obj.middleware_stack = obj.build_middleware_stack()  # Starlette: built on first call
    for name in _INNER:
        inner = getattr(obj, "__dict__", {}).get(name)
        if inner is not None:
            _walk(inner, found, seen, depth + 1)

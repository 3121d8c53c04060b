"""Django system checks for ``settings.RATELIMIT``, run by ``manage.py check`` (and runserver).

They are registered, under the tag ``ratelimit``, when ``"ratelimit.contrib.django"`` is in
``INSTALLED_APPS`` (see :class:`ratelimit.contrib.django.apps.RateLimitConfig`):

=================== ======================================================================
``ratelimit.E001``  ``settings.RATELIMIT`` is not a valid config: the loader's message,
                    naming the key (and the file, for a TOML path).
``ratelimit.E002``  ``settings.RATELIMIT`` has rules but ``RateLimitMiddleware`` is not in
                    ``MIDDLEWARE``: the rules would never apply.
``ratelimit.E003``  ``RateLimitMiddleware`` is in ``MIDDLEWARE`` more than once: every
                    request would be counted twice.
``ratelimit.W001``  the ``memory://`` backend while several worker processes are configured
                    (``WEB_CONCURRENCY``, ``GUNICORN_CMD_ARGS`` ``--workers``,
                    ``UVICORN_WORKERS``): each process counts on its own.
``ratelimit.W002``  a rule keyed by ``user`` while ``RateLimitMiddleware`` comes before
                    ``AuthenticationMiddleware`` (or that one is missing): every client is
                    then counted by address.
=================== ======================================================================

Silence one with ``SILENCED_SYSTEM_CHECKS = ["ratelimit.W001"]``; run only these with
``manage.py check --tag ratelimit``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.utils.module_loading import import_string

from ratelimit.backends import MemoryBackend, validate_url
from ratelimit.contrib import django as contrib
from ratelimit.contrib.django import RateLimitMiddleware, load_settings
from ratelimit.errors import ConfigError
from ratelimit.http.config import Config

__all__ = ["TAG", "check_settings", "worker_count"]

#: The check tag: ``manage.py check --tag ratelimit``.
TAG = "ratelimit"

_MIDDLEWARE = "ratelimit.contrib.django.RateLimitMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def worker_count(environ: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """The number of worker processes the environment configures, and where it says so.

    Reads ``GUNICORN_CMD_ARGS`` (``-w N``, ``--workers N``, ``--workers=N``),
    ``WEB_CONCURRENCY`` (gunicorn's default, and Heroku's) and ``UVICORN_WORKERS``; ``None``
    when none of them is set to a whole number.
    """
    env = os.environ if environ is None else environ
    found: tuple[int, str] | None = None
    for name in ("WEB_CONCURRENCY", "UVICORN_WORKERS"):
        text = env.get(name, "").strip()
        if text.isdigit():
            found = (int(text), f"{name}={text}")
            break
    args = env.get("GUNICORN_CMD_ARGS", "")
    try:
        words = shlex.split(args)
    except ValueError:  # an unclosed quote: gunicorn would refuse it anyway
        words = []
    for i, word in enumerate(words):  # gunicorn's command line wins over WEB_CONCURRENCY
        value = None
        if word in ("-w", "--workers") and i + 1 < len(words):
            value = words[i + 1]
        elif word.startswith("--workers="):
            value = word.partition("=")[2]
        elif word.startswith("-w") and word[2:].isdigit():
            value = word[2:]
        if value is not None and value.isdigit():
            found = (int(value), f"GUNICORN_CMD_ARGS={args!r}")
    return found


def _middleware_positions(middleware: Sequence[str]) -> tuple[list[int], int | None]:
    """Indexes of the rate-limit middleware (subclasses included) and of Django's auth one."""
    ours: list[int] = []
    auth = None
    for index, path in enumerate(middleware):
        if path == _AUTH_MIDDLEWARE:
            auth = index
            continue
        if path == _MIDDLEWARE:
            ours.append(index)
            continue
        try:
            cls = import_string(path)
        except ImportError:  # Django's own checks and start-up report a bad path
            continue
        if isinstance(cls, type) and issubclass(cls, RateLimitMiddleware):
            ours.append(index)
    return ours, auth


def _engine_backend_is_memory() -> bool:
    """Whether the engine the middleware will use keeps its counters in process memory."""
    engine = contrib._engine
    if engine is not None:  # configure() was called: its backend is the one that counts
        return isinstance(engine.backend, MemoryBackend)
    return True


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Check ``settings.RATELIMIT`` and the middleware set-up (see the module docstring)."""
    messages: list[CheckMessage] = []
    source = getattr(settings, "RATELIMIT", None)
    try:
        config: Config = load_settings(source)
        validate_url(config.backend)
    except ConfigError as exc:
        return [
            Error(
                f"settings.RATELIMIT is not valid: {exc}",
                hint="Fix the key named above; see docs/django.md for the settings.",
                obj="settings.RATELIMIT",
                id="ratelimit.E001",
            )
        ]
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours, auth = _middleware_positions(middleware)
    rules = [rule for rule in config.rules if not rule.exempt]
    if rules and not ours:
        messages.append(
            Error(
                f"settings.RATELIMIT has {len(rules)} rule(s) but {_MIDDLEWARE} is not in "
                "settings.MIDDLEWARE: they would never apply.",
                hint=f"Add {_MIDDLEWARE!r} to MIDDLEWARE, after AuthenticationMiddleware.",
                obj="settings.MIDDLEWARE",
                id="ratelimit.E002",
            )
        )
    if len(ours) > 1:
        messages.append(
            Error(
                f"{_MIDDLEWARE} is in settings.MIDDLEWARE {len(ours)} times "
                f"(positions {', '.join(map(str, ours))}): every request would be counted "
                "once per entry.",
                hint="Keep one entry.",
                obj="settings.MIDDLEWARE",
                id="ratelimit.E003",
            )
        )
    workers = worker_count()
    if (
        config.backend.lower().startswith("memory://")
        and workers is not None
        and workers[0] > 1
        and _engine_backend_is_memory()
    ):
        count, where = workers
        messages.append(
            Warning(
                f"settings.RATELIMIT uses the memory:// backend but {count} worker processes "
                f"are configured ({where}): each process counts on its own, so a client can "
                f"get up to {count} times every limit.",
                hint='Use a shared backend, e.g. backend = "redis://localhost:6379/0", '
                "or run one worker.",
                obj="settings.RATELIMIT",
                id="ratelimit.W001",
            )
        )
    user_rules = [rule.name for rule in rules if config.key_of(rule) == "user"]
    if user_rules and ours and (auth is None or auth > ours[0]):
        where = "is not in MIDDLEWARE" if auth is None else "comes after RateLimitMiddleware"
        messages.append(
            Warning(
                f"rule(s) {', '.join(map(repr, user_rules))} count by user, but "
                f"AuthenticationMiddleware {where}: request.user is not known when the "
                "limit is checked, so every client is counted by address.",
                hint=f"Put {_MIDDLEWARE!r} after {_AUTH_MIDDLEWARE!r}.",
                obj="settings.MIDDLEWARE",
                id="ratelimit.W002",
            )
        )
    return messages

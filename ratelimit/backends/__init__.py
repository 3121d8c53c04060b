"""Storage backends, :func:`backend_from_url` and :func:`validate_url`."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ratelimit.backends.base import Backend
from ratelimit.backends.memory import MemoryBackend
from ratelimit.backends.redis_url import REDIS_SCHEMES, parse_redis_url, parse_timeout, redact
from ratelimit.errors import BackendError, ConfigError

log = logging.getLogger("ratelimit")

__all__ = ["Backend", "MemoryBackend", "backend_from_url", "check_backend", "validate_url"]

_SCHEMES = (
    "memory://, redis://, rediss://, unix://, redis+cluster://, redis+sentinel:// "
    "or their Valkey names valkey://, valkeys://, valkey+cluster://, valkey+sentinel://"
)


def _scheme(url: object) -> str:
    if not isinstance(url, str):
        raise ConfigError(f"invalid backend URL {url!r}: expected text such as 'memory://'")
    scheme, sep, _ = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"invalid backend URL {redact(url)!r}: expected scheme://..., one of {_SCHEMES}"
        )
    return scheme.lower()


def _memory_options(url: str) -> dict[str, Any]:
    """``memory://[?max_keys=N][&timeout=S]`` → MemoryBackend options (timeout is unused:
    memory never waits, but the option is accepted like on every backend)."""
    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/") or parts.fragment:
        raise ConfigError(
            f"invalid backend URL {url!r}: memory:// takes no host or path, only ?max_keys=N"
        )
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for name, text in parse_qsl(parts.query, keep_blank_values=True):
        if name in seen:
            raise ConfigError(f"invalid backend URL {url!r}: option {name!r} is given twice")
        seen.add(name)
        if name == "max_keys":
            if not text.isascii() or not text.isdigit() or int(text) < 1:
                raise ConfigError(
                    f"invalid backend URL {url!r}: max_keys must be a whole number ≥ 1, "
                    f"got {text!r}"
                )
            out["max_keys"] = int(text)
        elif name == "timeout":
            parse_timeout(url, text)
        else:
            raise ConfigError(
                f"invalid backend URL {url!r}: unknown option {name!r} "
                "(memory:// takes max_keys and timeout)"
            )
    if parts.query and not seen:
        raise ConfigError(f"invalid backend URL {url!r}: cannot read the query {parts.query!r}")
    return out


def validate_url(url: str) -> None:
    """Raise :class:`~ratelimit.ConfigError` unless :func:`backend_from_url` accepts ``url``.

    Checks everything that can be checked without connecting: the scheme, hosts and ports
    (1..65535), the database number, the Sentinel service name, and every query option
    (``?timeout=`` a positive number of seconds, ``memory://?max_keys=`` at least 1, no
    unknown options). The message names the URL (its password hidden) and what is wrong,
    with no prefix, so that a config loader can say where the URL came from. Needs no
    ``redis`` package: a Redis URL that passes still needs the ``redis`` extra to be used.
    """
    scheme = _scheme(url)
    if scheme == "memory":
        _memory_options(url)
    elif scheme in REDIS_SCHEMES:
        parse_redis_url(url)
    else:
        raise ConfigError(
            f"invalid backend URL {redact(url)!r}: unknown scheme {scheme!r} (use {_SCHEMES})"
        )


def backend_from_url(url: str, *, timeout: float | None = None, **options: Any) -> Backend:
    """Build a backend from a URL (checked first by :func:`validate_url`).

    ``memory://`` (optionally ``?max_keys=N``) gives a :class:`MemoryBackend`;
    ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` and ``redis+sentinel://``
    give a :class:`~ratelimit.RedisBackend` (needs the ``redis`` extra), and so do their
    Valkey names ``valkey://``, ``valkeys://``, ``valkey+cluster://`` and
    ``valkey+sentinel://`` (Valkey speaks the Redis protocol; redis-py is the client).
    ``timeout`` bounds each decision's wait on the backend, connecting included: when
    ``None``, the URL's ``?timeout=``, else 0.1 s (memory never waits). Other keyword
    options go to the backend. Raises :class:`~ratelimit.ConfigError` naming the URL for
    anything it cannot use.
    """
    validate_url(url)
    scheme = _scheme(url)
    if scheme == "memory":
        for name, value in _memory_options(url).items():
            options.setdefault(name, value)
        return MemoryBackend(**options)
    try:
        from ratelimit.backends.redis import RedisBackend
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            f"backend URL {redact(url)!r} needs the redis extra: "
            "pip install 'ratelimit-middleware[redis]'"
        ) from exc
    backend: Backend = RedisBackend.from_url(url, timeout=timeout, **options)
    return backend


def check_backend(backend: Backend) -> None:
    """Run ``backend.check()`` if it has one (Redis: it answers and runs Lua scripts).

    A :class:`~ratelimit.ConfigError` (a server that cannot run Lua scripts) propagates: the
    middleware cannot work with that backend. A :class:`~ratelimit.BackendError` (the server
    does not answer yet) is logged at INFO and passes: an app starts while its Redis is down.
    """
    check = getattr(backend, "check", None)
    if check is None:
        return
    try:
        check()
    except BackendError as exc:
        log.info("backend not checked at start-up (%s); decisions will tell", exc)

"""Storage backends and :func:`backend_from_url`."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from ratelimit.backends.base import Backend
from ratelimit.backends.memory import MemoryBackend
from ratelimit.errors import ConfigError

__all__ = ["Backend", "MemoryBackend", "backend_from_url"]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "redis+sentinel")


def backend_from_url(url: str, **options: Any) -> Backend:
    """Build a backend from a URL.

    ``memory://`` (optionally ``memory://?max_keys=N``) gives a :class:`MemoryBackend`;
    ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://`` and ``redis+sentinel://``
    give a ``RedisBackend`` (needs the ``redis`` extra). Keyword options are passed on to the
    backend. Raises :class:`~ratelimit.ConfigError` naming the URL for anything else.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"invalid backend URL {url!r}: expected memory:// or redis://host:port")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        query = parse_qs(parts.query)
        unknown = set(query) - {"max_keys"}
        if unknown or parts.netloc or parts.path not in ("", "/"):
            raise ConfigError(f"invalid backend URL {url!r}: memory:// takes only ?max_keys=N")
        if "max_keys" in query:
            text = query["max_keys"][-1]
            if not text.isascii() or not text.isdigit():
                raise ConfigError(f"invalid backend URL {url!r}: max_keys must be a number")
            options.setdefault("max_keys", int(text))
        return MemoryBackend(**options)
    if scheme in _REDIS_SCHEMES:
        try:
            from ratelimit.backends.redis import RedisBackend
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError(
                f"backend URL {url!r} needs the redis extra: "
                "pip install 'ratelimit-middleware[redis]'"
            ) from exc
        backend: Backend = RedisBackend.from_url(url, **options)
        return backend
    raise ConfigError(
        f"invalid backend URL {url!r}: unknown scheme {parts.scheme!r} "
        f"(use memory://, redis://, rediss://, unix://, redis+cluster:// or redis+sentinel://)"
    )

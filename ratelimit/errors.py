"""Exceptions raised by ratelimit.

The tree::

    RateLimitError                 base of everything this package raises on purpose
    ├── ConfigError (ValueError)   bad rate text, limit, config key or file: raised at start-up
    └── BackendError               the storage (Redis, ...) failed or timed out
"""

from __future__ import annotations

__all__ = ["BackendError", "ConfigError", "RateLimitError"]


class RateLimitError(Exception):
    """Base class of every exception this package raises on purpose."""


class ConfigError(RateLimitError, ValueError):
    """Invalid configuration: a rate, a limit, a config key or a config file.

    The message names what is wrong and where (the rate text, the config key, the file
    and rule index), so that it can be fixed without reading a traceback.
    """


class BackendError(RateLimitError):
    """The storage backend failed (connection refused, timeout, script error, ...).

    The HTTP middleware turns it into its ``on_error`` mode (fail open or 503), never a 500.
    :attr:`kind` says what failed, as a short label for metrics and logs.
    """

    #: What failed: ``"connection"``, ``"timeout"``, ``"oom"``, ``"readonly"``,
    #: ``"busy"``, ``"cluster"``, ``"loading"``, ``"script"`` (the script failed, say on a
    #: key of the wrong type), ``"circuit_open"`` (failing fast, the backend was not asked)
    #: or ``"other"``.
    kind: str

    def __init__(self, *args: object, kind: str = "other") -> None:
        super().__init__(*args)
        self.kind = kind

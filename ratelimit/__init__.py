"""ratelimit-middleware: exact, fast rate limiting for Python web applications.

The public API::

    from ratelimit import Limit, Limiter, MemoryBackend

    limiter = Limiter(MemoryBackend())
    decision = limiter.hit("203.0.113.7", Limit("10/second", algorithm="token_bucket", burst=20))
    if not decision.allowed:
        ...  # answer 429, Retry-After: ceil(decision.retry_after)

    ratelimit.charge(request, n)   # a request on a ``charge`` rule cost n units (SPEC §5)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ratelimit.algorithms import ALGORITHMS
from ratelimit.backends import Backend, MemoryBackend, backend_from_url
from ratelimit.decision import Decision
from ratelimit.errors import BackendError, ConfigError, RateLimitError
from ratelimit.http import observing
from ratelimit.http.config import Config
from ratelimit.http.policies.charges import charge
from ratelimit.limiter import Lease, Limiter
from ratelimit.limits import Limit
from ratelimit.metrics.hooks import Hooks
from ratelimit.rate import Rate

# The composition root: the engine (http/) is observed by the metrics package, which builds
# on it; neither imports the other the wrong way round.
observing.install(Hooks())

if TYPE_CHECKING:
    from ratelimit.backends.redis import RedisBackend

try:
    __version__ = version("ratelimit-middleware")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "ALGORITHMS",
    "Backend",
    "BackendError",
    "Config",
    "ConfigError",
    "Decision",
    "Lease",
    "Limit",
    "Limiter",
    "MemoryBackend",
    "Rate",
    "RateLimitError",
    "RedisBackend",
    "__version__",
    "backend_from_url",
    "charge",
]


def __getattr__(name: str) -> Any:
    # RedisBackend imports redis-py: only when asked for, so the core needs no dependency.
    if name == "RedisBackend":
        from ratelimit.backends.redis import RedisBackend

        return RedisBackend
    raise AttributeError(f"module 'ratelimit' has no attribute {name!r}")

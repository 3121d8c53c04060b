"""The framework-free HTTP layer: config, rules, client identity, headers and the engine.

Adapters: :mod:`ratelimit.asgi`, :mod:`ratelimit.wsgi`, :mod:`ratelimit.contrib.django`,
:mod:`ratelimit.contrib.starlette`.
"""

from __future__ import annotations

from ratelimit.http.config import Config, load_config
from ratelimit.http.engine import Engine, Outcome
from ratelimit.http.headers import Reply
from ratelimit.http.keys import ClientIdentity, RequestInfo
from ratelimit.http.rules import Rule

__all__ = [
    "ClientIdentity",
    "Config",
    "Engine",
    "Outcome",
    "Reply",
    "RequestInfo",
    "Rule",
    "load_config",
]

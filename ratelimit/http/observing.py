"""How the engine is observed, without knowing by what: the seam between ``http/`` and
``metrics/``.

The engine records each decided request on its :class:`Observer` (``None``: nothing runs)
and asks its :data:`hooks` for one when ``[metrics]`` enables something, and for the top
rejected clients. The hooks are installed by the package (``ratelimit/__init__.py``) from
:mod:`ratelimit.metrics.hooks`: ``http/`` never imports ``metrics/``, which builds on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ratelimit.http.keys import RequestInfo
    from ratelimit.http.outcome import Outcome
    from ratelimit.http.plan import Plan

__all__ = ["MetricsHooks", "Observer", "TopList", "hooks", "install"]

#: ``(rule_name, identity, rejections)`` tuples, most rejected first.
TopList = list[tuple[str, str, int]]


class Observer(Protocol):
    """Records decided requests (metrics, the status page, top offenders)."""

    def observe(self, plan: Plan, request: RequestInfo, outcome: Outcome, seconds: float) -> None:
        """Record one decided request, decided in ``seconds``."""


class MetricsHooks(Protocol):
    """What the engine asks of the metrics package."""

    def attach(self, engine: Any) -> None:
        """Give ``engine`` its observer (and status page) for ``engine.config.metrics``."""

    def top(self, engine: Any, rule: str | None, n: int) -> TopList:
        """The clients ``engine``'s rules rejected most."""

    async def atop(self, engine: Any, rule: str | None, n: int) -> TopList:
        """:meth:`top` for asyncio code."""


#: The installed hooks (see the module docstring).
hooks: MetricsHooks | None = None


def install(new: MetricsHooks) -> None:
    """Install the metrics hooks (done once by the package)."""
    global hooks
    hooks = new

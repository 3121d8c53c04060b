"""The metrics package's side of :mod:`ratelimit.http.observing`: builds an engine's observer
and answers its top-offenders questions. Nothing heavy is imported until an engine enables
some ``[metrics]`` option or asks for the top list."""

from __future__ import annotations

from typing import Any

from ratelimit.http.observing import TopList

__all__ = ["Hooks"]


class Hooks:
    """:class:`ratelimit.http.observing.MetricsHooks`, lazily."""

    def attach(self, engine: Any) -> None:
        """``engine.observer`` (and ``engine.status``) for its ``[metrics]`` table."""
        if engine.config.metrics_enabled():
            from ratelimit.metrics.observer import build_observer

            engine.observer = build_observer(engine)

    def top(self, engine: Any, rule: str | None, n: int) -> TopList:
        """See :meth:`Engine.top <ratelimit.http.engine.Engine.top>`."""
        from ratelimit.metrics.observer import engine_top

        return engine_top(engine, rule, n)

    async def atop(self, engine: Any, rule: str | None, n: int) -> TopList:
        """See :meth:`Engine.atop <ratelimit.http.engine.Engine.atop>`."""
        from ratelimit.metrics.observer import engine_atop

        return await engine_atop(engine, rule, n)

"""The request-handling engine shared by every adapter (ASGI, WSGI, Django, the decorators).

The data path, top to bottom::

    method, path ──► plan      the matching rules, grouped (plan.py; cached)
    request      ──► flow      screen, resolve, gates, ONE atomic decide, hold (flow.py,
                               one module per policy in policies/)
                 ──► Outcome   pass (+ headers, + shaping delay) | 429 | 403 | 411 | 503
    response     ──► settle    counts, charges, slots (flow.settle_flows)

The logic is written once, as generators that yield the backend calls they need; the engine
runs them with one of two drivers (:mod:`ratelimit.http.drivers`): the blocking backend API
(:meth:`Engine.run`) or the asyncio one (:meth:`Engine.arun`). The delay wait is left to the
adapter (``time.sleep`` or ``asyncio.sleep``).

Only :class:`~ratelimit.BackendError` is a backend failure: it takes the ``on_error`` path
(``allow``, ``deny`` or ``local``) — except ``kind="overload"`` (this process was too busy to
decide in time, Redis not blamed), which is shed with a 503 whatever ``on_error`` says: a
flood must never be a reason to admit. Anything else raised while deciding — a key or cost
function of the user's, a bug of ours — propagates, so it is a 500 from the framework and
not a silent fail-open.

A backend built from the config's URL is checked once (``check_backend``): a server that
cannot run Lua scripts raises :class:`~ratelimit.ConfigError`, so the app does not start;
one that does not answer yet takes the ``on_error`` path until it answers.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ratelimit.backends import MemoryBackend, backend_from_url, check_backend
from ratelimit.backends.base import Backend
from ratelimit.errors import BackendError, ConfigError
from ratelimit.http import observing
from ratelimit.http.config import Config, async_settings, load_config
from ratelimit.http.drivers import adrive, drive
from ratelimit.http.flow import decision_flow, settle_flows
from ratelimit.http.keys import ClientIdentity, RequestInfo
from ratelimit.http.keys import refuse_async as _refuse_async
from ratelimit.http.observing import Observer, TopList
from ratelimit.http.outcome import OUTCOME_KINDS, PASS, Outcome, Pending, RejectHandler, Verdicts
from ratelimit.http.plan import LimitBook, Plan, Planner
from ratelimit.http.policies.charges import Headers
from ratelimit.http.rejections import RejectionCache, rejection_cache
from ratelimit.http.reload import ConfigWatch

__all__ = ["OUTCOME_KINDS", "Engine", "Outcome", "Pending", "Plan", "RejectHandler"]

log = logging.getLogger("ratelimit")

#: Every engine of the process, for :mod:`ratelimit.testing` (weakly: never kept alive).
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()
#: How many :func:`ratelimit.testing.disabled` blocks are open in the process: while this is
#: not 0, :meth:`Engine.run` and :meth:`Engine.arun` admit every request, with no headers.
_off = 0
_off_lock = threading.Lock()


def switch_off(delta: int) -> None:
    """Open (``+1``) or close (``-1``) one :func:`ratelimit.testing.disabled` block."""
    global _off
    with _off_lock:
        _off += delta


def live_engines() -> list[Engine]:
    """Every engine of the process still in use (middlewares, decorators' engines)."""
    return list(_ENGINES)


class Engine:
    """Rules + backend → outcomes. One per middleware instance; safe to share.

    Args:
        config: a :class:`Config`, a TOML path or a dict (see :func:`load_config`).
        backend: a ready backend object; default: built from ``config.backend`` (with
            ``config.timeout``).
        on_reject: replaces the default 429 problem+json reply.
    """

    def __init__(
        self,
        config: Config | Any = None,
        *,
        backend: Backend | None = None,
        on_reject: RejectHandler | None = None,
    ) -> None:
        cfg = load_config(config)
        if backend is None:
            backend = backend_from_url(cfg.backend, timeout=cfg.timeout)
            check_backend(backend)
        self.backend: Backend = backend
        self.on_reject = on_reject
        #: Several groups go in one atomic ``decide_each`` call where the backend can join
        #: different clients' keys (see :mod:`ratelimit.http.flow`).
        self.atomic_each = hasattr(self.backend, "decide_each") and getattr(
            self.backend, "atomic_across_keys", True
        )
        #: ``on_error = "local"``: the process-local stand-in while the backend fails.
        self.local: MemoryBackend | None = MemoryBackend() if cfg.on_error == "local" else None
        #: Rejections of a remote backend answered locally while they hold (see
        #: :mod:`ratelimit.http.rejections`); none for the memory backend, which answers
        #: as fast itself. Paid for by the "Redis, every request rejected" variant of
        #: ``python -m benchmarks.http``.
        self.rejections: RejectionCache | None = rejection_cache(self.backend)
        _ENGINES.add(self)
        #: The blocking adapter this engine serves, once :meth:`require_sync` was called.
        self._sync_adapter: str | None = None
        self._apply(cfg)
        #: ``reload = true``: the file watched, and when to look at it next.
        self._watch: ConfigWatch | None = None
        if cfg.reload:
            self._watch = ConfigWatch(cfg.source, self.reload)
        #: Records every decided request (metrics, status page); ``None``: nothing runs.
        self.observer: Observer | None = None
        #: The status page (``[metrics] status_path``), answered by the adapters; ``None``: off.
        self.status: Any = None
        if cfg.metrics_enabled() and observing.hooks is not None:
            observing.hooks.attach(self)

    def _apply(self, cfg: Config) -> None:
        """Take ``cfg``'s rules and settings (at start-up, and on each reload). Each piece is
        one attribute assignment, so a request in flight sees the old or the new rules."""
        self.identity = ClientIdentity(cfg.trusted_proxies, cfg.ipv6_prefix, cfg.proxy_header)
        self.headers_mode = cfg.headers
        self.shadow = cfg.shadow
        self.deny_on_error = cfg.on_error == "deny"
        #: Top-level allow/deny lists: every request is screened (never cached away).
        self.screening = bool(cfg.allow or cfg.deny)
        self.book = LimitBook(cfg.local_fraction if self.local is not None else None)
        self.planner = Planner(cfg.rules, cfg.key, self.identity, self.book, self.screening)
        self.verdicts = Verdicts(
            cfg.headers,
            self.book.labels,
            self.book.gate_ids,
            cfg.shadow,
            self.deny_on_error,
            self.on_reject,
        )
        self.rules = cfg.rules
        #: Whether some rule identifies clients by user (async adapters then load the user).
        self.uses_user = any(cfg.key_of(rule) == "user" for rule in cfg.rules)
        #: The settings naming ``async def`` functions (``"<source>: rules[0].key"``, ...).
        self.async_settings = async_settings(cfg, self.identity)
        self.config: Config = cfg
        self.loaded_at = time.time()

    def require_sync(self, adapter: str) -> None:
        """Refuse ``async def`` key, tier and cost functions for a blocking ``adapter`` (WSGI,
        Flask, Django's sync path), at start-up: it decides in a worker thread, where there
        is no event loop to await them. Also checked on every config reload from then on.

        Raises:
            ConfigError: naming the first such setting and saying why.
        """
        self._sync_adapter = adapter
        _refuse_async(self.async_settings, adapter)

    def reload(self) -> bool:
        """Read the config file again and take its rules (``reload = true`` calls this when
        the file changes). A file that does not load keeps the current rules; the error is
        logged once per change of the file. Counters of rules that did not change survive,
        since they are keyed by rule name and limit. Returns whether new rules were taken."""
        source = self.config.source
        try:
            cfg = load_config(source)
            if self._sync_adapter is not None:
                _refuse_async(async_settings(cfg, self.identity), self._sync_adapter)
        except ConfigError as exc:
            log.error("config reload failed, keeping the rules loaded before: %s", exc)
            return False
        if cfg.backend != self.config.backend or cfg.on_error != self.config.on_error:
            log.warning(
                "config reload: backend and on_error changes need a restart; the new rules "
                "are taken with the backend %s",
                self.config.backend,
            )
            cfg = replace(cfg, backend=self.config.backend, on_error=self.config.on_error)
        self._apply(cfg)
        end_shares = getattr(self.backend, "end_shares", None)
        if end_shares is not None:  # held units go back; the new rules take new shares
            end_shares()
        log.info("config reloaded from %s: %d rules", source, len(cfg.rules))
        return True

    # -- plans ------------------------------------------------------------------------------

    def plan(self, method: str, path: str) -> Plan | None:
        """The plan for a request, or ``None`` when no rule applies (``method`` in any case;
        ``path`` as the application routes on it, below its mount point)."""
        watch = self._watch
        if watch is not None:
            watch.check()
        return self.planner.plan(method, path)

    def plan_for_rules(self, rules: tuple[Any, ...]) -> Plan:
        """The plan checking ``rules`` together (the decorators' rules)."""
        return self.planner.plan_for_rules(rules)

    @property
    def _plans(self) -> dict[tuple[str, str], Plan | None]:
        """The plan cache (bounded; see :mod:`ratelimit.http.plan`)."""
        return self.planner._plans

    # -- deciding ---------------------------------------------------------------------------

    def run(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Decide ``request`` with the blocking backend API."""
        if _off:  # ratelimit.testing.disabled(): admitted, undecided, no headers
            return PASS
        start = time.perf_counter() if self.observer is not None else 0.0
        flow = decision_flow(self, plan, request)
        outcome, local, failed = drive(flow, self.backend, self.local, self.book.local)
        return self._finish(plan, request, outcome, local, failed, start)

    async def arun(self, plan: Plan, request: RequestInfo) -> Outcome:
        """Decide ``request`` with the asyncio backend API."""
        if _off:  # ratelimit.testing.disabled(): admitted, undecided, no headers
            return PASS
        start = time.perf_counter() if self.observer is not None else 0.0
        flow = decision_flow(self, plan, request)
        outcome, local, failed = await adrive(flow, self.backend, self.local, self.book.local)
        return self._finish(plan, request, outcome, local, failed, start)

    def _finish(
        self,
        plan: Plan,
        request: RequestInfo,
        outcome: Outcome | None,
        local: bool,
        failed: str | None,
        start: float,
    ) -> Outcome:
        if failed is not None or outcome is None:
            outcome = self.verdicts.failed(request, failed)
        elif local and outcome.kind in ("allowed", "delayed"):
            outcome = outcome._replace(kind="local")
        observer = self.observer
        if observer is not None:
            observer.observe(plan, request, outcome, time.perf_counter() - start)
        return outcome

    def settle(self, pending: Pending, status: int, headers: Headers = ()) -> None:
        """After the response (blocking drivers): see :func:`~ratelimit.http.flow.settle_flows`
        (``headers``: the response's). A backend failure drops what is left (logged)."""
        for flow in settle_flows(pending, status, headers):
            drive(flow, self.backend, self.local, self.book.local)

    async def asettle(self, pending: Pending, status: int, headers: Headers = ()) -> None:
        """After the response (asyncio): see :meth:`settle`."""
        backend, local, share = self.backend, self.local, self.book.local
        for flow in settle_flows(pending, status, headers):
            await adrive(flow, backend, local, share)

    async def awarm(self) -> None:
        """Connect the backend from the running event loop before the first request (the
        ASGI middleware calls this at ``lifespan.startup``): a failure to reach it is logged
        and passes; a backend that cannot work (:class:`~ratelimit.ConfigError`) raises."""
        warm = getattr(self.backend, "awarm", None)
        if warm is None:
            return
        try:
            await warm()
        except BackendError as exc:
            log.info("backend not warmed up at start-up (%s); decisions will tell", exc)

    async def aend_shares(self) -> None:
        """Give the backend's unused shares back (the ASGI middleware calls this at
        ``lifespan.shutdown``); failures are logged by the backend, never raised."""
        give_back = getattr(self.backend, "areturn_shares", None)
        if give_back is not None:
            await give_back()

    # -- operations ---------------------------------------------------------------------------

    def describe(self) -> Sequence[dict[str, Any]]:
        """The rules as plain summaries (``ratelimit check``, the status page)."""
        return [rule.describe() for rule in self.rules]

    def top(self, rule: str | None = None, n: int = 10) -> TopList:
        """The client identities rejected most over the last 15 minutes, as
        ``(rule_name, identity, rejections)`` tuples, most first (of ``rule`` only, if given).

        With a Redis backend, every worker's rejections (kept in Redis); otherwise this
        process's, recorded while some ``[metrics]`` option is on (else empty, and a WARNING
        on ``ratelimit.metrics`` says once that rejections are not being recorded).
        """
        return [] if observing.hooks is None else observing.hooks.top(self, rule, n)

    async def atop(self, rule: str | None = None, n: int = 10) -> TopList:
        """:meth:`top` for asyncio code (the asyncio Redis client)."""
        return [] if observing.hooks is None else await observing.hooks.atop(self, rule, n)

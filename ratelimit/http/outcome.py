"""What a decision comes to: :class:`Outcome` (what the adapter does) and :class:`Verdicts`
(the replies: allowed with headers, 429, 403, 411, 503 — and the once-per-window log line of
a shadow-mode rejection).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ratelimit.decision import Decision, combine
from ratelimit.http.headers import (
    HeaderPairs,
    Reply,
    forbidden,
    length_required,
    render,
    service_unavailable,
    too_many_requests,
    without_body,
)
from ratelimit.http.keys import RequestInfo

if TYPE_CHECKING:
    from ratelimit.http.plan import Plan
    from ratelimit.http.policies.charges import Charges
    from ratelimit.http.policies.concurrency import Held
    from ratelimit.http.policies.counting import Counted

__all__ = ["OUTCOME_KINDS", "PASS", "Outcome", "Pending", "RejectHandler", "Verdicts"]

log = logging.getLogger("ratelimit")

#: An overridable 429 handler: ``(request, decision) -> Reply``. The rate-limit headers are
#: added to its reply.
RejectHandler = Callable[[RequestInfo, Decision], Reply]

#: What happened to a request (SPEC §7; the ``outcome`` label of the metrics).
OUTCOME_KINDS = (
    "allowed",
    "delayed",
    "rejected",
    "banned",
    "denied",
    "shadow_rejected",
    "error_allowed",
    "error_denied",
    "local",
)

#: The most (limit, client) pairs remembered for the once-per-window shadow-mode log line.
_SHADOW_LOG_SIZE = 4096


class Pending(NamedTuple):
    """What is left to do once the response is known (:meth:`Engine.settle`)."""

    #: ``count`` rules: (key, limits, cost, rule), counted if the status matches.
    counted: tuple[Counted, ...]
    #: Concurrency leases to give back: (key, limit, token).
    leases: tuple[Held, ...]
    #: ``charge`` rules: their reservations, charged the real cost after the response.
    charges: Charges | None = None


class Outcome(NamedTuple):
    """What the adapter does with a request.

    ``reply`` set: send it instead of calling the application. Otherwise call the
    application after waiting ``delay`` seconds, adding ``headers`` to its response, and
    when ``pending`` is set, call :meth:`Engine.settle` (or ``asettle``) with the response
    status once the response is over (sent, abandoned or failed). ``kind`` is one of
    :data:`OUTCOME_KINDS`. ``body_limit`` set: a rule counts body bytes
    (``cost = "content-length"``), and the application must not be given more request body
    bytes than that (the declared, charged ``Content-Length``; the adapters cut the body
    there, whatever the framing).
    """

    reply: Reply | None
    headers: HeaderPairs
    delay: float
    decision: Decision | None
    kind: str = "allowed"
    pending: Pending | None = None
    body_limit: int | None = None


#: Admitted without a decision (nothing applies, an allow list, ``disabled()``): no headers.
PASS = Outcome(None, [], 0.0, None, "allowed")


class Verdicts:
    """Turns decisions into outcomes, with the engine's settings of the moment.

    Args:
        headers_mode: ``ietf``, ``legacy``, ``both`` or ``none``.
        labels: the ``RateLimit`` label of every limit id.
        gate_ids: the ids of the ban gates (a rejection by one is a ban, not a rate).
        shadow: decide and report, never reject.
        deny_on_error: ``on_error = "deny"``.
        on_reject: replaces the default 429 reply.
    """

    __slots__ = (
        "_seen",
        "deny_on_error",
        "gate_ids",
        "headers_mode",
        "labels",
        "on_reject",
        "shadow",
    )

    #: The pass outcome (see :data:`PASS`).
    passed = PASS

    def __init__(
        self,
        headers_mode: str,
        labels: dict[str, bytes],
        gate_ids: set[str],
        shadow: bool,
        deny_on_error: bool,
        on_reject: RejectHandler | None,
    ) -> None:
        self.headers_mode = headers_mode
        self.labels = labels
        self.gate_ids = gate_ids
        self.shadow = shadow
        self.deny_on_error = deny_on_error
        self.on_reject = on_reject
        self._seen: dict[tuple[str, str], float] = {}

    def of(
        self,
        policies: bytes,
        request: RequestInfo,
        decisions: list[Decision],
        plan: Plan | None = None,
    ) -> Outcome:
        """The outcome of ``decisions`` (``policies``: the ``RateLimit-Policy`` value)."""
        decision = decisions[0] if len(decisions) == 1 else combine(decisions)
        headers = render(self.headers_mode, decision, policies, self.labels)
        if decision.allowed:
            if self.shadow or not decision.delay:
                return Outcome(None, headers, 0.0, decision, "allowed")
            return Outcome(None, headers, decision.delay, decision, "delayed")
        kind = "banned" if decision.policy.id in self.gate_ids else "rejected"
        if self.shadow:
            self._log_shadow(request, decision, plan)
            return Outcome(None, headers, 0.0, decision, "shadow_rejected")
        if self.on_reject is not None:
            reply = self.on_reject(request, decision)
            reply = Reply(reply.status, [*reply.headers, *headers], reply.body)
        else:
            reply = too_many_requests(decision, headers)
        return Outcome(_for(request, reply), [], 0.0, decision, kind)

    def denied(self, request: RequestInfo) -> Outcome:
        """The 403 outcome for a client in a ``deny`` list."""
        return Outcome(_for(request, forbidden()), [], 0.0, None, "denied")

    def length_required(self, request: RequestInfo) -> Outcome:
        """The 411 outcome for a body a ``cost = "content-length"`` rule cannot count up front
        (see :func:`~ratelimit.http.policies.costs.declared_length`). Its outcome kind is
        ``denied``: refused whatever the client's budget, like a ``deny`` list (SPEC §7's
        outcome list is a contract, and a new value would break dashboards that enumerate it).
        """
        return Outcome(_for(request, length_required()), [], 0.0, None, "denied")

    def failed(self, request: RequestInfo, kind: str | None = None) -> Outcome:
        """The ``on_error`` outcome when the backend failed. Logged by the backend (once per
        outage, when its circuit opens), not here: one line per request would be a storm.
        An ``overload`` (``kind``) is shed with a 503 whatever ``on_error`` says (in shadow
        mode too it is no rejection: admitted)."""
        overloaded = kind == "overload"
        if (self.deny_on_error or overloaded) and not self.shadow:
            reply = _for(request, service_unavailable(overloaded))
            return Outcome(reply, [], 0.0, None, "error_denied")
        return Outcome(None, [], 0.0, None, "error_allowed")

    def _log_shadow(self, request: RequestInfo, decision: Decision, plan: Plan | None) -> None:
        """Log a shadow-mode rejection at most once per limit and client per window."""
        client = "?"
        if plan is not None:
            for group in plan.groups:
                if any(limit.id == decision.policy.id for limit in group.limits):
                    value: Any = group.key(request)
                    if isinstance(value, str):
                        client = value
                    else:  # an async key function's awaitable: not awaited here
                        value.close()
        seen = self._seen
        now = time.monotonic()
        slot = (decision.policy.id, client)
        if seen.get(slot, 0.0) > now:
            return
        if len(seen) >= _SHADOW_LOG_SIZE:
            seen.clear()
        seen[slot] = now + max(decision.reset_after, 1.0)
        log.info(
            "shadow mode: would reject %s %s for %s (limit %s)",
            request.method,
            request.path,
            client,
            decision.policy.name,
        )


def _for(request: RequestInfo, reply: Reply) -> Reply:
    """``reply`` as sent to ``request``: without a body for a ``HEAD``."""
    return without_body(reply) if request.method == "HEAD" else reply

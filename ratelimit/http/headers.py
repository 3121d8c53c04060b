"""Response headers and bodies: IETF ``RateLimit`` fields, legacy ``X-RateLimit-*``, 429/503.

Per draft-ietf-httpapi-ratelimit-headers-11 (structured fields, RFC 9651)::

    RateLimit-Policy: "login";q=5;w=60                one item per applied limit
    RateLimit: "login";r=4;t=52                        the most restrictive limit

``q`` is the limit's quota, ``w`` its window in whole seconds, ``r`` what remains and ``t``
the whole seconds (rounded up) until the counter is back to full. The legacy set is
``X-RateLimit-Limit`` (capacity), ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (delta
seconds). Rejections are RFC 9457 ``application/problem+json`` bodies with ``Retry-After`` in
whole seconds, rounded up.

Header names and per-policy items are encoded once; only the numbers are formatted per
request. Everything here works on ``bytes`` pairs (the ASGI form); WSGI and Django decode them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import NamedTuple

from ratelimit.decision import Decision
from ratelimit.limits import Limit

__all__ = [
    "HEADER_MODES",
    "HeaderPairs",
    "Reply",
    "length_required",
    "policy_item",
    "render",
    "retry_seconds",
    "without_body",
]

HeaderPairs = list[tuple[bytes, bytes]]

#: The values of the ``headers`` setting.
HEADER_MODES = ("ietf", "legacy", "both", "none")

_POLICY = b"ratelimit-policy"
_RATELIMIT = b"ratelimit"
_X_LIMIT = b"x-ratelimit-limit"
_X_REMAINING = b"x-ratelimit-remaining"
_X_RESET = b"x-ratelimit-reset"
_RETRY_AFTER = b"retry-after"
_CONTENT_TYPE = b"content-type"
_CONTENT_LENGTH = b"content-length"
_PROBLEM = b"application/problem+json"


class Reply(NamedTuple):
    """A complete response the middleware sends instead of calling the application."""

    status: int
    headers: HeaderPairs
    body: bytes


def _sf_string(text: str) -> str:
    """A structured-field string: printable ASCII, with ``"`` and ``\\`` escaped."""
    safe = "".join(c if " " <= c <= "~" else "?" for c in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_label(limit: Limit) -> str:
    """The name a limit is shown under in the headers (its name, else its id)."""
    return limit.name or limit.id


#: ``qu`` of the quota units that are not requests (draft-11 §2.1): request body bytes
#: (``cost = "content-length"``) and requests in flight (``algorithm = "concurrency"``).
QUOTA_UNITS = ("requests", "content-bytes", "concurrent-requests")


def policy_item(limit: Limit, unit: str = "requests") -> bytes:
    """The ``RateLimit-Policy`` item of one limit: ``"name";q=<quota>;w=<seconds>``.

    ``q`` is the limit's capacity, so that ``r`` (what remains) never exceeds it. For the
    window algorithms that is the rate's limit and ``w`` its period. For a bucket it is the
    burst, and ``w`` the whole seconds an empty bucket takes to refill it (``burst / r``,
    rounded up): ``10/second`` with ``burst = 20`` is ``q=20;w=2``, the same long-run rate.
    A concurrency limit has no window: ``"exports";q=2;qu="concurrent-requests"``. ``qu``
    is given for every unit but requests (the draft's default).
    """
    rate = limit.rate
    quota = limit.capacity
    item = f"{_sf_string(policy_label(limit))};q={quota}"
    if limit.algorithm != "concurrency":
        if quota == rate.limit:
            window = math.ceil(rate.period)
        else:
            window = max(1, math.ceil(quota * rate.period / rate.limit))
        item += f";w={window}"
    if unit != "requests":
        item += f';qu="{unit}"'
    return item.encode("ascii")


def retry_seconds(seconds: float) -> int:
    """Whole seconds, rounded up (what ``Retry-After`` and ``t`` carry)."""
    return math.ceil(seconds)


def render(mode: str, decision: Decision, policies: bytes, labels: dict[str, bytes]) -> HeaderPairs:
    """The rate-limit headers of one request.

    Args:
        mode: ``ietf``, ``legacy``, ``both`` or ``none``.
        decision: the combined (most restrictive) decision.
        policies: the pre-rendered ``RateLimit-Policy`` value of every applied limit.
        labels: limit id → pre-rendered structured-field name.
    """
    if mode == "none":
        return []
    remaining = decision.remaining
    reset = math.ceil(decision.reset_after)
    out: HeaderPairs = []
    if mode != "legacy":
        label = labels.get(decision.policy.id)
        if label is None:
            label = _sf_string(policy_label(decision.policy)).encode("ascii")
        out.append((_POLICY, policies))
        out.append((_RATELIMIT, b"%b;r=%d;t=%d" % (label, remaining, reset)))
    if mode != "ietf":
        out.append((_X_LIMIT, b"%d" % decision.limit))
        out.append((_X_REMAINING, b"%d" % remaining))
        out.append((_X_RESET, b"%d" % reset))
    return out


def label_of(limit: Limit) -> bytes:
    """The pre-rendered structured-field name of a limit."""
    return _sf_string(policy_label(limit)).encode("ascii")


def join_policies(limits: Sequence[Limit], units: Sequence[str] | None = None) -> bytes:
    """The ``RateLimit-Policy`` value for ``limits`` (``units``: each one's quota unit)."""
    if units is None:
        return b", ".join(policy_item(limit) for limit in limits)
    return b", ".join(policy_item(lim, unit) for lim, unit in zip(limits, units, strict=True))


#: The draft's problem type for a client over its quota (draft-11 §5.1).
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"


def problem(
    status: int,
    title: str,
    detail: str,
    retry_after: int | None,
    *,
    type_: str = "about:blank",
    **members: object,
) -> bytes:
    """An RFC 9457 problem+json body (``type`` defaults to ``about:blank``: the status says
    it all); ``members`` are extension members (``violated-policies`` is passed as
    ``violated_policies``)."""
    body: dict[str, object] = {
        "type": type_,
        "title": title,
        "status": status,
        "detail": detail,
        "retry_after": retry_after,
    }
    for name, value in members.items():
        body[name.replace("_", "-")] = value
    return json.dumps(body, separators=(",", ":")).encode()


def too_many_requests(decision: Decision, extra: HeaderPairs) -> Reply:
    """The default 429 reply for a rejected ``decision`` (``extra``: rate-limit headers)."""
    retry = None if math.isinf(decision.retry_after) else retry_seconds(decision.retry_after)
    head = _rejection_head(policy_label(decision.policy), retry)
    return Reply(429, [*head[0], *extra], head[1])


#: (policy label, Retry-After) → the 429's fixed headers and body: a flood of rejections
#: repeats a few of them, and rendering the JSON is most of a rejection's cost (paid for by
#: the "Redis, every request rejected" variant of ``python -m benchmarks.http``). Bounded.
_REJECTIONS: dict[tuple[str, int | None], tuple[HeaderPairs, bytes]] = {}
_REJECTIONS_SIZE = 1024


def _rejection_head(label: str, retry: int | None) -> tuple[HeaderPairs, bytes]:
    cached = _REJECTIONS.get((label, retry))
    if cached is not None:
        return cached
    if retry is None:
        detail = f"The request costs more than the limit '{label}' allows; it cannot succeed."
    else:
        detail = f"Rate limit '{label}' exceeded: retry in {retry} second(s)."
    body = problem(
        429,
        "Request cannot be satisfied as assigned quota has been exceeded",
        detail,
        retry,
        type_=QUOTA_EXCEEDED,
        violated_policies=[label],
    )
    headers: HeaderPairs = [(_CONTENT_TYPE, _PROBLEM), (_CONTENT_LENGTH, b"%d" % len(body))]
    if retry is not None:
        headers.append((_RETRY_AFTER, b"%d" % retry))
    if len(_REJECTIONS) >= _REJECTIONS_SIZE:
        _REJECTIONS.clear()
    _REJECTIONS[(label, retry)] = (headers, body)
    return headers, body


def forbidden() -> Reply:
    """The 403 reply to a client in a ``deny`` list."""
    body = problem(403, "Forbidden", "This client is not allowed to use this service.", None)
    return Reply(403, [(_CONTENT_TYPE, _PROBLEM), (_CONTENT_LENGTH, b"%d" % len(body))], body)


def length_required() -> Reply:
    """The 411 reply to a request whose body cannot be measured up front (chunked, or an
    invalid ``Content-Length``) on a rule that counts body bytes (``cost = "content-length"``)."""
    body = problem(
        411,
        "Length Required",
        "This endpoint limits request body bytes: send the body with a valid Content-Length "
        "header, not chunked.",
        None,
    )
    return Reply(411, [(_CONTENT_TYPE, _PROBLEM), (_CONTENT_LENGTH, b"%d" % len(body))], body)


def without_body(reply: Reply) -> Reply:
    """``reply`` for a ``HEAD`` request: the same status and headers, no body (a body after a
    HEAD response would be read as the start of the next response on the connection).
    ``Content-Length`` still gives the size the body would have (RFC 9110 §9.3.2)."""
    return Reply(reply.status, reply.headers, b"")


#: Seconds a client is asked to wait when the backend is down and ``on_error = "deny"``.
UNAVAILABLE_RETRY_AFTER = 1


#: The detail of a 503: the storage failed, or this process was too busy to decide.
_UNAVAILABLE = {
    False: "The rate limiter cannot reach its storage; try again shortly.",
    True: "The server is too busy to decide on this request in time; try again shortly.",
}


def service_unavailable(overloaded: bool = False) -> Reply:
    """The 503 reply sent when the backend fails and ``on_error = "deny"``, or when this
    process was too busy to decide (``overloaded``: shed whatever ``on_error`` says)."""
    body = problem(
        503,
        "Service Unavailable",
        _UNAVAILABLE[overloaded],
        UNAVAILABLE_RETRY_AFTER,
    )
    return Reply(
        503,
        [
            (_CONTENT_TYPE, _PROBLEM),
            (_CONTENT_LENGTH, b"%d" % len(body)),
            (_RETRY_AFTER, b"%d" % UNAVAILABLE_RETRY_AFTER),
        ],
        body,
    )

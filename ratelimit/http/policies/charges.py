"""``charge``: the cost known only after the response (tokens of an AI model, rows exported).

Config keys: ``charge`` (``"response-header:<name>"``, ``"module:callable"`` or
``"application"``) and ``unit`` (the ``qu`` of the rule's quotas, such as ``"tokens"``).

A charge rule reserves its ``cost`` up front, in the decision's one atomic call. Its part
of the plan (:func:`route_charge`) also leaves a :class:`Charges` holder on the request —
the adapters put it where :func:`charge` finds it (ASGI scope, WSGI environ, Django's
``request.META``) — and after the response (:func:`settle_charges`, run by
:func:`~ratelimit.http.flow.settle_flows`) the difference between what the request really
cost and its reservation is charged, or given back, in ONE backend call per rule
(``("charge", (key, limits, delta, elapsed_ms))``), even past the limit: a client that
overspent is in debt and waits until it is paid.

What a request really cost, in order of precedence:

1. what the application reported with :func:`ratelimit.charge` (several calls add up);
2. the response header's value (plain ASCII digits) or the charge function's value
   ``(request, status, headers) -> int ≥ 0`` (``headers``: lower-case names);
3. else the reservation stands (``"application"`` with nothing reported; a missing or
   malformed header, logged once per rule).

A charge reported after the response was settled (a stream finishing after the client went
away) still lands: it is charged at once on its own (:meth:`Charges.land_late`). A charge
above :data:`MAX_CHARGE` is charged as :data:`MAX_CHARGE`.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratelimit.errors import ConfigError
from ratelimit.http.drivers import AWAIT
from ratelimit.http.keys import import_callable

if TYPE_CHECKING:
    from ratelimit.http.flow import Draft, FlowContext
    from ratelimit.http.keys import RequestInfo
    from ratelimit.http.rules import Rule
    from ratelimit.limits import Limit

__all__ = [
    "CHARGES_KEY",
    "MAX_CHARGE",
    "ChargeFunc",
    "ChargeSpec",
    "Charges",
    "Headers",
    "attach",
    "charge",
    "check_charge_rule",
    "parse_charge",
    "parse_unit",
    "route_charge",
    "settle_charges",
]

log = logging.getLogger("ratelimit")

#: The key under which the adapters leave a request's :class:`Charges` holders (a list) in
#: the ASGI scope, the WSGI environ or Django's ``request.META``.
CHARGES_KEY = "ratelimit.charges"
#: The largest charge of one request; more is charged as this (a header of 40 digits is
#: a bug upstream, not a reason to parse a huge integer or to ban a client for ever).
MAX_CHARGE = 10**15
#: A failed charge is logged at most once per this many seconds (no log storm in an outage).
FAILURE_LOG_INTERVAL = 60.0
#: The characters of an RFC 9110 token (``unit``, header names).
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEADER_PREFIX = "response-header:"
_USAGE = "'response-header:<name>', 'module:callable' or 'application'"

#: Response headers as the adapters have them: (name, value) pairs (bytes or text), or a
#: mapping.
Headers = Iterable[tuple[Any, Any]] | Mapping[str, str]
#: A charge function: ``(request, status, headers) -> int ≥ 0`` (``headers``: lower-case).
ChargeFunc = Callable[["RequestInfo", int, Mapping[str, str]], Any]


@dataclass(frozen=True, slots=True)
class ChargeSpec:
    """A rule's ``charge``: where the real cost of a request comes from.

    Attributes:
        kind: ``"response-header"``, ``"callable"`` or ``"application"``.
        header: the response header's lower-case name (``kind="response-header"``).
        func: the charge function (``kind="callable"``).
    """

    kind: str
    header: str | None = None
    func: ChargeFunc | None = None

    def describe(self) -> str:
        """The spec as written in a config (``ratelimit check``)."""
        if self.kind == "response-header":
            return _HEADER_PREFIX + str(self.header)
        if self.kind == "callable":
            func = self.func
            return f"{getattr(func, '__module__', '?')}:{getattr(func, '__qualname__', func)}"
        return "application"


def _is_token(text: str) -> bool:
    return bool(text) and all(char in _TCHAR for char in text)


def parse_charge(value: object) -> ChargeSpec:
    """``charge``: ``"response-header:<name>"``, ``"module:callable"`` (or a callable),
    ``"application"``."""
    if callable(value):
        return ChargeSpec("callable", func=value)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"must be {_USAGE}, got {value!r}")
    if value == "application":
        return ChargeSpec("application")
    if value.startswith(_HEADER_PREFIX):
        name = value[len(_HEADER_PREFIX) :]
        if not _is_token(name):
            raise ConfigError(
                f"invalid header name in {value!r}: expected response-header:<name>, the "
                "name an HTTP token (letters, digits, '-', ...)"
            )
        return ChargeSpec("response-header", header=name.lower())
    if ":" not in value:
        raise ConfigError(f"must be {_USAGE}, got {value!r}")
    if value.startswith("header:"):  # the form of key and tier, which read request headers
        raise ConfigError(
            f"{value!r} would read a request header; a charge is read from the response: "
            f"use 'response-header:{value[7:]}'"
        )
    return ChargeSpec("callable", func=import_callable(value, "charge", _USAGE))


def parse_unit(value: object) -> str:
    """``unit``: the quota unit of the rule (``qu`` in ``RateLimit-Policy``), an RFC 9110
    token in lower case, such as ``"tokens"``."""
    if not isinstance(value, str) or not _is_token(value):
        raise ConfigError(
            f"must be an HTTP token such as 'tokens' (letters, digits, '-', '_', '.'), "
            f"got {value!r}"
        )
    if value != value.lower():
        raise ConfigError(
            f"must be lower case (quota units are), got {value!r}: use {value.lower()!r}"
        )
    return value


def check_charge_rule(
    charge: ChargeSpec | None, limits: Iterable[Limit], count: object, concurrency: bool
) -> None:
    """Refuse what a charge rule cannot be (``ConfigError`` naming the key, saying why)."""
    if charge is None:
        return
    if concurrency:
        raise ConfigError(
            "charge: not for a concurrency rule (it limits requests in flight, which a "
            "response does not make more or fewer)"
        )
    if count != "all":
        raise ConfigError(
            "charge: not with count (a charge rule's reservation is taken up front and its "
            "real cost charged after every response); remove count or charge"
        )
    for limit in limits:
        if limit.algorithm == "sliding_log":
            raise ConfigError(
                'charge: not with algorithm = "sliding_log": it keeps one entry per request '
                "and has no form for a debt; use sliding_window, fixed_window or a bucket"
            )
        if limit.share is not None:
            raise ConfigError(
                "share: a charge rule is charged after the response, even past the limit; "
                "units taken ahead would add to that overshoot: remove share or charge"
            )


#: One charge rule's part of a request: (key, limits, reservation, rule).
ChargeItem = tuple[str, tuple["Limit", ...], int, "Rule"]
#: One charge to land: the arguments of the backend's ``charge`` call.
ChargeCall = tuple[str, tuple["Limit", ...], int, int]


class Charges:
    """One request's charge rules and what it was reported to cost (see the module
    docstring). Made by the decision flow; the adapters leave it on the request
    (:func:`attach`) for :func:`charge`, and settle it after the response."""

    __slots__ = (
        "_lock",
        "clock",
        "decided_at",
        "engine",
        "items",
        "landed",
        "reported",
        "request",
        "settled",
    )

    def __init__(self, engine: Any, request: RequestInfo) -> None:
        #: The engine that decided (settles a late charge).
        self.engine = engine
        self.request = request
        clock = getattr(engine.backend, "clock", None)
        #: The backend's clock when it has one (seconds), else the monotonic clock.
        self.clock: Callable[[], float] = clock if callable(clock) else time.monotonic
        self.decided_at = self.clock()
        self.items: list[ChargeItem] = []
        #: What each item has been charged so far (its reservation, at first).
        self.landed: list[int] = []
        #: What the application reported with :func:`charge` (``None``: nothing).
        self.reported: int | None = None
        #: Whether the response was settled (a later report lands on its own).
        self.settled = False
        self._lock = threading.Lock()

    def add(self, key: str, limits: tuple[Limit, ...], reservation: int, rule: Rule) -> None:
        """One more charge rule of the request."""
        self.items.append((key, limits, reservation, rule))
        self.landed.append(reservation)

    def stamp(self) -> None:
        """Note when the reservation was decided (a give-back lands only in its window)."""
        self.decided_at = self.clock()

    def report(self, n: int) -> bool:
        """Add ``n`` to what the application reported; whether the request was already
        settled (then the report must land on its own: :meth:`land_late`)."""
        with self._lock:
            self.reported = (self.reported or 0) + n
            return self.settled

    def take(self, measured: Sequence[int] | None) -> list[ChargeCall]:
        """Settle: the charges to land now, given what each rule ``measured`` (``None``:
        nothing new). A report of the application wins over what was measured."""
        elapsed = max(0, round((self.clock() - self.decided_at) * 1000))
        calls = []
        with self._lock:
            self.settled = True
            reported = self.reported
            for index, (key, limits, _, _) in enumerate(self.items):
                if reported is not None:
                    target = reported
                elif measured is not None:
                    target = measured[index]
                else:
                    continue
                target = min(target, MAX_CHARGE)
                delta = target - self.landed[index]
                self.landed[index] = target
                if delta:
                    calls.append((key, limits, delta, elapsed))
        return calls

    def land_late(self) -> None:
        """Charge a report that came after the response was settled: as a task on the
        running event loop (kept until done), else now, blocking."""
        from ratelimit.http.outcome import Pending

        pending = Pending((), (), self)
        try:
            import asyncio

            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.engine.settle(pending, 0)
            return
        task = loop.create_task(self.engine.asettle(pending, 0))
        _LATE.add(task)
        task.add_done_callback(_LATE.discard)


#: The late charges being landed on an event loop (a task nobody refers to may be collected).
_LATE: set[Any] = set()
#: The rules whose charge header was missing or malformed (logged once each).
_WARNED: set[str] = set()
#: When a failed charge was last logged (``time.monotonic``).
_last_failure = -FAILURE_LOG_INTERVAL


def route_charge(
    ctx: FlowContext, draft: Draft, key: str, limits: tuple[Limit, ...], cost: int, rule: Rule
) -> None:
    """A charge rule's part of the plan: ``cost`` reserved in the decide step (a cost of 0
    reserves nothing), the real cost charged after the response."""
    if cost:
        draft.calls.append((key, limits, cost))
    if draft.charges is None:
        draft.charges = Charges(ctx, draft.request)
    draft.charges.add(key, limits, cost, rule)


def attach(place: MutableMapping[str, Any], charges: Charges) -> None:
    """Leave ``charges`` in ``place`` (an ASGI scope, a WSGI environ, ``request.META``)."""
    place.setdefault(CHARGES_KEY, []).append(charges)


def _holders(request: object) -> list[Charges]:
    if isinstance(request, Mapping):
        places: list[Any] = [request]
    else:
        places = [getattr(request, name, None) for name in ("scope", "META", "environ")]
        if not any(isinstance(place, Mapping) for place in places):
            raise TypeError(
                "ratelimit.charge() takes a request (Starlette/FastAPI, Django, DRF or Flask), "
                f"an ASGI scope or a WSGI environ, got {type(request).__name__}"
            )
    found: list[Charges] = []
    for place in places:
        if isinstance(place, Mapping):
            for holder in place.get(CHARGES_KEY, ()):
                if not any(holder is seen for seen in found):
                    found.append(holder)
    return found


def charge(request: object, n: int) -> None:
    """Report that ``request`` cost ``n`` units, for the rules with ``charge`` that apply to
    it (several calls add up; this wins over a ``response-header`` or a charge function).

    ``request`` is a Starlette / FastAPI ``Request``, a Django ``HttpRequest`` or DRF
    ``Request``, Flask's ``request``, an ASGI scope or a WSGI environ. A request without a
    charge rule is left alone (nothing happens). Reported after the response is over — a
    stream ending after its client went away — the charge still lands: on the running event
    loop as a task, else at once.

    Raises:
        TypeError: ``n`` is not an int, or ``request`` is none of the above.
        ValueError: ``n`` is negative.
    """
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"ratelimit.charge(): n must be an int ≥ 0, got {n!r}")
    if n < 0:
        raise ValueError(f"ratelimit.charge(): n must be ≥ 0, got {n}")
    for holder in _holders(request):
        if holder.report(n):
            holder.land_late()


def _header_map(headers: Headers) -> dict[str, str]:
    """Response headers as ``{lower-case name: value}`` (repeated fields joined with ``,``)."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for name, value in pairs:
        text = name.decode("latin-1") if isinstance(name, bytes) else str(name)
        val = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        text = text.lower()
        out[text] = f"{out[text]},{val}" if text in out else val
    return out


def _header_value(text: str | None) -> int | None:
    """A charge header's value: plain ASCII digits, else ``None``."""
    if text is None:
        return None
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 16 else MAX_CHARGE


def _checked(func: Any, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"the charge function {func!r} returned {value!r}, not a whole number ≥ 0")
    return value


def settle_charges(
    charges: Charges | None, status: int, headers: Headers
) -> Generator[Any, Any, None]:
    """After the response: measure each charge rule's real cost (unless the application
    reported it) and charge the difference from its reservation, one call per rule."""
    if charges is None:
        return
    measured: list[int] | None = None
    if not charges.settled and charges.reported is None:
        measured = []
        found: dict[str, str] | None = None
        for _, _, reservation, rule in charges.items:
            spec = rule.charge
            assert spec is not None  # routed here because it has one
            value: Any = reservation
            if spec.kind == "response-header":
                found = _header_map(headers) if found is None else found
                value = _header_value(found.get(spec.header or ""))
                if value is None:
                    _warn_header(rule.name, spec, found.get(spec.header or ""))
                    value = reservation
            elif spec.kind == "callable":
                found = _header_map(headers) if found is None else found
                func = spec.func
                assert func is not None
                value = func(charges.request, status, found)
                if value.__class__ is not int and inspect.isawaitable(value):
                    value = yield (AWAIT, (value, "charge", func))
                value = _checked(func, value)
            measured.append(value)
    for call in charges.take(measured):
        try:
            yield ("charge", call)
        except GeneratorExit:  # the backend failed: the driver closed this step
            _dropped(charges)
            raise


def _warn_header(rule: str, spec: ChargeSpec, value: str | None) -> None:
    """Log once per rule that its charge header was missing or not a number."""
    if rule in _WARNED:
        return
    _WARNED.add(rule)
    what = "missing" if value is None else f"not a whole number ({value[:40]!r})"
    log.warning(
        "charge: rule %s: the response header %r is %s; the reservation stands "
        "(logged once per rule)",
        rule,
        spec.header,
        what,
    )


def _dropped(charges: Charges) -> None:
    """A charge the backend failed to land is dropped, the reservations stand. Logged at most
    once per :data:`FAILURE_LOG_INTERVAL` seconds (the breaker logs the outage itself)."""
    global _last_failure
    now = time.monotonic()
    if now - _last_failure < FAILURE_LOG_INTERVAL:
        return
    _last_failure = now
    rules = ", ".join(sorted({item[3].name for item in charges.items}))
    log.warning(
        "charge: the backend failed while charging rule(s) %s: the charge was dropped "
        "and the reservation stands (logged at most once per %gs)",
        rules,
        FAILURE_LOG_INTERVAL,
    )

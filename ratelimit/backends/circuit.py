"""A small circuit breaker: stop waiting on a backend that keeps failing, probe it later.

It also owns the outage's log lines (SPEC §7), on the ``ratelimit.backend`` logger: one
WARNING when the circuit opens (the error text; the traceback only when that logger is at
DEBUG) and one INFO when it closes again, with the number of decisions that failed meanwhile
(they went to the middleware's ``on_error``). Never one line per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ratelimit.errors import BackendError, ConfigError

__all__ = ["CircuitBreaker", "logger"]

#: Where outages are reported.
logger = logging.getLogger("ratelimit.backend")


class CircuitBreaker:
    """Fails fast after ``threshold`` consecutive failures, for ``cooldown`` seconds.

    Closed (normal): every call goes through; ``threshold`` failures in a row open it.
    Open: :meth:`check` raises :class:`~ratelimit.BackendError` at once, without touching
    the backend, until ``cooldown`` seconds have passed. Then one call (the probe) goes
    through: its success closes the breaker, its failure opens it for another cool-down.
    Thread-safe; ``clock`` (seconds, monotonic) is injectable for tests.

    Args:
        name: what the log lines call the backend (``"Redis redis://host:6379/0"``).
        on_state: called with ``False`` when the circuit opens (the backend is down) and
            ``True`` when it closes again (for a ``ratelimit_backend_up`` gauge). It runs
            outside the breaker's lock, on the thread or task that changed the state.
    """

    __slots__ = (
        "_clock",
        "_failed",
        "_failures",
        "_lock",
        "_opened_at",
        "_outage_since",
        "_probe_at",
        "cooldown",
        "name",
        "on_state",
        "threshold",
    )

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "backend",
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"breaker threshold must be a whole number ≥ 1, got {threshold!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or cooldown < 0:
            raise ConfigError(f"breaker cooldown must be a number of seconds ≥ 0, got {cooldown!r}")
        self.threshold = threshold
        self.cooldown = float(cooldown)
        self.name = name
        self.on_state = on_state
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        #: Decisions that failed since the current run of failures began (fast-fails too).
        self._failed = 0
        self._opened_at: float | None = None
        self._probe_at: float | None = None
        #: When the circuit first opened in the current outage (None: no outage).
        self._outage_since: float | None = None

    @property
    def is_open(self) -> bool:
        """Whether calls are currently failing fast (open, or half-open with a probe out)."""
        return self._opened_at is not None

    @property
    def failed_decisions(self) -> int:
        """Decisions that failed since the current run of failures began (0 when healthy)."""
        return self._failed

    def check(self) -> None:
        """Let a call through, or raise :class:`BackendError` while the breaker is open."""
        if self._opened_at is None:
            return
        with self._lock:
            opened_at = self._opened_at
            if opened_at is None:
                return
            now = self._clock()
            if now - opened_at < self.cooldown:
                self._failed += 1
                raise BackendError(
                    f"backend unavailable: circuit open after {self._failures} failures, "
                    f"next try in {self.cooldown - (now - opened_at):.2f}s",
                    kind="circuit_open",
                )
            # Half-open: one probe per cool-down; a probe that never reports back expires.
            if self._probe_at is not None and now - self._probe_at < self.cooldown:
                self._failed += 1
                raise BackendError(
                    "backend unavailable: circuit half-open, a probe is in flight",
                    kind="circuit_open",
                )
            self._probe_at = now

    def success(self) -> None:
        """Record a call that worked: the breaker closes (one INFO line if it was open)."""
        if not (self._failures or self._opened_at is not None):
            return
        with self._lock:
            since, failed = self._outage_since, self._failed
            self._failures = 0
            self._failed = 0
            self._opened_at = None
            self._probe_at = None
            self._outage_since = None
            now = self._clock() if since is not None else 0.0
        if since is not None:
            logger.info(
                "%s is back after %.1fs; %d decisions failed meanwhile (went to on_error)",
                self.name,
                now - since,
                failed,
            )
            if self.on_state is not None:
                self.on_state(True)

    def failure(self, error: BaseException | None = None, decisions: int = 1) -> None:
        """Record a failed call (``decisions`` callers got its error): the ``threshold``-th
        in a row, or a failed probe, opens the breaker (one WARNING per outage)."""
        with self._lock:
            self._failures += 1
            self._failed += decisions
            opened = False
            if self._probe_at is not None or self._failures >= self.threshold:
                self._opened_at = self._clock()
                self._probe_at = None
                if self._outage_since is None:
                    self._outage_since = self._opened_at
                    opened = True
            failures = self._failures
        if opened:
            debug = logger.isEnabledFor(logging.DEBUG)
            logger.warning(
                "%s is failing: circuit open after %d failures in a row, decisions fail fast "
                "for %.1fs between probes: %s",
                self.name,
                failures,
                self.cooldown,
                error if error is not None else "unknown error",
                exc_info=error if debug and error is not None else None,
            )
            if self.on_state is not None:
                self.on_state(False)

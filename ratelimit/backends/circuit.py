"""A small circuit breaker: stop waiting on a backend that keeps failing, probe it later."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ratelimit.errors import BackendError, ConfigError

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Fails fast after ``threshold`` consecutive failures, for ``cooldown`` seconds.

    Closed (normal): every call goes through; ``threshold`` failures in a row open it.
    Open: :meth:`check` raises :class:`~ratelimit.BackendError` at once, without touching
    the backend, until ``cooldown`` seconds have passed. Then one call (the probe) goes
    through: its success closes the breaker, its failure opens it for another cool-down.
    Thread-safe; ``clock`` (seconds, monotonic) is injectable for tests.
    """

    __slots__ = ("_clock", "_failures", "_lock", "_opened_at", "_probe_at", "cooldown", "threshold")

    def __init__(
        self,
        threshold: int = 5,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"breaker threshold must be a whole number ≥ 1, got {threshold!r}")
        if isinstance(cooldown, bool) or not isinstance(cooldown, int | float) or cooldown < 0:
            raise ConfigError(f"breaker cooldown must be a number of seconds ≥ 0, got {cooldown!r}")
        self.threshold = threshold
        self.cooldown = float(cooldown)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_at: float | None = None

    @property
    def is_open(self) -> bool:
        """Whether calls are currently failing fast (open, or half-open with a probe out)."""
        return self._opened_at is not None

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
                raise BackendError(
                    f"backend unavailable: circuit open after {self._failures} failures, "
                    f"next try in {self.cooldown - (now - opened_at):.2f}s"
                )
            # Half-open: one probe per cool-down; a probe that never reports back expires.
            if self._probe_at is not None and now - self._probe_at < self.cooldown:
                raise BackendError("backend unavailable: circuit half-open, a probe is in flight")
            self._probe_at = now

    def success(self) -> None:
        """Record a call that worked: the breaker closes."""
        if self._failures or self._opened_at is not None:
            with self._lock:
                self._failures = 0
                self._opened_at = None
                self._probe_at = None

    def failure(self) -> None:
        """Record a failed call: the ``threshold``-th in a row (or a failed probe) opens it."""
        with self._lock:
            self._failures += 1
            if self._probe_at is not None or self._failures >= self.threshold:
                self._opened_at = self._clock()
                self._probe_at = None

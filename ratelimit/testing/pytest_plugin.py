"""The pytest plugin of ratelimit (entry point ``ratelimit`` in the ``pytest11`` group, so it
is active wherever ratelimit is installed): the helpers of :mod:`ratelimit.testing` as
fixtures.

- ``ratelimit_clock``: a :class:`~ratelimit.testing.FakeClock` at t = 1000 s; install it with
  ``ratelimit_clock.install(app)``. Whatever it was installed on gets its clock back after
  the test.
- ``ratelimit_disabled``: the test runs inside :func:`~ratelimit.testing.disabled`: no limit
  of the process applies, no rate-limit headers are sent.
- ``ratelimit_reset``: every engine of the process forgets its counters before the test;
  the fixture's value is :func:`~ratelimit.testing.reset`, to call again (``ratelimit_reset(
  app)``) between steps of a test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ratelimit.testing import FakeClock, disabled, reset

__all__ = ["ratelimit_clock", "ratelimit_disabled", "ratelimit_reset"]


@pytest.fixture
def ratelimit_clock() -> Iterator[FakeClock]:
    """A fake clock at t = 1000 s, uninstalled from whatever it was installed on after the
    test."""
    clock = FakeClock()
    try:
        yield clock
    finally:
        clock.uninstall()


@pytest.fixture
def ratelimit_disabled() -> Iterator[None]:
    """Rate limiting off for the whole test (every engine of the process), back on after."""
    with disabled():
        yield


@pytest.fixture
def ratelimit_reset() -> Callable[[Any], None]:
    """Every engine of the process starts the test with no counters; the value is
    :func:`ratelimit.testing.reset`, for more resets during the test."""
    reset()
    return reset

"""Shared test fixtures: an injectable clock, and CI's rule that a skipped Redis (or Valkey)
test fails."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from ratelimit import MemoryBackend


class FakeClock:
    """A clock the test moves by hand: ``clock()`` returns seconds as a float."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.now += seconds

    def set_ms(self, ms: int) -> None:
        """Put the clock at exactly ``ms`` milliseconds."""
        self.now = ms / 1000


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at t = 1000 s."""
    return FakeClock()


@pytest.fixture
def memory(clock: FakeClock) -> Iterator[MemoryBackend]:
    """A memory backend driven by the fake clock."""
    yield MemoryBackend(clock=clock)


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """In CI (CI=true), a skipped test marked ``redis`` or ``valkey`` is turned into a
    failure."""
    report = yield
    if IN_CI and report.skipped:
        server = next(
            (name for name in ("valkey", "redis") if item.get_closest_marker(name) is not None),
            None,
        )
        if server is not None:
            report.outcome = "failed"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            report.longrepr = (
                f"{server.capitalize()} test skipped in CI, which counts as a failure: {reason}"
            )
    return report

"""Shared test fixtures: an injectable clock, and CI's rule that a skipped Redis (or Valkey)
test fails."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from ratelimit import MemoryBackend
from ratelimit.testing import FakeClock

__all__ = ["FakeClock"]


def pytest_configure(config: pytest.Config) -> None:
    """Load ratelimit's pytest plugin where its entry point is not installed (a checkout
    run without ``pip install -e``); installed, pytest loaded it already."""
    if not config.pluginmanager.has_plugin("ratelimit"):
        from ratelimit.testing import pytest_plugin

        config.pluginmanager.register(pytest_plugin, "ratelimit")


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
